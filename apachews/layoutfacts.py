"""Where each layout's packages put httpd, as data (the "layouts" of apachews/data/distributions.json).

Outside apachews.distros on purpose: httpd.locate tries these binaries, and the distros layout classes (which
build lab trees with httpd) read their own facts here too; importing apachews.distros from httpd would be a
cycle. distros.catalogue re-exports these names: ask it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from apachews.resources import package_data


@dataclass(frozen=True)
class LayoutFacts:
    """Where a layout's packages put httpd, and the control command its scripts run."""

    binary: Path
    modules_dirs: tuple[Path, ...]  # in the order they are tried
    control: str  # apachectl, or the distribution's own name for it
    conf_root: Path  # where its configuration tree lives
    dev_packages: dict[str, str] | None = None  # family -> the dev packages a module is built against
    dev_fetch: str = ""  # the tool that fetches them (apt-get download, ...)
    dev_files: str = ""  # the files it leaves (*.deb, ...)


@functools.lru_cache(maxsize=1)
def _layouts() -> dict[str, LayoutFacts]:
    raw = json.loads(package_data("distributions.json").read_text())["layouts"]
    return {
        name: LayoutFacts(
            Path(entry["binary"]),
            tuple(Path(d) for d in entry["modules"]),
            entry["control"],
            Path(entry["conf_root"]),
            entry["dev"]["packages"] if "dev" in entry else None,
            entry.get("dev", {}).get("fetch", ""),
            entry.get("dev", {}).get("files", ""),
        )
        for name, entry in raw.items()
    }


def layout_facts(layout: str) -> LayoutFacts:
    """The packaged httpd of `layout` (a layout with no packages of its own, generic, has none: KeyError)."""
    return _layouts()[layout]


def all_layout_facts() -> tuple[LayoutFacts, ...]:
    """Every packaged layout's facts, in the order httpd.locate tries them."""
    return tuple(_layouts().values())


def system_httpds() -> tuple[tuple[Path, Path], ...]:
    """(binary, modules dir) of each layout's packaged Apache, in the order they are tried."""
    return tuple((facts.binary, modules) for facts in _layouts().values() for modules in facts.modules_dirs)
