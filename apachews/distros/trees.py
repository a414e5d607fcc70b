"""Throwaway server trees in the layouts users run, for verify.

A lab ServerRoot (httpd.ServerRoot, layout "bare") proves little: users run a distribution's tree, with its
<VirtualHost>, its mod_reqtimeout and its way of enabling modules. Each layout here builds such a tree in a
temp dir, installs a rendering the way a user of that layout would, adds what verify needs (its extra routes,
a TLS <VirtualHost>, lowered timeouts) and returns an httpd.Server to run it:

- "debian": a copy of Debian's /etc/apache2 (apache2.conf, ports.conf, mods-enabled, conf-enabled, the stock
  000-default <VirtualHost>, mod_reqtimeout as shipped), the rendering placed and enabled like a2enmod and
  a2enconf (distros.place);
- "plain": the release's own default conf/httpd.conf from its install prefix, with mod_reqtimeout loaded
  where the release has it, and the rendering inside a <VirtualHost>;
- "rhel" and "gentoo": the skeleton of those distributions' trees (RHEL: httpd.conf including
  conf.modules.d/*.conf and conf.d/*.conf, mod_reqtimeout among the base modules; CentOS 6 for 2.2: modules
  in httpd.conf, conf.d/; Gentoo: modules.d/*.conf behind <IfDefine>, vhosts.d/ with the default
  <VirtualHost>), written here from what those distributions ship (their packages are not at hand: the
  skeleton keeps what decides where a rendering goes and what is enabled, not every default), with the
  rendering placed by distros.place as `apachews install` would.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from apachews import capacity, distros, doctor
from apachews.catalogue import Version
from apachews.config import Rendering
from apachews.errors import BadInput
from apachews.httpd import Httpd, Mount, Server

DEBIAN_TREE = Path("/etc/apache2")
LAYOUTS = ("debian", "rhel", "gentoo", "plain", "bare")
REQTIMEOUT_SINCE = Version(2, 2, 15)
DEFAULT_RUNTIME_DIR_SINCE = Version(2, 4, 2)
# What Debian's reqtimeout.conf and httpd's own docs ship; verify lowers `body` so a test need not wait 10 s.
SHIPPED_REQUEST_READ_TIMEOUT = "header=20-40,minrate=500 body=10,minrate=500"


@dataclass
class Additions:
    """What verify adds to the server under test, besides the rendering."""

    routes: str = ""  # <Location>s of verify's own backends: placed with the rendering, ordered per family
    first: str = ""  # read before the rendering (a RewriteRule that keeps a preset's rules off verify's routes)
    server: str = ""  # server-level lines (lowered timeouts, SSLProxy settings)
    body_timeout: int | None = None  # RequestReadTimeout body=N for the test (None: as shipped)
    tls_port: int | None = None  # a TLS <VirtualHost> (mod_ssl) on this port, serving the same routes
    tls_cert: Path | None = None
    tls_key: Path | None = None
    modules: list[str] = field(default_factory=list)  # more modules to enable (ssl)
    mpm: str | None = None  # debian: the MPM to enable instead of the tree's (a2dismod/a2enmod mpm_*)


def default_layout(httpd: Httpd) -> str:
    """The layout of the Apache at hand: Debian's own for Debian's apache2, the release's for a build, its
    distribution's for one in a container."""
    if httpd.runner is not None:
        return httpd.runner.layout
    if httpd.kind == "prefix":
        return "plain"
    if httpd.binary.name == "apache2" and DEBIAN_TREE.is_dir():
        return "debian"
    return "bare"


def shipped_tree(httpd: Httpd) -> Path:
    """The Debian tree as `httpd`'s distribution ships it: this host's /etc/apache2, or a host copy of the one
    in its container's root."""
    return httpd.runner.conf_tree if httpd.runner is not None else DEBIAN_TREE


