"""Debian and Ubuntu: mods-available/*.load + a2enmod, conf-available (2.4) or conf.d (2.2)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from apachews.distros import lab, placement
from apachews.distros.base import Layout, Parts
from apachews.distros.catalogue import LayoutFacts, layout_facts
from apachews.distros.lab import Additions
from apachews.distros.placement import Action
from apachews.errors import BadInput
from apachews.httpd import Httpd, Mount, Server
from apachews.resources import template_environment

if TYPE_CHECKING:
    from apachews.rendering import Rendering

DEBIAN_ULIMIT_DEFAULT = 8192  # apache2ctl: ULIMIT_MAX_FILES="${APACHE_ULIMIT_MAX_FILES:-ulimit -n 8192}"
_DEPENDS = re.compile(r"^#\s*Depends:\s*(.*)$", re.MULTILINE)


class Debian(Layout):
    name = "debian"
    facts: LayoutFacts = layout_facts("debian")
    modules_path = "/usr/lib/apache2/modules"
    tls_vhost = "<VirtualHost _default_:443> of the default-ssl site (a2enmod ssl; a2ensite default-ssl)"
    tls_vhost_dir = "sites-available"  # beside default-ssl; only sites-enabled/ is read

    enables_modules = True
    main_config_loads_modules = False

    def enable_commands(self, modules: list[str]) -> list[str]:
        return [f"a2enmod {' '.join(modules)}"]

    def live_conf_name(self, version: str) -> str:
        return f"{'conf.d' if version.startswith('2.2.') else 'conf-available'}/apachews-live-verify.conf"

    def markers(self, server_root: Path, conf_dir: Path) -> list[Path]:
        return [conf_dir / "mods-available", conf_dir / "mods-enabled"]

    def detects(self, kinds: list[str]) -> bool:
        return kinds == ["dir", "dir"]

    def files(self, parts: Parts) -> dict[str, str]:
        files = {}
        # Debian's apache2 ships .load files for every stock module; only our backport needs one.
        if parts.needs_backport and "proxy_wstunnel" in parts.modules:
            files["mods-available/proxy_wstunnel.load"] = parts.module_lines(
                self.modules_path, guarded=False, names=("proxy_wstunnel",)
            )
        files[self._conf_file(parts)] = parts.proxy_conf
        return files

    def _conf_file(self, parts: Parts) -> str:
        directory = "conf.d" if parts.family == "2.2" else "conf-available"
        return f"{directory}/apachews-{parts.preset}.conf"

    def notes(self, parts: Parts) -> list[str]:
        notes = [f"run: a2enmod {' '.join(parts.modules)}"]
        if parts.family != "2.2":
            notes.append(f"run: a2enconf apachews-{parts.preset}")
        # Debian 7 / Ubuntu 12.04 (2.2) have SysV init or upstart; Debian 8+ and Ubuntu 16.04+ systemd.
        reload = "service apache2 reload" if parts.family == "2.2" else "systemctl reload apache2"
        notes.append(f"then: {self.control} -t && {reload}")
        return notes

    def capacity_file(self, family: str) -> str:
        # conf-enabled (2.4) and conf.d (2.2) are read after the MPM's mods-enabled/mpm_*.conf (2.4) and the
        # MPM sections of apache2.conf (2.2): the last value wins.
        return f"{'conf.d' if family == '2.2' else 'conf-available'}/apachews-capacity.conf"

    def capacity_notes(self, family: str) -> list[str]:
        enable = "" if family == "2.2" else "run: a2enconf apachews-capacity, then "
        restart = "service apache2 restart" if family == "2.2" else "systemctl restart apache2"
        return [
            f"{enable}{self.control} -t && {restart} (a full restart: ServerLimit and ThreadLimit do not change on a "
            "graceful reload)"
        ]

    def open_files_note(self, family: str, limit: int) -> str:
        if limit <= DEBIAN_ULIMIT_DEFAULT:
            return (
                f"Debian's {self.control} already starts Apache with `ulimit -n {DEBIAN_ULIMIT_DEFAULT}` "
                "(APACHE_ULIMIT_MAX_FILES in /etc/apache2/envvars)"
            )
        envvars = TREE / "envvars"
        return f"set APACHE_ULIMIT_MAX_FILES='ulimit -n {limit}' in {envvars} ({self.control} applies it)"

    # -- placement: like a2enmod / a2enconf, as symlinks ------------------------------------------------------
    def default_modules_dir(self, conf_root: Path) -> Path:
        return Path(self.modules_path)

    def plan(
        self,
        rendering: Rendering,
        conf_root: Path,
        module_so: Path | None = None,
        modules_dir: Path | None = None,
        main_config: Path | None = None,  # Debian includes its *-enabled dirs: nothing to add
    ) -> tuple[list[Action], list[str]]:
        modules_dir = Path(modules_dir) if modules_dir else self.default_modules_dir(conf_root)
        actions, installed = placement.module_actions(rendering, module_so, modules_dir)
        files = placement.checked_files(rendering)
        names = list(rendering.modules)
        if installed is not None:
            # Our module replaces the backport .load a 2.2 rendering carries, and the stock one if enabled.
            files.pop("mods-available/proxy_wstunnel.load", None)
            load = template_environment("apache").get_template("debian-module.load.j2")
            files[f"mods-available/{placement.MODULE_NAME}.load"] = load.render(header=rendering.header, path=installed)
            names = [placement.MODULE_NAME if name == "proxy_wstunnel" else name for name in names]
            for stock in ("proxy_wstunnel.load", "proxy_wstunnel.conf"):
                link = conf_root / "mods-enabled" / stock
                if link.is_symlink():
                    actions.append(
                        Action("unlink", link, target=str(link.readlink()), why="the apachews module replaces it")
                    )
        actions += placement.write_actions(conf_root, files, installed)
        actions += self._enable_modules(conf_root, names, files)
        for name in files:
            if name.startswith("conf-available/"):
                link = conf_root / "conf-enabled" / Path(name).name
                if not link.is_symlink():
                    actions.append(Action("link", link, target=f"../{name}", why="a2enconf"))
        return actions, []

    def _enable_modules(self, conf_root: Path, names: list[str], files: dict[str, str]) -> list[Action]:
        """mods-enabled symlinks for each module and what its .load says it depends on, dependencies first."""
        actions: list[Action] = []
        seen: set[str] = set()

        def load_text(name: str) -> str:
            rel = f"mods-available/{name}.load"
            if rel in files:
                return files[rel]
            path = conf_root / rel
            if not path.is_file():
                raise BadInput(
                    f"this server has no module {name} ({path} is missing)",
                    hint=f"install the package that provides mod_{name}, or build it with apachews",
                )
            return path.read_text(errors="replace")

        def enable(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            text = load_text(name)
            for match in _DEPENDS.finditer(text):
                for dependency in match.group(1).split():
                    enable(dependency)
            for suffix in (".load", ".conf"):
                available = conf_root / "mods-available" / f"{name}{suffix}"
                link = conf_root / "mods-enabled" / f"{name}{suffix}"
                wanted = suffix == ".load" or available.is_file()
                if wanted and not link.exists() and not link.is_symlink():
                    actions.append(Action("link", link, target=f"../mods-available/{name}{suffix}", why="a2enmod"))

        for name in names:
            enable(name)
        return actions

    # -- the lab tree (distros.trees, for verify): a copy of the shipped /etc/apache2 (apache2.conf, ports.conf,
    # mods-enabled, conf-enabled, the stock 000-default <VirtualHost>, mod_reqtimeout as shipped), the rendering
    # placed and enabled like a2enmod and a2enconf.
    mpm_choosable = True  # verify --mpm: a2dismod mpm_*; a2enmod mpm_<mpm>
    runs_contained = True  # the tree bind-mounted at the same path in the target's container

    def ships_tree(self, httpd: Httpd) -> bool:
        """Whether `httpd` is this host's packaged apache2 with its tree at hand."""
        return httpd.binary.name == self.facts.binary.name and self.facts.conf_root.is_dir()

    def shipped_tree(self, httpd: Httpd) -> Path:
        """The tree as `httpd`'s distribution ships it: this host's /etc/apache2, or a host copy of the one in
        its container's root."""
        return httpd.runner.conf_tree if httpd.runner is not None else self.facts.conf_root

    def lab_mpm(self, httpd: Httpd) -> str | None:
        enabled = sorted((self.shipped_tree(httpd) / "mods-enabled").glob("mpm_*.load"))
        return enabled[0].stem.removeprefix("mpm_") if enabled else None

    def lab_main_config(self, httpd: Httpd) -> tuple[Path, Path] | None:
        tree = self.shipped_tree(httpd)
        return tree / "apache2.conf", tree

    def lab_mpm_config(self, mpm: str) -> Path | None:
        return self.facts.conf_root / "mods-available" / f"mpm_{mpm}.conf"

    def lab_tree(
        self, root: Path, httpd: Httpd, rendering: Rendering, module: Path | None, port: int, additions: Additions
    ) -> Server:
        source = self.shipped_tree(httpd)
        if not source.is_dir():
            raise BadInput(f"no Debian apache2 tree at {source}", hint="apt-get install apache2, or --layout plain")
        self.check_rendering(rendering)
        conf = copy_tree(root, port, additions.tls_port, source)
        self.place(rendering, conf, module_so=module, modules_dir=root / "modules")
        if additions.mpm is not None:  # a2dismod mpm_*; a2enmod mpm_<mpm>
            for link in (conf / "mods-enabled").glob("mpm_*"):
                link.unlink()
        for name in additions.modules + ([f"mpm_{additions.mpm}"] if additions.mpm else []):
            for action in self._enable_modules(conf, [name], {}):  # what a2enmod NAME would link
                if action.kind == "link" and not os.path.lexists(action.path):
                    os.symlink(str(action.target), action.path)
        tls = lab.tls_vhost(additions, listen=False)  # ports.conf has its Listen
        if rendering.tls_include and additions.tls_port is not None:  # --vhost tls: Debian's own default-ssl site
            _enable_default_ssl(conf, rendering.tls_include, additions)
            tls = ""
        extra = lab.verify_conf(additions, tls, guarded=False)
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
            **{name: str(root / name.split("_")[1].lower()) for name in ENV},
            "LANG": "C",
        }
        mounts: list[Mount] = []
        if httpd.runner is not None:  # the tree at the same path there, the module and certificates read-only
            root.chmod(0o755)  # www-data (Apache's children) must reach its run/ and lock/ directories
            mounts = [Mount(root), Mount(root / "modules", read_only=True)]
            mounts += [Mount(Path(f), read_only=True) for f in (additions.tls_cert, additions.tls_key) if f is not None]
        server_log = root / "log" / "error.log"
        return Server(httpd, conf, conf / "apache2.conf", port, server_log, env=env, files_dir=conf, mounts=mounts)


