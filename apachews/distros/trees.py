"""Throwaway server trees in the layouts users run, for verify.

A lab ServerRoot (httpd.ServerRoot, layout "bare") proves little: users run a distribution's tree, with its
<VirtualHost>, its mod_reqtimeout and its way of enabling modules. Each layout class of distros builds such a
tree in a temp dir (`Layout.lab_tree`), installs a rendering the way a user of that layout would, adds what
verify needs (its extra routes, a TLS <VirtualHost>, lowered timeouts) and returns an httpd.Server to run it;
"plain" is the generic layout's: the release's own conf/httpd.conf with the rendering in a <VirtualHost>. The
skeleton trees are written from what their distributions ship (their packages are not at hand: a skeleton keeps
what decides where a rendering goes and what is enabled, not every default).

This module is the generic part: which layout, which MPM, the stock MPM settings, and the dispatch.
"""

from __future__ import annotations

from pathlib import Path

from apachews import capacity, distros, doctor
from apachews.distros import debian
from apachews.distros.base import Layout
from apachews.distros.lab import REQTIMEOUT_SINCE, SHIPPED_REQUEST_READ_TIMEOUT, Additions
from apachews.errors import BadInput
from apachews.httpd import Httpd, Server
from apachews.rendering import Rendering

__all__ = [
    "DEBIAN_TREE",
    "LAYOUTS",
    "REQTIMEOUT_SINCE",
    "SHIPPED_REQUEST_READ_TIMEOUT",
    "Additions",
    "build",
    "copy_debian_tree",
    "default_layout",
    "layout_mpm",
    "rendering_distro",
    "stock_settings",
]

PLAIN, BARE = "plain", "bare"  # the generic layout's tree (the release's own httpd.conf), the lab ServerRoot
LAYOUTS = (*(name for name in distros.NAMES if name != "generic"), PLAIN, BARE)
# The shipped tree a packaged Apache's lab tree copies (tests compare against it).
DEBIAN_TREE = debian.TREE
copy_debian_tree = debian.copy_tree


def rendering_distro(layout: str) -> str:
    """The `apachews config --distro` a layout's user would render with."""
    return "generic" if layout in (PLAIN, BARE) else layout


def layout_of(layout: str) -> Layout | None:
    """The distros layout class that builds the tree of `layout` (None: bare, httpd's lab ServerRoot)."""
    if layout not in LAYOUTS:
        raise BadInput(f"unknown layout {layout!r}", hint="layouts: " + ", ".join(LAYOUTS))
    return None if layout == BARE else distros.get(rendering_distro(layout))


def default_layout(httpd: Httpd) -> str:
    """The layout of the Apache at hand: its distribution's own tree for a packaged Apache whose tree is here,
    the release's for a build, its distribution's for one in a container."""
    if httpd.runner is not None:
        return httpd.runner.layout
    if httpd.kind == "prefix":
        return PLAIN
    for name in distros.NAMES:
        if distros.get(name).ships_tree(httpd):
            return name
    return BARE


def layout_mpm(layout: str, httpd: Httpd, mpm: str | None = None) -> str:
    """The MPM the tree of `layout` runs: one compiled into the binary (`httpd -l`: prefork.c, ...), else `mpm`
    (verify --mpm: a layout whose tree can enable another, and bare), else the one the layout's tree enables
    (Debian's mods-enabled/mpm_*.load, the build's httpd.conf), else event (what the skeletons and the lab
    ServerRoot load)."""
    listed = httpd_listing(httpd)
    static = [name for name in capacity.MPMS if f"{name}.c" in listed]
    if static:
        if mpm is not None and mpm != static[0]:
            raise BadInput(f"{httpd.binary} has the {static[0]} MPM built in", hint="leave out --mpm")
        return static[0]
    tree = layout_of(layout)
    if mpm is not None:
        if mpm not in capacity.MPMS or (tree is not None and not tree.mpm_choosable):
            choosable = [name for name in LAYOUTS if name == BARE or distros.get(rendering_distro(name)).mpm_choosable]
            raise BadInput(
                f"--mpm {mpm} with the {layout} layout", hint=f"--mpm goes with --layout {' or '.join(choosable)}"
            )
        return mpm
    shipped = tree.lab_mpm(httpd) if tree is not None else None
    return shipped if shipped in capacity.MPMS else "event"


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
    tree = layout_of(layout)
    shipped = tree.lab_main_config(httpd) if tree is not None else None
    if shipped is None or not shipped[0].is_file():
        return capacity.defaults(family, mpm)
    main, root = shipped
    files = doctor.follow_includes(main, root)
    own = tree.lab_mpm_config(mpm) if tree is not None and chosen is not None else None
    if own is not None:  # the MPM's own settings, as a2enmod would enable them
        files.append(str(own))
    # Only the running MPM's <IfModule> sections count (httpd-mpm.conf has one per MPM).
    directives = doctor.scan_directives(files, doctor.MPM_DIRECTIVES, {f"mpm_{mpm}_module": "shared"})
    return doctor.mpm_settings(directives, family, mpm)


def build(
    layout: str, root: Path, httpd: Httpd, rendering: Rendering, module: Path | None, port: int, additions: Additions
) -> Server:
    """Lay out `rendering` in the temp dir `root` (empty, removed by the caller) and return its Server."""
    tree = layout_of(layout)
    if tree is None:
        raise BadInput(f"the {layout} layout is httpd's lab ServerRoot, not a tree built here")
    if httpd.runner is not None and not tree.runs_contained:
        raise BadInput(
            f"the {layout} layout runs an Apache of this host, not the one in {httpd.runner.name}",
            hint=f"use its own layout: --layout {httpd.runner.layout}",
        )
    return tree.lab_tree(root, httpd, rendering, module, port, additions)
