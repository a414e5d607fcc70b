"""Origin "tarball": a release tarball the user already has (checked against the catalogue when it knows it)."""

from __future__ import annotations

from pathlib import Path

from apachews.catalogue import Release
from apachews.errors import BadInput
from apachews.progress import Progress
from apachews.sources import checksums, store
from apachews.sources.tree import SourceTree
from apachews.sources.unpack import HOSTILE_HINT


def from_tarball(tarball: Path, release: Release | None, progress: Progress) -> SourceTree:
    tarball = Path(tarball).expanduser().resolve()
    if not tarball.is_file():
        raise BadInput(f"{tarball} is not a file", hint="give the path of an httpd-*.tar.gz or .tar.bz2")
    how = None
    known = checksums.from_catalogue(release.checksums, tarball.name) if release else None
    if known:
        how = known.verify(tarball, tarball.name, error=BadInput, hint=HOSTILE_HINT)
    return store.unpack_to_cache(tarball, f"tarball:{tarball}", how, release, progress)
