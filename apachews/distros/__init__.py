"""Where each distribution keeps Apache's module and configuration files.

One small class per distribution overrides what differs from `Layout` (the generic single-file layout),
in the manner of certbot-apache's per-distribution overrides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from apachews.distros import placement
from apachews.distros.placement import Action, Placement, place, unplace
from apachews.errors import BadInput
from apachews.resources import template_environment

if TYPE_CHECKING:
    from apachews.config import Rendering

__all__ = ["NAMES", "Action", "Layout", "Parts", "Placement", "get", "load_module_lines", "place", "unplace"]


@dataclass(frozen=True)
class Parts:
    """What a layout arranges into files: rendered LoadModule text, rendered proxy config, context."""

    preset: str
    family: str  # "2.2" or "2.4"
    needs_backport: bool
    modules: tuple[str, ...]
    proxy_conf: str

    def module_lines(self, modules_path: str, guarded: bool = True, names: tuple[str, ...] | None = None) -> str:
        return load_module_lines(self.modules if names is None else names, modules_path, guarded=guarded)


def load_module_lines(
    names: Iterable[str],
    modules_path: str | Path,
    *,
    guarded: bool = True,
    paths: Mapping[str, str | Path] | None = None,
    define: str | None = None,
) -> str:
    """`LoadModule` lines for `names` from modules_path/mod_NAME.so (or `paths[name]`), rendered from
    templates/apache/modules.conf.j2: the one place apachews writes them."""
    paths = paths or {}
    modules = []
    for name in names:
        path = str(paths.get(name) or f"{modules_path}/mod_{name}.so")
        modules.append({"name": name, "path": f'"{path}"' if any(c.isspace() for c in path) else path})
    text = (
        template_environment("apache")
        .get_template("modules.conf.j2")
        .render(modules=modules, guarded=guarded, define=define)
    )
    # One blank-free block: the template's lines, each block on its own lines.
    return "\n".join(line for line in text.splitlines() if line.strip()) + ("\n" if modules else "")


class Layout:
    """generic: one file to Include from httpd.conf, modules relative to ServerRoot."""

    name = "generic"
    modules_path = "modules"
    binary: Path | None = None  # the distribution's httpd
    system_modules_dirs: tuple[Path, ...] = ()  # where its packages put modules
    included_dirs = False  # True where the stock main config already includes the directories we write to
    ca_bundle = "/etc/ssl/certs/ca-certificates.crt"  # the system's CA certificates (SSLProxyCACertificateFile)
    tls_vhost = "your TLS <VirtualHost> (the one with SSLEngine on)"  # where --vhost tls routes go
    tls_vhost_dir = ""  # where the file to Include there is written (a directory the server does not read)

    def files(self, parts: Parts) -> dict[str, str]:
        return {f"apachews-{parts.preset}.conf": parts.module_lines(self.modules_path) + "\n" + parts.proxy_conf}

    def notes(self, parts: Parts) -> list[str]:
        return [f"Include apachews-{parts.preset}.conf from httpd.conf, then run apachectl -t and reload."]

    # -- --vhost tls: the routes inside the TLS <VirtualHost>, the modules where files() puts them ------------
    def tls_vhost_files(self, parts: Parts) -> tuple[dict[str, str], str]:
        """The files for routes that go inside the TLS <VirtualHost>: the LoadModule lines as files() places them
        (server level), the routes in a file of their own, not read by itself; returns them and that file's name."""
        modules_only = Parts(parts.preset, parts.family, parts.needs_backport, parts.modules, "")
        files = {name: text for name, text in self.files(modules_only).items() if text.strip()}
        include = str(Path(self.tls_vhost_dir) / f"apachews-{parts.preset}-ssl.include")
        files[include] = parts.proxy_conf
        return files, include

    def tls_vhost_notes(self, parts: Parts, include: str) -> list[str]:
        return [f"Include {include} inside {self.tls_vhost}, then run apachectl -t and reload."]

    # -- the MPM sizing (apachews config --max-websockets): one file, read after the distribution's MPM config --
    def capacity_file(self, family: str) -> str:
        return "apachews-capacity.conf"

    def capacity_notes(self, family: str) -> list[str]:
        """How to enable the sizing file, and the full restart its ServerLimit needs."""
        return [
            "Include apachews-capacity.conf from httpd.conf after the MPM settings (conf/extra/httpd-mpm.conf), "
            "then stop and start Apache: apachectl -k stop && apachectl -k start (ServerLimit and ThreadLimit "
            "do not change on a graceful reload)."
        ]

    def open_files_note(self, family: str, limit: int) -> str:
        """Where this distribution sets the open-files limit (RLIMIT_NOFILE) Apache starts with."""
        return f"run `ulimit -n {limit}` in the shell or init script that starts apachectl"

    # -- placement: where a rendering's files go under a server's config root, and how they are enabled ----
    def default_modules_dir(self, conf_root: Path) -> Path:
        """Where modules live when the caller does not say (LoadModule paths relative to ServerRoot)."""
        return conf_root / self.modules_path

    def plan(
        self,
        rendering: Rendering,
        conf_root: Path,
        module_so: Path | None = None,
        modules_dir: Path | None = None,
        main_config: Path | None = None,
    ) -> tuple[list[Action], list[str]]:
        """The file operations that install `rendering` under conf_root, and what is left for the admin.

        main_config: the server's main config file, for layouts that have no directory it already includes
        (generic): an Include line is appended to it. Without it the files are only written."""
        modules_dir = Path(modules_dir) if modules_dir else self.default_modules_dir(conf_root)
        actions, installed = placement.module_actions(rendering, module_so, modules_dir)
        files = placement.checked_files(rendering)
        actions += placement.write_actions(conf_root, files, installed)
        if main_config is None or self.included_dirs:
            return actions, self.placement_notes(rendering, conf_root)
        includes = "".join(f'Include "{conf_root / name}"\n' for name in files)
        text = f"\n# apachews {rendering.preset} (remove with: apachews uninstall {rendering.preset})\n{includes}"
        return [*actions, Action("append", Path(main_config), text=text, why="enable")], []

    def placement_notes(self, rendering: Rendering, conf_root: Path) -> list[str]:
        names = ", ".join(str(conf_root / name) for name in rendering.files)
        return [f"not enabled yet: Include {names} from the server's main config file"]


def get(name: str) -> Layout:
    from apachews.distros import debian, gentoo, rhel

    layouts = {"generic": Layout(), "debian": debian.Debian(), "rhel": rhel.Rhel(), "gentoo": gentoo.Gentoo()}
    try:
        return layouts[name]
    except KeyError:
        raise BadInput(f"unknown distribution {name!r}", hint="use one of: " + ", ".join(layouts)) from None


NAMES = ("generic", "debian", "rhel", "gentoo")
