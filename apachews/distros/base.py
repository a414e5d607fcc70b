"""The generic layout (`Layout`: one file to Include from httpd.conf) that each distribution's class overrides,
in the manner of certbot-apache's per-distribution overrides, and `Parts`, what a layout arranges into files.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from apachews.distros import lab, placement
from apachews.distros.catalogue import LayoutFacts
from apachews.distros.lab import Additions
from apachews.distros.placement import Action, Placement
from apachews.errors import BadInput
from apachews.httpd import Httpd, Server
from apachews.loadmodule import load_module_lines
from apachews.resources import template_environment

if TYPE_CHECKING:
    from apachews.rendering import Rendering


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


class Layout:
    """generic: one file to Include from httpd.conf, modules relative to ServerRoot."""

    name = "generic"
    modules_path = "modules"
    facts: LayoutFacts | None = None  # where its packages put httpd (distributions.json); generic: none
    included_dirs = False  # True where the stock main config already includes the directories we write to
    ca_bundle = "/etc/ssl/certs/ca-certificates.crt"  # the system's CA certificates (SSLProxyCACertificateFile)
    tls_vhost = "your TLS <VirtualHost> (the one with SSLEngine on)"  # where --vhost tls routes go
    tls_vhost_dir = ""  # where the file to Include there is written (a directory the server does not read)

    @property
    def binary(self) -> Path | None:
        """The distribution's httpd."""
        return self.facts.binary if self.facts else None

    @property
    def system_modules_dirs(self) -> tuple[Path, ...]:
        """Where its packages put modules."""
        return self.facts.modules_dirs if self.facts else ()

    @property
    def control(self) -> str:
        """The control command its packages install (apachectl, or the distribution's own name for it)."""
        return self.facts.control if self.facts else "apachectl"

    defines: tuple[str, ...] = ()  # what its init script passes httpd as -D (its files may be inside <IfDefine>)
    enables_modules = False  # whether placement enables modules by name (a2enmod), not by LoadModule lines
    main_config_loads_modules = True  # its main config loads modules before any file we add (ours would lose)

    def enable_commands(self, modules: list[str]) -> list[str]:
        """The commands that enable `modules` where the layout enables them by name (a2enmod); else none."""
        return []

    def live_conf_name(self, version: str) -> str:
        """Where live-verify's temporary vhost goes (generic: an Include line appended to the main config)."""
        return "apachews-live-verify.conf"

    # -- detection: the paths that mark this layout's tree, looked at in one round trip (distros.detect) -------
    def markers(self, server_root: Path, conf_dir: Path) -> list[Path]:
        """Paths whose kinds ("dir", "file", "none"...) tell whether a tree is this layout's."""
        return []

    def detects(self, kinds: list[str]) -> bool:
        """Whether the kinds of `markers` (in their order) are this layout's."""
        return False

    def conf_root_of(self, server_root: Path, conf_dir: Path) -> Path:
        """Where placement puts files in a tree of this layout (conf_dir: the main config file's directory)."""
        return conf_dir

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
        template = template_environment("apache").get_template("main-config-includes.j2")
        text = template.render(preset=rendering.preset, paths=[conf_root / name for name in files])
        return [*actions, Action("append", Path(main_config), text=text, why="enable")], []

    def place(
        self,
        rendering: Rendering,
        conf_root: Path,
        module_so: Path | None = None,
        modules_dir: Path | None = None,
        main_config: Path | None = None,
    ) -> Placement:
        """`plan`, then apply it atomically (distros.place: the layout the rendering was made for)."""
        actions, notes = self.plan(
            rendering, conf_root, module_so=module_so, modules_dir=modules_dir, main_config=main_config
        )
        return placement.apply(conf_root, actions, notes)

    def placement_notes(self, rendering: Rendering, conf_root: Path) -> list[str]:
        names = ", ".join(str(conf_root / name) for name in rendering.files)
        return [f"not enabled yet: Include {names} from the server's main config file"]

    def check_rendering(self, rendering: Rendering) -> None:
        if rendering.distro != self.name:
            raise BadInput(f"the {self.name} layout needs a rendering for --distro {self.name}, not {rendering.distro}")

    # -- the lab tree's MPM and stock settings (distros.trees) ---------------------------------------------
    mpm_choosable = False  # verify --mpm: whether its tree can enable another MPM than its own
    runs_contained = False  # whether its lab tree can run an Apache in a container (verify --target)
    lab_skeleton = False  # whether its lab tree is a skeleton written here (its packages are not at hand)

    def ships_tree(self, httpd: Httpd) -> bool:
        """Whether `httpd` is this layout's packaged Apache with its shipped tree at hand (lab trees copy it)."""
        return False

    def lab_mpm(self, httpd: Httpd) -> str | None:
        """The MPM its lab tree loads as shipped (None: the lab default)."""
        own = httpd.modules_dir.parent / "conf" / "httpd.conf"
        if self.lab_skeleton or not own.is_file():
            return None
        loaded = re.search(r"^\s*LoadModule\s+mpm_(\w+)_module", own.read_text(errors="replace"), re.M)
        return loaded.group(1) if loaded else None

    def lab_main_config(self, httpd: Httpd) -> tuple[Path, Path] | None:
        """(main config file, server root) its lab tree starts from, as shipped (None: one written here)."""
        if self.lab_skeleton:
            return None  # httpd's defaults
        return httpd.modules_dir.parent / "conf" / "httpd.conf", httpd.modules_dir.parent

    def lab_mpm_config(self, mpm: str) -> Path | None:
        """The file its tree reads an MPM's own settings from once that MPM is enabled (None: none)."""
        return None

    # -- the lab tree (distros.trees, for verify): "plain", the release's own conf/httpd.conf -------------------
    def lab_tree(
        self, root: Path, httpd: Httpd, rendering: Rendering, module: Path | None, port: int, additions: Additions
    ) -> Server:
        """Lay out `rendering` in the temp dir `root` (empty, removed by the caller) the way a user of this layout
        would, with what verify adds, and return its Server. Here: the release's own default conf/httpd.conf
        from its install prefix, mod_reqtimeout loaded where the release has it, the rendering inside a
        <VirtualHost>."""
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
        if httpd.version >= lab.REQTIMEOUT_SINCE and (httpd.modules_dir / "mod_reqtimeout.so").exists():
            loads.append("reqtimeout")
        loads += [m for m in rendering.modules + additions.modules if m not in loads]
        paths = {"proxy_wstunnel": module} if module is not None else {}
        (root / "conf" / "apachews-preset.conf").write_text(rendering.proxy_conf)
        sizing = rendering.files.get(rendering.capacity_file) if rendering.capacity_file else None
        capacity = root / "conf" / "apachews-capacity.conf" if sizing is not None else None
        if capacity is not None:  # the MPM sizing, at server level after the release's own settings
            capacity.write_text(sizing)
        (root / "conf" / "apachews-verify.conf").write_text(additions.routes)
        (root / "conf" / "apachews-first.conf").write_text(additions.first)
        # Which ProxyPass wins where paths nest: 2.2 takes the first in the file, 2.4 the last <Location> merged.
        # verify's own routes are the more specific ones.
        order = ["first", "verify", "preset"] if httpd.version.family == "2.2" else ["first", "preset", "verify"]
        includes = lab.render("includes.conf.j2", paths=[root / "conf" / f"apachews-{name}.conf" for name in order])
        tail = lab.render(
            "plain.conf.j2",
            loads=load_module_lines(loads, "modules", paths=paths).rstrip("\n"),
            request_read_timeout=lab.request_read_timeout(additions),
            is_22=httpd.version.family == "2.2",
            port=port,
            capacity=capacity,
            server=additions.server.rstrip("\n"),
            includes=includes,
            tls_front=lab.tls_vhost(additions, includes),
        )
        conf = root / "conf" / "httpd.conf"
        conf.write_text(text + tail)
        return Server(httpd, root, conf, port, root / "logs" / "error_log", files_dir=root)
