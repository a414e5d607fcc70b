"""What it takes to build one Apache release with today's compilers (data in data/build-flags.json)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from apachews.catalogue import Version, in_ranges
from apachews.errors import BadInput
from apachews.resources import package_data
from apachews.serial import Serialised

PREFIX = "/opt/apachews/httpd"  # install prefix inside the build; the dist copy is run with -d


@dataclass(frozen=True)
class Recipe(Serialised):
    version: Version
    cflags: tuple[str, ...]
    configure_args: tuple[str, ...]
    apr: str  # "old" or "current"
    why: str
    mpm: str = ""  # the MPM compiled in (--with-mpm)
    make_vars: tuple[tuple[str, str], ...] = ()  # given on make's command line (the quirks of old releases)
    openssl: str = ""  # what mod_ssl builds against: "1.0.2" (--openssl-* sources) or "system" (the image's)
    openssl_config: tuple[str, ...] = ()  # more arguments to OpenSSL's ./config (e.g. enable-ssl2)
    _omit = ("version", "cflags", "make_vars")  # JSON: the flags as one line, the make variables as a dict
    _derived = ("cflags_line", "make_vars_dict")
    _renamed = {"cflags_line": "cflags", "make_vars_dict": "make_vars"}

    @property
    def cflags_line(self) -> str:
        return " ".join(self.cflags)

    @property
    def make_vars_dict(self) -> dict[str, str]:
        return dict(self.make_vars)


@functools.lru_cache(maxsize=1)
def _flags() -> dict:
    return json.loads(package_data("build-flags.json").read_text())


def mpms(version: Version) -> tuple[str, ...]:
    """The MPMs apachews builds this release with, its default first."""
    return tuple(_rule(version)["mpms"])


def _rule(version: Version) -> dict:
    for rule in _flags()["rules"]:
        if in_ranges(version, rule["applies_to"]):
            return rule
    raise BadInput(f"apachews does not know how to build Apache {version}")


def recipe(version: Version, mpm: str | None = None) -> Recipe:
    """The recipe for `version` with `mpm` (None: the release's default MPM)."""
    data, rule = _flags(), _rule(version)
    mpm = mpm or rule["mpms"][0]
    if mpm not in rule["mpms"]:
        raise BadInput(
            f"apachews does not build Apache {version} with the {mpm} MPM",
            hint=f"use --mpm {' or --mpm '.join(rule['mpms'])}",
        )
    quirks = [quirk for quirk in data.get("quirks", []) if in_ranges(version, quirk["applies_to"])]
    return Recipe(
        version=version,
        cflags=tuple(rule["cflags"]),
        configure_args=(f"--prefix={PREFIX}", *data["common_configure"], *rule["configure"], f"--with-mpm={mpm}"),
        apr=rule["apr"],
        why="; ".join([rule["why"], *(quirk["why"] for quirk in quirks)]),
        mpm=mpm,
        make_vars=tuple((name, value) for quirk in quirks for name, value in quirk["make_vars"].items()),
        openssl=openssl_rule(version)["openssl"],
        openssl_config=tuple(openssl_rule(version).get("openssl_config", ())),
    )


def openssl_rule(version: Version) -> dict:
    """Which OpenSSL this release's mod_ssl builds against, and why (build-flags.json "openssl")."""
    for rule in _flags().get("openssl", []):
        if in_ranges(version, rule["applies_to"]):
            return rule
    return {"openssl": "system", "why": "no rule: the image's OpenSSL"}