def layout_mpm(layout: str, httpd: Httpd, mpm: str | None = None) -> str:
    """The MPM the tree of `layout` runs: one compiled into the binary (`httpd -l`: prefork.c, ...), else `mpm`
    (verify --mpm: the debian and bare layouts), else the one Debian's tree enables (mods-enabled/mpm_*.load)
    or the build's httpd.conf loads, else event (what the skeletons and the lab ServerRoot load)."""
    listed = httpd_listing(httpd)
    static = [name for name in capacity.MPMS if f"{name}.c" in listed]
    if static:
        if mpm is not None and mpm != static[0]:
            raise BadInput(f"{httpd.binary} has the {static[0]} MPM built in", hint="leave out --mpm")
        return static[0]
    if mpm is not None:
        if mpm not in capacity.MPMS or layout not in ("debian", "bare"):
            raise BadInput(f"--mpm {mpm} with the {layout} layout", hint="--mpm goes with --layout debian or bare")
        return mpm
    if layout == "debian":
        enabled = sorted((shipped_tree(httpd) / "mods-enabled").glob("mpm_*.load"))
        if enabled:
            return enabled[0].stem.removeprefix("mpm_")
    if layout == "plain":
        own = httpd.modules_dir.parent / "conf" / "httpd.conf"
        loaded = re.search(r"^\s*LoadModule\s+mpm_(\w+)_module", own.read_text(errors="replace"), re.M)
        if loaded and loaded.group(1) in capacity.MPMS:
            return loaded.group(1)
    return "event"


def httpd_listing(httpd: Httpd) -> set[str]:
    """The file names `httpd -l` lists (core.c, mod_so.c, event.c, ...)."""
    return httpd.installation.compiled_files()


def stock_settings(layout: str, httpd: Httpd, mpm: str | None = None) -> capacity.Settings:
    """The MPM settings of the tree `layout` builds, before any sizing, read the way doctor reads a server:
    Debian's tree has its mods-enabled/mpm_*.conf as shipped (MaxRequestWorkers 150), "plain" the release's
    own httpd.conf (whose Include of extra/httpd-mpm.conf is commented out: httpd's defaults); the skeletons
    and the lab ServerRoot set none (httpd's defaults: 400 workers on event and worker, 256 on prefork)."""
    chosen, mpm = mpm, layout_mpm(layout, httpd, mpm)
    family = httpd.version.family
    debian = shipped_tree(httpd)
    roots = {"debian": debian, "plain": httpd.modules_dir.parent}
    mains = {"debian": debian / "apache2.conf", "plain": httpd.modules_dir.parent / "conf" / "httpd.conf"}
    main = mains.get(layout)
    if main is None or not main.is_file():
        return capacity.defaults(family, mpm)
    files = doctor.follow_includes(main, roots[layout])
    if layout == "debian" and chosen is not None:  # the MPM's own settings, as a2enmod would enable them
        files.append(str(DEBIAN_TREE / "mods-available" / f"mpm_{mpm}.conf"))
    # Only the running MPM's <IfModule> sections count (httpd-mpm.conf has one per MPM).
    directives = doctor.scan_directives(files, doctor.MPM_DIRECTIVES, {f"mpm_{mpm}_module": "shared"})
    return doctor.mpm_settings(directives, family, mpm)


def rendering_distro(layout: str) -> str:
    """The `apachews config --distro` a layout's user would render with."""
    return layout if layout in ("debian", "rhel", "gentoo") else "generic"


def build(
    layout: str, root: Path, httpd: Httpd, rendering: Rendering, module: Path | None, port: int, additions: Additions
) -> Server:
    """Lay out `rendering` in the temp dir `root` (empty, removed by the caller) and return its Server."""
    if layout == "debian":
        return _debian(root, httpd, rendering, module, port, additions)
    if httpd.runner is not None:
        raise BadInput(
            f"the {layout} layout runs an Apache of this host, not the one in {httpd.runner.name}",
            hint=f"use its own layout: --layout {httpd.runner.layout}",
        )
    if layout == "plain":
        return _plain(root, httpd, rendering, module, port, additions)
    if layout in ("rhel", "gentoo"):
        return _skeleton(layout, root, httpd, rendering, module, port, additions)
    raise BadInput(f"unknown layout {layout!r}", hint="layouts: " + ", ".join(LAYOUTS))


