"""The distributions that ship Apache, as data (apachews/data/distributions.json): what a module built
elsewhere must match to load on each (glibc, MMN major, architecture), and the glibc floor of a family.

The one place that knows which distribution ships which glibc; `build --target`, doctor and packaging ask
it. Also where each layout's packages put httpd (`layout_facts`, `system_httpds`: what httpd.locate tries).
It imports nothing else of apachews' distros, so every stage can use it without cycles (httpd, which the layout
classes import, reads the layouts' facts from apachews/layoutfacts.py, outside this package).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from apachews.binary import GlibcVersion
from apachews.catalogue import Version
from apachews.errors import BadInput
from apachews.layoutfacts import LayoutFacts, all_layout_facts, layout_facts, system_httpds
from apachews.resources import package_data
from apachews.serial import Serialised

__all__ = ["Distribution", "LayoutFacts", "distributions", "family_floor", "from_package_version", "get"]
__all__ += [
    "BuildBase",
    "all_layout_facts",
    "build_base",
    "host_apt_mirror",
    "layout_facts",
    "shipping",
    "system_httpds",
]


@dataclass(frozen=True)
class Distribution(Serialised):
    key: str  # what --target takes: centos6, debian11, ...
    name: str  # what people read: CentOS 6
    glibc: GlibcVersion
    apache: Version
    mmn: int  # MODULE_MAGIC_NUMBER_MAJOR of its httpd
    layout: str  # the distros layout its files follow
    mpms: tuple[str, ...]  # its MPMs, the default first
    suite: str | None = None  # a Debian suite debootstrap can fetch here (a real root for verify and SSH tests)
    _renamed = {"key": "target"}

    @property
    def family(self) -> str:
        return self.apache.family


@functools.lru_cache(maxsize=1)
def distributions() -> dict[str, Distribution]:
    """Every known distribution by key, oldest glibc first."""
    raw = json.loads(package_data("distributions.json").read_text())["distributions"]
    known = [
        Distribution(
            key=key,
            name=entry["name"],
            glibc=GlibcVersion.parse(entry["glibc"]),
            apache=Version.parse(entry["apache"]),
            mmn=int(entry["mmn"]),
            layout=entry["layout"],
            mpms=tuple(entry["mpms"]),
            suite=entry.get("suite"),
        )
        for key, entry in raw.items()
    ]
    return {d.key: d for d in sorted(known, key=lambda d: (d.glibc, d.apache))}


def get(key: str) -> Distribution:
    """The distribution `key` (as --target takes it), or BadInput listing the known ones."""
    known = distributions()
    if key not in known:
        raise BadInput(f"unknown target distribution {key!r}", hint=f"use one of: {', '.join(known)}")
    return known[key]


def from_package_version(version: str, headers_version: str) -> set[str]:
    """The distribution keys a package's version string names (`~deb11u1`, `+deb8u12`, `.el7`, an Ubuntu one by
    the Apache release it ships); a key not in the catalogue where the version names an unknown one; none when
    it does not say."""
    known = distributions()
    debian = re.search(r"[~+]deb(\d+)u\d", version)
    rhel = re.search(r"\.el(\d+)", version)
    if debian:
        return {f"debian{debian.group(1)}"}
    if rhel:
        number = rhel.group(1)
        return {next((key for key in (f"centos{number}", f"rhel{number}") if key in known), f"el{number}")}
    if "ubuntu" in version:
        ubuntu = [d.key for d in known.values() if d.key.startswith("ubuntu") and str(d.apache) == headers_version]
        return set(ubuntu or ["ubuntu?"])
    return set()


def shipping(family: str) -> list[Distribution]:
    """The distributions that shipped a release of `family` ("2.2" or "2.4")."""
    return [d for d in distributions().values() if d.family == family]


def family_floor(family: str) -> GlibcVersion:
    """The glibc a module of `family` must need at most to load on every distribution that shipped it."""
    shipped = shipping(family)
    if not shipped:
        raise BadInput(f"no distribution in the catalogue shipped Apache {family}")
    return min(d.glibc for d in shipped)


@dataclass(frozen=True)
class BuildBase:
    """The Docker base image builds run in: a Debian suite debootstrapped with these packages."""

    suite: str
    packages: tuple[str, ...]
    yum_images: tuple[str, ...]  # image names (centos, rocky, ...) whose packages come from yum, not apt
    target_packages: tuple[str, ...]  # a target image: the distribution's own Apache, an sshd and sudo

    def family_of(self, image: str) -> str:
        """The package-manager family of an image name: "yum" (centos, rocky, ...) or "apt"."""
        name = image.rsplit("/", 1)[-1].split(":", 1)[0].lower()
        return "yum" if name in self.yum_images else "apt"


@functools.lru_cache(maxsize=1)
def build_base() -> BuildBase:
    raw = json.loads(package_data("distributions.json").read_text())["build_base"]
    return BuildBase(raw["suite"], tuple(raw["packages"]), tuple(raw["yum_images"]), tuple(raw["target_packages"]))


def host_apt_mirror() -> str:
    """The Debian mirror this host's apt uses (deb822 or one-line sources), for debootstrap."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s", text, re.MULTILINE):
            return match.group(1)
    return "http://deb.debian.org/debian"