TREE = layout_facts("debian").conf_root
ENV = ("APACHE_RUN_DIR", "APACHE_LOCK_DIR", "APACHE_LOG_DIR")


def copy_tree(root: Path, port: int, tls_port: int | None = None, source: Path = TREE) -> Path:
    """Copy Debian's /etc/apache2 (or the `source` copy of another root's) to root/etc (run/, lock/, log/,
    modules/ beside it), listening on 127.0.0.1 only: the stock site, otherwise unchanged, on `port`. Returns
    the copy's config root."""
    conf = root / "etc"
    shutil.copytree(source, conf, symlinks=True)
    for sub in ("run", "lock", "log", "modules"):
        (root / sub).mkdir()
    (conf / "ports.conf").write_text(lab.render("debian-ports.conf.j2", port=port, tls_port=tls_port))
    for site in (conf / "sites-available").glob("*.conf"):
        site.write_text(site.read_text().replace("<VirtualHost *:80>", f"<VirtualHost *:{port}>"))
    with (conf / "apache2.conf").open("a") as main:
        main.write(lab.render("debian-apache2-tail.conf.j2"))
    return conf


def _enable_default_ssl(conf: Path, include: str, additions: Additions) -> None:
    """a2ensite default-ssl, on the test port with the test certificate, the rendering Included inside it."""
    site = conf / "sites-available" / "default-ssl.conf"
    text = site.read_text()
    text = re.sub(r"<VirtualHost [^>]*:443>", f"<VirtualHost *:{additions.tls_port}>", text)
    for directive, path in (("SSLCertificateFile", additions.tls_cert), ("SSLCertificateKeyFile", additions.tls_key)):
        line = f'{directive} "{path}"'
        text = re.sub(rf"^(\s*){directive}\s.*$", lambda match, line=line: match.group(1) + line, text, flags=re.M)
    line = template_environment("apache").get_template("vhost-include.j2").render(indent="\t", path=conf / include)
    text = text.replace("</VirtualHost>", line + "</VirtualHost>", 1)
    site.write_text(text)
    (conf / "sites-enabled" / "default-ssl.conf").symlink_to("../sites-available/default-ssl.conf")