def _request_read_timeout(additions: Additions) -> str:
    body = additions.body_timeout
    return SHIPPED_REQUEST_READ_TIMEOUT if body is None else f"header=20-40,minrate=500 body={body},minrate=500"


def _tls_vhost(additions: Additions, includes: str) -> str:
    if additions.tls_port is None:
        return ""
    return (
        f"Listen 127.0.0.1:{additions.tls_port}\n"
        f"<VirtualHost 127.0.0.1:{additions.tls_port}>\n"
        "    ServerName 127.0.0.1\n"
        "    SSLEngine on\n"
        f'    SSLCertificateFile "{additions.tls_cert}"\n'
        f'    SSLCertificateKeyFile "{additions.tls_key}"\n'
        f"{includes}"
        "</VirtualHost>\n"
    )


def _rhel_ssl_conf(root: Path, httpd: Httpd, rendering: Rendering, additions: Additions) -> str:
    """conf.d/ssl.conf as mod_ssl's package ships it (CentOS 6 for 2.2, RHEL 7+ for 2.4: its own Listen, session
    cache and <VirtualHost _default_:443> with its own logs), on the test port with the test certificate; a
    rendering for --vhost tls is Included inside that <VirtualHost>, where its user put it."""
    is_22 = httpd.version.family == "2.2"
    shmcb = is_22 or (httpd.modules_dir / "mod_socache_shmcb.so").exists()
    lines = [
        "# apachews verify: conf.d/ssl.conf of the distribution's mod_ssl package, on the test port",
        _load_lines(httpd, ("ssl",) if is_22 else ("ssl", "socache_shmcb")).rstrip("\n"),
        f"Listen 127.0.0.1:{additions.tls_port}",
        "SSLPassPhraseDialog builtin",
        f"SSLSessionCache shmcb:{root}/run/ssl_scache(512000)" if shmcb else "SSLSessionCache none",
        "SSLSessionCacheTimeout 300",
        "SSLMutex default" if is_22 else "",
        "SSLRandomSeed startup file:/dev/urandom 256",
        "SSLRandomSeed connect builtin",
        "SSLCryptoDevice builtin",
        f"<VirtualHost _default_:{additions.tls_port}>",
        f'ErrorLog "{root}/logs/ssl_error_log"',
        f'TransferLog "{root}/logs/ssl_access_log"',
        "LogLevel warn",
        "SSLEngine on",
        "SSLProtocol all -SSLv2" if is_22 else "SSLProtocol all -SSLv2 -SSLv3",
        "SSLCipherSuite ALL:!ADH:!EXPORT:!SSLv2:RC4+RSA:+HIGH:+MEDIUM:+LOW"
        if is_22
        else "SSLCipherSuite HIGH:3DES:!aNULL:!MD5:!SEED:!IDEA",
        f'SSLCertificateFile "{additions.tls_cert}"',
        f'SSLCertificateKeyFile "{additions.tls_key}"',
    ]
    if rendering.tls_include:
        lines.append(f'Include "{root / rendering.tls_include}"')
    lines.append("</VirtualHost>")
    return "\n".join(line for line in lines if line) + "\n"


# -- Debian -------------------------------------------------------------------------------------------------------
DEBIAN_ENV = ("APACHE_RUN_DIR", "APACHE_LOCK_DIR", "APACHE_LOG_DIR")


