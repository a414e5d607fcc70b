"""What every origin returns (an unpacked httpd tree), and the checks that it is the release asked for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apachews.catalogue import Release, Version
from apachews.errors import BadInput
from apachews.installation import header_values
from apachews.serial import Serialised


@dataclass
class SourceTree(Serialised):
    """An unpacked httpd source tree and where it came from."""

    path: Path
    version: Version
    origin: str
    has_configure: bool
    has_apr: bool
    checksum: str | None = None  # how the tarball was verified, e.g. "sha512 (mirror file)"; None: no tarball
    cache_hit: bool = False
    _derived = ("checksum_algorithm",)

    @property
    def checksum_algorithm(self) -> str | None:
        return self.checksum.split()[0] if self.checksum else None


def is_tree(path: Path) -> bool:
    return (path / "include" / "ap_release.h").is_file()


def detect_version(tree: Path) -> Version:
    """The httpd version of a source tree, read from include/ap_release.h."""
    header = Path(tree) / "include" / "ap_release.h"
    try:
        text = header.read_text(errors="replace")
    except OSError as error:
        raise BadInput(
            f"{tree} is not an Apache httpd source tree (cannot read include/ap_release.h)",
            hint="give the top directory of an httpd source tree (the one holding include/ and modules/)",
        ) from error
    version, _ = header_values(text)
    if version is None:
        raise BadInput(f"{header} does not define the AP_SERVER_*_NUMBER version macros")
    return Version.parse(version)


def tree_info(path: Path, origin: str, checksum: str | None, cache_hit: bool) -> SourceTree:
    return SourceTree(
        path=path,
        version=detect_version(path),
        origin=origin,
        has_configure=(path / "configure").is_file(),
        has_apr=(path / "srclib" / "apr" / "include").is_dir(),
        checksum=checksum,
        cache_hit=cache_hit,
    )


def check_wanted(wanted: Release | None, found: Version, where: str) -> None:
    """A tree must hold the release the user named (when they named one)."""
    if wanted is not None and wanted.version != found:
        raise BadInput(
            f"{where} holds Apache {found}, not the {wanted.version} you asked for",
            hint=f"pass --apache {found}, or give the source of {wanted.version}",
            detected=str(found),
        )


def require_release(release: Release | None) -> Release:
    """Origins that download release tarballs need a version, and one that was released."""
    if release is None:
        raise BadInput("which Apache release? --apache V is required here", hint="e.g. --apache 2.2.31")
    if release.released is False:
        raise BadInput(
            f"Apache {release.version} was tagged but never released: no release tarball exists",
            hint="pick a released version (`apachews versions`), or use --git with an apache/httpd clone",
        )
    return release
