"""The apachews cache: where downloads, unpacked trees and exported tags live, and how trees get there.

<cache>/downloads/<mirror hash>/httpd-V.tar.gz (+ .json: how it was verified)
<cache>/pypi/                    mod-wsgi-httpd sdists and the tarballs they carry
<cache>/trees/<content hash>/httpd-V/   a tarball, unpacked (keyed by the tarball's sha256)
<cache>/trees/git-<commit>/httpd-V/     a git tag, exported
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from apachews.catalogue import Release
from apachews.fsutil import fingerprint, move_into_place, remove_empty, scratch_dir, sha256_file
from apachews.progress import Progress
from apachews.sources.tree import SourceTree, check_wanted, detect_version, is_tree, tree_info
from apachews.sources.unpack import unpack_single_top

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """The user cache of apachews (XDG via platformdirs); $APACHEWS_CACHE overrides it."""
    override = os.environ.get("APACHEWS_CACHE")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("apachews"))


def downloads_dir(mirror: str) -> Path:
    return cache_dir() / "downloads" / fingerprint(mirror)


def pypi_dir() -> Path:
    return cache_dir() / "pypi"


def trees_dir() -> Path:
    return cache_dir() / "trees"


def unpack_to_cache(
    tarball: Path, origin: str, checksum: str | None, wanted: Release | None, progress: Progress
) -> SourceTree:
    """Unpack a verified tarball into the tree cache, keyed by its content; reuse an earlier unpack."""
    slot = trees_dir() / sha256_file(tarball)[:16]
    for path in sorted(slot.glob("httpd-*")) if slot.is_dir() else []:
        if is_tree(path):
            check_wanted(wanted, detect_version(path), tarball.name)
            progress.step(f"reusing the unpacked tree {path}")
            log.info("cache hit: %s was unpacked before at %s", tarball.name, path)
            return tree_info(path, origin, checksum, cache_hit=True)
    progress.step(f"unpacking {tarball.name}")
    final = place_tree(slot, lambda scratch: unpack_single_top(tarball, scratch), wanted, tarball.name)
    return tree_info(final, origin, checksum, cache_hit=False)


def place_tree(slot: Path, make, wanted: Release | None, where: str) -> Path:
    """Make a tree in a scratch dir (`make(scratch) -> tree`), check its version, rename it to slot/httpd-V.

    If a concurrent run placed the same tree first, theirs is kept. A failure leaves no directory behind.
    """
    try:
        with scratch_dir(slot, prefix=".unpack-") as scratch:
            staged = make(scratch)
            found = detect_version(staged)
            check_wanted(wanted, found, where)
            final = slot / f"httpd-{found}"
            move_into_place(staged, final)
    finally:
        remove_empty(slot, slot.parent)
    log.info("placed %s", final)
    return final