def copy_debian_tree(root: Path, port: int, tls_port: int | None = None, source: Path = DEBIAN_TREE) -> Path:
    """Copy Debian's /etc/apache2 (or the `source` copy of another root's) to root/etc (run/, lock/, log/,
    modules/ beside it), listening on 127.0.0.1 only: the stock site, otherwise unchanged, on `port`. Returns
    the copy's config root."""
    conf = root / "etc"
    shutil.copytree(source, conf, symlinks=True)
    for sub in ("run", "lock", "log", "modules"):
        (root / sub).mkdir()
    tls_listen = f"Listen 127.0.0.1:{tls_port}\n" if tls_port else ""
    (conf / "ports.conf").write_text(f"Listen 127.0.0.1:{port}\n{tls_listen}")
    for site in (conf / "sites-available").glob("*.conf"):
        site.write_text(site.read_text().replace("<VirtualHost *:80>", f"<VirtualHost *:{port}>"))
    with (conf / "apache2.conf").open("a") as main:
        main.write("ServerName 127.0.0.1\n")
    return conf


def _debian(
    root: Path, httpd: Httpd, rendering: Rendering, module: Path | None, port: int, additions: Additions
) -> Server:
    source = shipped_tree(httpd)
    if not source.is_dir():
        raise BadInput(f"no Debian apache2 tree at {source}", hint="apt-get install apache2, or --layout plain")
    if rendering.distro != "debian":
        raise BadInput(f"the debian layout needs a rendering for --distro debian, not {rendering.distro}")
    conf = copy_debian_tree(root, port, additions.tls_port, source)
    distros.place(rendering, conf, module_so=module, modules_dir=root / "modules")
    enable = distros.get("debian")
    if additions.mpm is not None:  # a2dismod mpm_*; a2enmod mpm_<mpm>
        for link in (conf / "mods-enabled").glob("mpm_*"):
            link.unlink()
    for name in additions.modules + ([f"mpm_{additions.mpm}"] if additions.mpm else []):
        for action in enable._enable_modules(conf, [name], {}):  # what a2enmod NAME would link
            if action.kind == "link" and not os.path.lexists(action.path):
                os.symlink(str(action.target), action.path)
    tls = _tls_vhost(additions, "").replace(f"Listen 127.0.0.1:{additions.tls_port}\n", "")
    if rendering.tls_include and additions.tls_port is not None:  # --vhost tls: Debian's own default-ssl site
        _enable_default_ssl(conf, rendering.tls_include, additions)
        tls = ""
    extra = (
        "# apachews verify: its own routes, lowered timeouts and TLS front\n"
        f"RequestReadTimeout {_request_read_timeout(additions)}\n"
        f"{additions.server}{additions.routes}{tls}"
    )
    (conf / "conf-available" / "00-apachews-verify-first.conf").write_text(additions.first)
    (conf / "conf-enabled" / "00-apachews-verify-first.conf").symlink_to(
        "../conf-available/00-apachews-verify-first.conf"
    )
    # conf-enabled is read in name order: after apachews-<preset>.conf, so these <Location>s merge last.
    (conf / "conf-available" / "zz-apachews-verify.conf").write_text(extra)
    (conf / "conf-enabled" / "zz-apachews-verify.conf").symlink_to("../conf-available/zz-apachews-verify.conf")
    env = {
        "APACHE_CONFDIR": str(conf),
        "APACHE_RUN_USER": "www-data",
        "APACHE_RUN_GROUP": "www-data",
        "APACHE_PID_FILE": str(root / "run" / "apache2.pid"),
        **{name: str(root / name.split("_")[1].lower()) for name in DEBIAN_ENV},
        "LANG": "C",
    }
    mounts: list[Mount] = []
    if httpd.runner is not None:  # the tree at the same path there, the module and certificates read-only
        root.chmod(0o755)  # www-data (Apache's children) must reach its run/ and lock/ directories
        mounts = [Mount(root), Mount(root / "modules", read_only=True)]
        mounts += [Mount(Path(f), read_only=True) for f in (additions.tls_cert, additions.tls_key) if f is not None]
    server_log = root / "log" / "error.log"
    return Server(httpd, conf, conf / "apache2.conf", port, server_log, env=env, files_dir=conf, mounts=mounts)


