"""Apache sources: a verified, safely unpacked httpd tree from exactly one origin.

One module per concern: `cache` (layout of the user cache), `unpack` (safe tar extraction), `download`
(the one download-and-verify path), `checksums`, `pypi_index` (a PyPI client), and one module per origin:
`mirror`, `tarball`, `directory`, `git`, `pypi`. `provide()` picks the origin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from apachews import catalogue
from apachews.catalogue import Release
from apachews.errors import BadInput
from apachews.fsutil import file_digest, sha256_file
from apachews.progress import Progress
from apachews.sources.checksums import ALGORITHMS as CHECKSUM_ALGORITHMS
from apachews.sources.checksums import parse_checksum_file
from apachews.sources.directory import from_directory
from apachews.sources.git import from_git
from apachews.sources.mirror import DEFAULT_MIRROR, from_mirror, mirror_url
from apachews.sources.pypi import APR_SDIST, apr_sources, from_pypi
from apachews.sources.pypi_index import PYPI_PROJECT, PYPI_SIMPLE_URL, PypiBundle, pypi_bundle
from apachews.sources.store import cache_dir
from apachews.sources.tarball import from_tarball
from apachews.sources.tree import SourceTree, detect_version

__all__ = [
    "APR_SDIST",
    "CHECKSUM_ALGORITHMS",
    "DEFAULT_MIRROR",
    "PYPI_PROJECT",
    "PYPI_SIMPLE_URL",
    "PypiBundle",
    "SourceOptions",
    "SourceTree",
    "apr_sources",
    "cache_dir",
    "detect_version",
    "file_digest",
    "mirror_url",
    "parse_checksum_file",
    "provide",
    "pypi_bundle",
    "sha256_file",
]

log = logging.getLogger(__name__)


def provide(
    apache: Release | str | None = None,
    *,
    tarball: Path | None = None,
    source: Path | None = None,
    git: Path | None = None,
    from_pypi: bool = False,
    mirror: str | None = None,
    insecure_no_checksum: bool = False,
    progress: Progress | None = None,
) -> SourceTree:
    """An unpacked httpd source tree from exactly one origin (default: a mirror download of `apache`).

    `apache` is a catalogue Release (what the CLI parses `--apache` into); a version string is looked up.
    """
    return SourceOptions(tarball, source, git, from_pypi, mirror, insecure_no_checksum).provide(apache, progress)


@dataclass(frozen=True)
class SourceOptions:
    """Where sources come from, as the user said it (the options of `apachews fetch`)."""

    tarball: Path | None = None
    source: Path | None = None
    git: Path | None = None
    from_pypi: bool = False
    mirror: str | None = None
    insecure_no_checksum: bool = False

    def identity(self) -> dict[str, object]:
        """What names these sources in a cache key (a mirror as the URL it resolves to)."""
        chosen = {name: str(value) for name, value in self.__dict__.items() if value and name != "mirror"}
        if not (self.tarball or self.source or self.git or self.from_pypi):
            chosen["mirror"] = mirror_url(self.mirror)
        return chosen

    def release(self) -> Release:
        """The release a --source tree or --tarball holds, read from it (as `apachews fetch` does) when no
        --apache was given; the other origins need the version to find the sources."""
        if not (self.source or self.tarball):
            raise BadInput(
                "which Apache release? give --apache V",
                hint="e.g. --apache 2.2.31; with --source DIR or --tarball FILE the version is read from the sources",
            )
        return catalogue.load().get(str(self.provide(None).version))

    def provide(self, apache: Release | str | None, progress: Progress | None = None) -> SourceTree:
        progress = progress or Progress()
        chosen = [
            name
            for name, value in (
                ("tarball", self.tarball),
                ("source", self.source),
                ("git", self.git),
                ("from_pypi", self.from_pypi),
            )
            if value
        ]
        if len(chosen) > 1 or (chosen and self.mirror):
            raise BadInput(
                "give exactly one source: " + ", ".join(chosen + (["mirror"] if self.mirror else [])),
                hint="pick one of --mirror, --tarball, --source, --git, --from-pypi",
            )
        release = catalogue.as_release(apache) if apache else None
        log.info("sources of Apache %s from %s", release.version if release else "(detected)", chosen or ["mirror"])
        if self.tarball:
            return from_tarball(self.tarball, release, progress)
        if self.source:
            return from_directory(self.source, release)
        if self.git:
            return from_git(self.git, release, progress)
        if self.from_pypi:
            return from_pypi(release, progress)
        return from_mirror(release, self.mirror, self.insecure_no_checksum, progress)
