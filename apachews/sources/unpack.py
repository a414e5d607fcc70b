"""Safe unpacking of a source tarball: every member is checked before anything is written."""

from __future__ import annotations

import logging
import posixpath
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from apachews.errors import BadInput

log = logging.getLogger(__name__)

HOSTILE_HINT = "this is not a pristine Apache release tarball; get it again from a trusted source"


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse anything that could write or point outside the tree, or create a device."""
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise BadInput(f"tarball member {name!r} would be written outside the tree", hint=HOSTILE_HINT)
    if member.isdev():
        raise BadInput(f"tarball member {name!r} is a device or fifo", hint=HOSTILE_HINT)
    if member.issym() or member.islnk():
        target = member.linkname
        if target.startswith("/"):
            raise BadInput(f"tarball link {name!r} points to the absolute path {target!r}", hint=HOSTILE_HINT)
        # A symlink resolves from its own directory, a hard link from the archive root.
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target))
        if resolved == ".." or resolved.startswith("../"):
            raise BadInput(f"tarball link {name!r} -> {target!r} leaves the tree", hint=HOSTILE_HINT)
    elif not (member.isfile() or member.isdir()):
        raise BadInput(f"tarball member {name!r} has an unsupported type", hint=HOSTILE_HINT)


def unpack_single_top(tarball: Path, into: Path) -> Path:
    """Unpack `tarball` (exactly one top directory) into the directory `into`; return that top directory.

    `into` is the caller's scratch directory: on failure the caller removes it with whatever was written.
    """
    log.info("unpacking %s into %s", tarball, into)
    try:
        with tarfile.open(tarball, "r:*") as archive:
            members = archive.getmembers()
            tops = set()
            for member in members:
                check_member(member)
                top = PurePosixPath(member.name).parts[0] if member.name not in ("", ".") else ""
                if top and top != ".":
                    tops.add(top)
            if len(tops) != 1:
                raise BadInput(
                    f"{tarball.name} must hold exactly one top directory, found {sorted(tops)[:5]}",
                    hint=HOSTILE_HINT,
                )
            if hasattr(tarfile, "data_filter"):
                archive.extractall(into, members=members, filter="data")  # defence in depth
            else:  # pragma: no cover - Python < 3.11.4 without extraction filters
                archive.extractall(into, members=members)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise BadInput(
            f"{tarball} is not a readable .tar.gz/.tar.bz2 archive: {error}",
            hint="the file is corrupt or truncated; download it again",
        ) from error
    tree = into / tops.pop()
    if not tree.is_dir():
        raise BadInput(f"{tarball.name} has no top directory", hint=HOSTILE_HINT)
    return tree