def _enable_default_ssl(conf: Path, include: str, additions: Additions) -> None:
    """a2ensite default-ssl, on the test port with the test certificate, the rendering Included inside it."""
    site = conf / "sites-available" / "default-ssl.conf"
    text = site.read_text()
    text = re.sub(r"<VirtualHost [^>]*:443>", f"<VirtualHost *:{additions.tls_port}>", text)
    for directive, path in (("SSLCertificateFile", additions.tls_cert), ("SSLCertificateKeyFile", additions.tls_key)):
        line = f'{directive} "{path}"'
        text = re.sub(rf"^(\s*){directive}\s.*$", lambda match, line=line: match.group(1) + line, text, flags=re.M)
    text = text.replace("</VirtualHost>", f'\tInclude "{conf / include}"\n</VirtualHost>', 1)
    site.write_text(text)
    (conf / "sites-enabled" / "default-ssl.conf").symlink_to("../sites-available/default-ssl.conf")


# -- the release's own httpd.conf -------------------------------------------------------------------------------
def _plain(
    root: Path, httpd: Httpd, rendering: Rendering, module: Path | None, port: int, additions: Additions
) -> Server:
    own = httpd.modules_dir.parent / "conf" / "httpd.conf"
    if httpd.kind != "prefix" or not own.is_file():
        raise BadInput(
            f"{httpd.binary} has no install prefix with its own conf/httpd.conf",
            hint="--layout plain is for a build (--dist); use --layout debian or bare here",
        )
    # The release's conf/ as installed (mime.types, extra/), its modules, and fresh logs and htdocs.
    shutil.copytree(own.parent, root / "conf", symlinks=True)
    for sub in ("logs", "run", "htdocs"):
        (root / sub).mkdir()
    (root / "modules").symlink_to(httpd.modules_dir)
    text = own.read_text(errors="replace")
    text = re.sub(r"^\s*ServerRoot\s.*$", f'ServerRoot "{root}"', text, flags=re.MULTILINE)
    # The build was installed elsewhere than its prefix: the document root moves into the tree.
    text = re.sub(r"^\s*DocumentRoot\s.*$", f'DocumentRoot "{root}/htdocs"', text, flags=re.MULTILINE)
    text = re.sub(r"^\s*Listen\s.*$", f"Listen 127.0.0.1:{port}", text, flags=re.MULTILINE)
    if os.geteuid() != 0:
        text = re.sub(r"^\s*(User|Group)\s.*$", "", text, flags=re.MULTILINE)
    if module is not None:  # the module under test, not whatever the build's httpd.conf loads
        text = re.sub(r"^(\s*LoadModule\s+proxy_wstunnel_module\s)", r"# \1", text, flags=re.MULTILINE)
    loads = []
    if httpd.version >= REQTIMEOUT_SINCE and (httpd.modules_dir / "mod_reqtimeout.so").exists():
        loads.append("reqtimeout")
    loads += [m for m in rendering.modules + additions.modules if m not in loads]
    lines = ["", "# apachews verify: the modules the rendering needs, then the rendering inside a <VirtualHost>"]
    paths = {"proxy_wstunnel": module} if module is not None else {}
    lines.append(distros.load_module_lines(loads, "modules", paths=paths).rstrip("\n"))
    lines += [
        "ServerName 127.0.0.1",
        "<IfModule reqtimeout_module>",
        f"    RequestReadTimeout {_request_read_timeout(additions)}",
        "</IfModule>",
    ]
    if httpd.version.family == "2.2":
        lines.append(f"NameVirtualHost 127.0.0.1:{port}")
    (root / "conf" / "apachews-preset.conf").write_text(rendering.proxy_conf)
    sizing = rendering.files.get(rendering.capacity_file) if rendering.capacity_file else None
    if sizing is not None:  # the MPM sizing, at server level after the release's own settings
        (root / "conf" / "apachews-capacity.conf").write_text(sizing)
        lines.append(f'Include "{root}/conf/apachews-capacity.conf"')
    (root / "conf" / "apachews-verify.conf").write_text(additions.routes)
    (root / "conf" / "apachews-first.conf").write_text(additions.first)
    # Which ProxyPass wins where paths nest: 2.2 takes the first in the file, 2.4 the last <Location> merged.
    # verify's own routes are the more specific ones.
    order = ["first", "verify", "preset"] if httpd.version.family == "2.2" else ["first", "preset", "verify"]
    includes = "".join(f'    Include "{root}/conf/apachews-{name}.conf"\n' for name in order)
    lines += [
        additions.server.rstrip("\n"),
        f"<VirtualHost 127.0.0.1:{port}>",
        "    ServerName 127.0.0.1",
        includes.rstrip("\n"),
        "</VirtualHost>",
        _tls_vhost(additions, includes),
    ]
    conf = root / "conf" / "httpd.conf"
    conf.write_text(text + "\n".join(lines) + "\n")
    return Server(httpd, root, conf, port, root / "logs" / "error_log", files_dir=root)


