"""Debian and Ubuntu: mods-available/*.load + a2enmod, conf-available (2.4) or conf.d (2.2)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from apachews.distros import Layout, Parts, placement
from apachews.distros.placement import Action
from apachews.errors import BadInput

if TYPE_CHECKING:
    from apachews.config import Rendering

DEBIAN_ULIMIT_DEFAULT = 8192  # apache2ctl: ULIMIT_MAX_FILES="${APACHE_ULIMIT_MAX_FILES:-ulimit -n 8192}"
_DEPENDS = re.compile(r"^#\s*Depends:\s*(.*)$", re.MULTILINE)


class Debian(Layout):
    name = "debian"
    binary = Path("/usr/sbin/apache2")
    system_modules_dirs = (Path("/usr/lib/apache2/modules"),)
    modules_path = "/usr/lib/apache2/modules"
    tls_vhost = "<VirtualHost _default_:443> of the default-ssl site (a2enmod ssl; a2ensite default-ssl)"
    tls_vhost_dir = "sites-available"  # beside default-ssl; only sites-enabled/ is read

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
        notes.append(f"then: apache2ctl -t && {reload}")
        return notes

    def capacity_file(self, family: str) -> str:
        # conf-enabled (2.4) and conf.d (2.2) are read after the MPM's mods-enabled/mpm_*.conf (2.4) and the
        # MPM sections of apache2.conf (2.2): the last value wins.
        return f"{'conf.d' if family == '2.2' else 'conf-available'}/apachews-capacity.conf"

    def capacity_notes(self, family: str) -> list[str]:
        enable = "" if family == "2.2" else "run: a2enconf apachews-capacity, then "
        restart = "service apache2 restart" if family == "2.2" else "systemctl restart apache2"
        return [
            f"{enable}apache2ctl -t && {restart} (a full restart: ServerLimit and ThreadLimit do not change on a "
            "graceful reload)"
        ]

    def open_files_note(self, family: str, limit: int) -> str:
        if limit <= DEBIAN_ULIMIT_DEFAULT:
            return (
                f"Debian's apache2ctl already starts Apache with `ulimit -n {DEBIAN_ULIMIT_DEFAULT}` "
                "(APACHE_ULIMIT_MAX_FILES in /etc/apache2/envvars)"
            )
        return f"set APACHE_ULIMIT_MAX_FILES='ulimit -n {limit}' in /etc/apache2/envvars (apache2ctl applies it)"

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
            files[f"mods-available/{placement.MODULE_NAME}.load"] = (
                f'{rendering.header}# Depends: proxy\nLoadModule proxy_wstunnel_module "{installed}"\n'
            )
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
