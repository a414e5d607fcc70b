"""What every layout's lab tree shares (distros.trees builds them, each layout class lays out its own): what
verify adds to the server under test, the request-read timeout it lowers, a TLS <VirtualHost> of its own, the
LoadModule lines of a base tree, and the head of a skeleton tree's main config.

It imports no layout: the classes in debian.py, rhel.py, gentoo.py and base.py import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from apachews.catalogue import Version
from apachews.httpd import Httpd
from apachews.loadmodule import load_module_lines
from apachews.resources import template_environment

REQTIMEOUT_SINCE = Version(2, 2, 15)
DEFAULT_RUNTIME_DIR_SINCE = Version(2, 4, 2)
# What distributions' reqtimeout.conf and httpd's own docs ship; verify lowers `body` so a test need not wait 10 s.
SHIPPED_REQUEST_READ_TIMEOUT = "header=20-40,minrate=500 body=10,minrate=500"

# What every skeleton loads before a rendering (its base modules config or main config): the MPM where it is a
# module, access control, MIME types, and mod_reqtimeout (its built-in defaults apply, body=20 on 2.4, which
# verify lowers).
BASE_MODULES_24 = ("mpm_event", "unixd", "authz_core", "authz_host", "mime", "log_config", "reqtimeout")
BASE_MODULES_22 = ("authz_host", "mime", "log_config", "reqtimeout")
# The skeletons' distributions load the proxy modules themselves; a rendering's guarded LoadModule lines then
# find them loaded.
PROXY_MODULES_24 = ("proxy", "proxy_http", "proxy_balancer", "slotmem_shm", "lbmethod_byrequests", "rewrite")
PROXY_MODULES_22 = ("proxy", "proxy_http", "proxy_balancer", "rewrite")


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
    mpm: str | None = None  # a layout whose tree enables its MPM: the one to enable instead (verify --mpm)


def request_read_timeout(additions: Additions) -> str:
    body = additions.body_timeout
    return SHIPPED_REQUEST_READ_TIMEOUT if body is None else f"header=20-40,minrate=500 body={body},minrate=500"


def render(template: str, **values: object) -> str:
    """templates/apache/lab/trees/<template>, rendered with `values`."""
    return template_environment("apache").get_template(f"lab/trees/{template}").render(**values)


def tls_vhost(additions: Additions, includes: str = "", listen: bool = True) -> str:
    """verify's own TLS <VirtualHost> (with its Listen unless `listen` is False), holding `includes`; "" without
    a TLS port."""
    if additions.tls_port is None:
        return ""
    return render(
        "tls-vhost.conf.j2",
        port=additions.tls_port,
        cert=additions.tls_cert,
        key=additions.tls_key,
        includes=includes,
        listen=listen,
    )


def verify_conf(additions: Additions, tls_front: str, guarded: bool = True) -> str:
    """What verify adds at server level: the lowered request-read timeout (`guarded`: inside <IfModule>), its
    server-level lines, its routes and `tls_front`."""
    return render(
        "verify.conf.j2",
        request_read_timeout=request_read_timeout(additions),
        guarded=guarded,
        server=additions.server,
        routes=additions.routes,
        tls_front=tls_front,
    )


def load_lines(httpd: Httpd, names: tuple[str, ...], define: str | None = None) -> str:
    """Unguarded LoadModule lines for those of `names` this httpd has as modules (not compiled in)."""
    compiled = httpd.compiled_in()
    present = [n for n in names if n not in compiled and (httpd.modules_dir / f"mod_{n}.so").exists()]
    return load_module_lines(present, "modules", guarded=False, define=define) or "\n"


@dataclass(frozen=True)
class Skeleton:
    """What a skeleton tree (a distribution's tree written here from what it ships) starts from."""

    root: Path
    port: int
    is_22: bool
    base: tuple[str, ...]  # its base modules
    proxy: tuple[str, ...]  # the proxy modules it loads itself
    verify_first: bool  # 2.2 takes the first ProxyPass read, 2.4 the last <Location> merged
    runtime_dir: bool  # DefaultRuntimeDir (2.4.2+); before, runtime files go under ServerRoot/logs
    extra_loads: str  # LoadModule lines of the modules verify adds (less `own`)

    def main_conf(self, template: str, loads: str) -> str:
        """The layout's main config (`template` extends skeleton.conf.j2: ServerRoot, Listen, logs,
        <Directory />, DocumentRoot), with `loads` (LoadModule lines) before its ServerName."""
        return render(
            template,
            root=self.root,
            port=self.port,
            is_22=self.is_22,
            user=os.geteuid() == 0,
            runtime_dir=self.runtime_dir,
            loads=loads,
        )

    def verify_conf(self, additions: Additions, tls_front: str) -> str:
        return verify_conf(additions, tls_front)


def skeleton(root: Path, httpd: Httpd, port: int, additions: Additions, own: tuple[str, ...] = ()) -> Skeleton:
    """Make root's logs/, run/, html/, apachews-modules/ and modules/ (the httpd's), and say what the skeleton's
    main config holds. own: modules verify adds that the layout's own files load (left out of extra_loads)."""
    is_22 = httpd.version.family == "2.2"
    for sub in ("logs", "run", "html", "apachews-modules"):
        (root / sub).mkdir()
    (root / "modules").symlink_to(httpd.modules_dir)
    return Skeleton(
        root=root,
        port=port,
        is_22=is_22,
        base=BASE_MODULES_22 if is_22 else BASE_MODULES_24,
        proxy=PROXY_MODULES_22 if is_22 else PROXY_MODULES_24,
        verify_first=is_22,
        runtime_dir=httpd.version >= DEFAULT_RUNTIME_DIR_SINCE,
        extra_loads=load_lines(httpd, tuple(m for m in additions.modules if m not in own)),
    )