# -- RHEL and Gentoo skeletons ------------------------------------------------------------------------------------
# What every layout loads before a rendering (RHEL's 00-base.conf, Gentoo's httpd.conf): the MPM where it is a
# module, access control, MIME types, and mod_reqtimeout (RHEL 8 and Gentoo load it; its built-in defaults
# apply, body=20 on 2.4, which verify lowers like Debian's).
_BASE_MODULES_24 = ("mpm_event", "unixd", "authz_core", "authz_host", "mime", "log_config", "reqtimeout")
_BASE_MODULES_22 = ("authz_host", "mime", "log_config", "reqtimeout")
# Both distributions load the proxy modules themselves (RHEL: 00-proxy.conf, CentOS 6 and Gentoo: httpd.conf,
# Gentoo behind <IfDefine PROXY>); a rendering's guarded LoadModule lines then find them loaded.
_PROXY_MODULES_24 = ("proxy", "proxy_http", "proxy_balancer", "slotmem_shm", "lbmethod_byrequests", "rewrite")
_PROXY_MODULES_22 = ("proxy", "proxy_http", "proxy_balancer", "rewrite")


def _load_lines(httpd: Httpd, names: tuple[str, ...], define: str | None = None) -> str:
    compiled = httpd.compiled_in()
    present = [n for n in names if n not in compiled and (httpd.modules_dir / f"mod_{n}.so").exists()]
    return distros.load_module_lines(present, "modules", guarded=False, define=define) or "\n"


