"""The Apache httpd release catalogue: every 2.2.x and 2.4.x version and what each one needs.

The facts live in apachews/data/releases.json (data, hand-maintained); which patch series serves which
release lives in patches/index.json next to the series themselves.
"""

from __future__ import annotations

import difflib
import enum
import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from apachews.errors import BadInput
from apachews.resources import package_data, patches_dir
from apachews.serial import AsText, Serialised

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


@functools.total_ordering
@dataclass(frozen=True)
class Version(AsText):
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION_RE.match(text.strip())
        if not match:
            raise BadInput(f"{text!r} is not an Apache version", hint="write it as MAJOR.MINOR.PATCH, e.g. 2.2.31")
        return cls(*(int(part) for part in match.groups()))

    @property
    def family(self) -> str:
        return f"{self.major}.{self.minor}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return (self.major, self.minor, self.patch) < (other.major, other.minor, other.patch)


class Tunnelling(str, enum.Enum):
    """How WebSockets are tunnelled: the one vocabulary of the catalogue, config, verify and matrix."""

    APACHEWS = "apachews"  # the apachews mod_proxy_wstunnel (built by `apachews build`)
    WSTUNNEL = "wstunnel"  # the stock mod_proxy_wstunnel (2.4.5+)
    HTTP_UPGRADE = "http-upgrade"  # mod_proxy_http's upgrade=websocket (2.4.47+)

    @property
    def description(self) -> str:
        return {
            Tunnelling.APACHEWS: "apachews mod_proxy_wstunnel",
            Tunnelling.WSTUNNEL: "stock mod_proxy_wstunnel",
            Tunnelling.HTTP_UPGRADE: "mod_proxy_http upgrade=websocket",
        }[self]

    @property
    def module(self) -> str | None:
        """The module that tunnels, besides mod_proxy and mod_proxy_http."""
        return None if self is Tunnelling.HTTP_UPGRADE else "proxy_wstunnel"

    def __str__(self) -> str:  # what people read; JSON and --prefer use .value
        return self.description


@dataclass(frozen=True)
class Release(Serialised):
    version: Version
    released: bool | None  # None: not confirmed either way
    tarballs: tuple[str, ...]
    stock_wstunnel: bool
    proxy_http_upgrade: bool
    series: str | None
    checksums: dict[str, dict[str, str]] = field(default_factory=dict, hash=False)
    stock_wstunnel_usable: bool = False  # 2.4.10+: the stock module works under load (see releases.json)
    _derived = ("family", "needs_backport", "tunnelling")

    @property
    def family(self) -> str:
        return self.version.family

    @property
    def needs_backport(self) -> bool:
        return not self.stock_wstunnel

    @property
    def tunnelling(self) -> Tunnelling:
        """How this release should tunnel WebSockets by default: the apachews module where there is no stock
        module or it is broken (2.4.6-2.4.9), else the stock way."""
        if self.proxy_http_upgrade:
            return Tunnelling.HTTP_UPGRADE
        return Tunnelling.WSTUNNEL if self.stock_wstunnel_usable else Tunnelling.APACHEWS


def in_ranges(version: Version, ranges: list[str]) -> bool:
    for spec in ranges:
        low, _, high = spec.partition("-")
        if Version.parse(low) <= version <= Version.parse(high or low):
            return True
    return False


class Catalogue:
    def __init__(self, data: dict[str, Any], series_index: dict[str, Any]) -> None:
        features = data["features"]
        stock_since = Version.parse(features["stock_wstunnel_since"])
        upgrade_since = Version.parse(features["proxy_http_upgrade_since"])
        usable_since = Version.parse(features["stock_wstunnel_usable_since"])
        series = series_index.get("series", {})
        self.apr_checksums: dict[str, dict[str, str]] = data.get("apr_checksums", {})
        self.pypi_sdists: dict[str, str] = data.get("pypi_sdists", {})
        self._releases: dict[str, Release] = {}
        for family, info in data["families"].items():
            major, minor = (int(part) for part in family.split("."))
            for patch in range(info["first"], info["last"] + 1):
                version = Version(major, minor, patch)
                released: bool | None = patch not in info["not_released"]
                if patch in info.get("release_unconfirmed", []):
                    released = None
                serving = [name for name, entry in series.items() if in_ranges(version, entry.get("applies_to", []))]
                self._releases[str(version)] = Release(
                    version=version,
                    released=released,
                    tarballs=tuple(t.format(version=version) for t in info["tarballs"]),
                    stock_wstunnel=version >= stock_since,
                    proxy_http_upgrade=version >= upgrade_since,
                    series=serving[0] if serving else None,
                    checksums=data["checksums"].get(str(version), {}),
                    stock_wstunnel_usable=version >= usable_since,
                )

    def all(self, family: str | None = None) -> list[Release]:
        releases = sorted(self._releases.values(), key=lambda r: r.version)
        return [r for r in releases if family is None or r.family == family]

    def families(self) -> list[str]:
        return sorted({r.family for r in self._releases.values()})

    def get(self, text: str) -> Release:
        version = Version.parse(text)
        release = self._releases.get(str(version))
        if release is None:
            close = difflib.get_close_matches(str(version), list(self._releases), n=5, cutoff=0.6)
            raise BadInput(
                f"Apache {version} is not in the catalogue (apachews knows 2.2.x and 2.4.x)",
                hint=("close matches: " + ", ".join(close)) if close else "run `apachews versions` for the list",
                close_matches=close,
            )
        return release

    def expand(self, spec: str, released_only: bool = True) -> list[Release]:
        """Versions named by a spec: `2.2.31,2.4.4`, ranges `2.2.20-2.2.34`, families `all-2.2`."""
        chosen: dict[str, Release] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item.startswith("all-"):
                family = item[4:]
                if family not in self.families():
                    raise BadInput(f"unknown family {family!r}", hint="families: " + ", ".join(self.families()))
                picked = [r for r in self.all(family) if r.released or not released_only]
            elif "-" in item:
                low_text, high_text = item.split("-", 1)
                low, high = self.get(low_text).version, self.get(high_text).version
                if high < low:
                    raise BadInput(f"range {item!r} runs backwards")
                picked = [r for r in self.all() if low <= r.version <= high and (r.released or not released_only)]
            else:
                picked = [self.get(item)]
            for release in picked:
                chosen[str(release.version)] = release
        if not chosen:
            raise BadInput(f"{spec!r} names no Apache release")
        return sorted(chosen.values(), key=lambda r: r.version)


def as_release(value: Release | str) -> Release:
    """A Release as is; a version string looked up in the catalogue (for callers that still hold text)."""
    return value if isinstance(value, Release) else load().get(value)


@functools.lru_cache(maxsize=1)
def load() -> Catalogue:
    data = json.loads(package_data("releases.json").read_text())
    index_file = patches_dir() / "index.json"
    series_index = json.loads(index_file.read_text()) if index_file.exists() else {}
    return Catalogue(data, series_index)
