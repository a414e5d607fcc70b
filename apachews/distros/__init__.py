"""Where each distribution keeps Apache's module and configuration files: the only place that knows one.

One small class per distribution (debian.py, rhel.py, gentoo.py) overrides what differs from `Layout`
(base.py, the generic single-file layout), in the manner of certbot-apache's per-distribution overrides: how
it is detected on disk, its binary and control command, where modules and configs go, and the lab tree verify
runs it in. `get(name)` gives one; `detect` finds the one of a server's tree; `place` installs a rendering.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from apachews.distros import debian, gentoo, rhel
from apachews.distros.base import Layout, Parts
from apachews.distros.catalogue import Distribution, distributions, family_floor, shipping
from apachews.distros.placement import Action, Placement, unplace
from apachews.errors import BadInput
from apachews.loadmodule import load_module_lines
from apachews.transport import LOCAL, Transport

if TYPE_CHECKING:
    from apachews.rendering import Rendering

__all__ = [
    "NAMES",
    "Action",
    "Distribution",
    "Layout",
    "Parts",
    "Placement",
    "detect",
    "distributions",
    "family_floor",
    "get",
    "load_module_lines",
    "place",
    "shipping",
    "unplace",
]

_LAYOUTS: dict[str, Layout] = {
    layout.name: layout for layout in (Layout(), debian.Debian(), rhel.Rhel(), gentoo.Gentoo())
}
NAMES = tuple(_LAYOUTS)


def get(name: str) -> Layout:
    try:
        return _LAYOUTS[name]
    except KeyError:
        raise BadInput(f"unknown distribution {name!r}", hint="use one of: " + ", ".join(_LAYOUTS)) from None


def detect(server_root: Path, config_file: Path, host: Transport = LOCAL) -> tuple[str, Path]:
    """(layout name, config root where placement puts files) of the tree on disk: each layout names the paths
    that mark it, all are looked at in one round trip (to a remote server), the first layout that matches wins
    (generic when none does)."""
    conf_dir = config_file.parent
    marks = {layout.name: layout.markers(server_root, conf_dir) for layout in _LAYOUTS.values()}
    places = [path for paths in marks.values() for path in paths]
    kinds = dict(zip(places, host.kinds(places)))
    for layout in _LAYOUTS.values():
        if layout.facts is not None and layout.detects([kinds[path] for path in marks[layout.name]]):
            return layout.name, layout.conf_root_of(server_root, conf_dir)
    return "generic", conf_dir


def place(
    rendering: Rendering,
    conf_root: Path,
    module_so: Path | None = None,
    modules_dir: Path | None = None,
    main_config: Path | None = None,
) -> Placement:
    """Install `rendering` into the tree at conf_root the way its distribution does, atomically.

    module_so: an apachews mod_proxy_wstunnel.so to install (as MODULE_FILE in modules_dir, default: the
    distribution's modules directory) and load instead of the stock module. main_config: for the generic
    layout, the main config file that gets an Include line (else the files are only written). Returns what
    was changed.
    """
    return get(rendering.distro).place(
        rendering, Path(conf_root), module_so=module_so, modules_dir=modules_dir, main_config=main_config
    )
