"""What it takes to build one Apache release with today's compilers (data in data/build-flags.json)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from apachews.catalogue import Version, in_ranges
from apachews.errors import BadInput
from apachews.resources import package_data

PREFIX = "/opt/apachews/httpd"  # install prefix inside the build; the dist copy is run with -d


@dataclass(frozen=True)
class Recipe:
    version: Version
    cflags: tuple[str, ...]
    configure_args: tuple[str, ...]
    apr: str  # "old" or "current"
    why: str

    def to_dict(self) -> dict[str, object]:
        return {
            "cflags": " ".join(self.cflags),
            "configure_args": list(self.configure_args),
            "apr": self.apr,
            "why": self.why,
        }


@functools.lru_cache(maxsize=1)
def _flags() -> dict:
    return json.loads(package_data("build-flags.json").read_text())


def recipe(version: Version) -> Recipe:
    data = _flags()
    for rule in data["rules"]:
        if in_ranges(version, rule["applies_to"]):
            return Recipe(
                version=version,
                cflags=tuple(rule["cflags"]),
                configure_args=(f"--prefix={PREFIX}", *data["common_configure"], *rule["configure"]),
                apr=rule["apr"],
                why=rule["why"],
            )
    raise BadInput(f"apachews does not know how to build Apache {version}")