def _skeleton(
    layout: str, root: Path, httpd: Httpd, rendering: Rendering, module: Path | None, port: int, additions: Additions
) -> Server:
    if rendering.distro != layout:
        raise BadInput(f"the {layout} layout needs a rendering for --distro {layout}, not {rendering.distro}")
    is_22 = httpd.version.family == "2.2"
    for sub in ("logs", "run", "html", "apachews-modules"):
        (root / sub).mkdir()
    (root / "modules").symlink_to(httpd.modules_dir)
    base = _BASE_MODULES_22 if is_22 else _BASE_MODULES_24
    proxy = _PROXY_MODULES_22 if is_22 else _PROXY_MODULES_24
    # Which ProxyPass wins where paths nest: 2.2 the first read, 2.4 the last <Location> merged; verify's own
    # routes are the more specific ones.
    verify_first = is_22
    access = "Order deny,allow\n    Deny from all" if is_22 else "Require all denied"
    user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
    lock = f'LockFile "{root}/run/accept.lock"\n' if is_22 else f'DefaultRuntimeDir "{root}/run"\n'
    if httpd.version < DEFAULT_RUNTIME_DIR_SINCE:  # 2.4.1 keeps its runtime files under ServerRoot/logs
        lock = ""
    common = (
        f'ServerRoot "{root}"\nListen 127.0.0.1:{port}\n{user}{lock}PidFile "{root}/run/httpd.pid"\n'
        f'ServerName 127.0.0.1\nErrorLog "{root}/logs/error_log"\nLogLevel warn\n'
        "<IfModule mime_module>\n    TypesConfig /dev/null\n</IfModule>\n"
        f"<Directory />\n    AllowOverride none\n    {access}\n</Directory>\n"
        f'DocumentRoot "{root}/html"\n'
    )
    # RHEL's TLS front is its mod_ssl package's conf.d/ssl.conf; Gentoo's a <VirtualHost> of verify's own.
    tls_front = "" if layout == "rhel" else _tls_vhost(additions, "")
    verify_conf = (
        "# apachews verify: its own routes, lowered timeouts and TLS front\n"
        f"<IfModule reqtimeout_module>\n    RequestReadTimeout {_request_read_timeout(additions)}\n</IfModule>\n"
        f"{additions.server}{additions.routes}{tls_front}"
    )
    # RHEL's ssl.conf loads mod_ssl itself (below).
    own = ("ssl",) if layout == "rhel" and additions.tls_port is not None else ()
    extra_loads = _load_lines(httpd, tuple(m for m in additions.modules if m not in own))
    if layout == "rhel":
        conf = root / "conf" / "httpd.conf"
        (root / "conf.d").mkdir()
        conf.parent.mkdir()
        if is_22:  # CentOS 6: the modules are loaded in httpd.conf itself, the rest comes from conf.d/
            head = _load_lines(httpd, base + proxy) + extra_loads
            include = "Include conf.d/*.conf\n"
        else:
            (root / "conf.modules.d").mkdir()
            (root / "conf.modules.d" / "00-base.conf").write_text(_load_lines(httpd, base) + extra_loads)
            (root / "conf.modules.d" / "00-proxy.conf").write_text(_load_lines(httpd, proxy))
            head = "Include conf.modules.d/*.conf\n"
            include = "IncludeOptional conf.d/*.conf\n"
        conf.write_text(common.replace("ServerName", head + "ServerName", 1) + include)
        name = "00-apachews-verify.conf" if verify_first else "zz-apachews-verify.conf"
        (root / "conf.d" / name).write_text(verify_conf)
        (root / "conf.d" / "00-apachews-verify-first.conf").write_text(additions.first)
        if additions.tls_port is not None:
            (root / "conf.d" / "ssl.conf").write_text(_rhel_ssl_conf(root, httpd, rendering, additions))
    else:  # gentoo: modules behind <IfDefine>, the default site in vhosts.d
        conf = root / "httpd.conf"
        for sub in ("modules.d", "vhosts.d"):
            (root / sub).mkdir()
        head = _load_lines(httpd, base) + _load_lines(httpd, proxy, define="PROXY") + extra_loads
        conf.write_text(
            common.replace("ServerName", head + "ServerName", 1)
            + f'Include "{root}/modules.d/*.conf"\nInclude "{root}/vhosts.d/*.conf"\n'
        )
        (root / "vhosts.d" / "00_default_vhost.conf").write_text(
            f'<VirtualHost *:{port}>\n    ServerName 127.0.0.1\n    DocumentRoot "{root}/html"\n</VirtualHost>\n'
        )
        name = "00_apachews_verify.conf" if verify_first else "99_apachews_verify.conf"
        (root / "modules.d" / name).write_text(verify_conf)
        (root / "modules.d" / "00_apachews_verify_first.conf").write_text(additions.first)
    distros.place(rendering, root, module_so=module, modules_dir=root / "apachews-modules")
    # Gentoo's init script starts Apache with -D PROXY (APACHE2_OPTS) for proxy configs.
    defines = ("PROXY",) if layout == "gentoo" else ()
    return Server(httpd, root, conf, port, root / "logs" / "error_log", defines=defines, files_dir=root)
