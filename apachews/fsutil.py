"""Files written so that nobody ever sees half of one, content digests, and a lock between processes.

Everything that writes into a cache or an output directory goes through here: write beside, then rename.
A failure (or Ctrl-C) leaves nothing behind, and readers see either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_BLOCK = 1 << 20


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's content (any hashlib algorithm)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def fingerprint(value: Any, length: int = 16) -> str:
    """A short, stable hash of a JSON-able value: what cache keys and content-addressed names are made of."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write `path` through a hidden file beside it, renamed over `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / f".{path.name}.{os.getpid()}.part"
    try:
        with open(partial, mode) as handle:
            yield handle
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_atomic(path: Path, data: str | bytes) -> None:
    with atomic_file(path, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


@contextlib.contextmanager
def scratch_dir(parent: Path, prefix: str = ".apachews-") -> Iterator[Path]:
    """An empty hidden directory inside `parent` (same file system: renames out of it are atomic).

    Removed whatever happens; what should survive is moved out with `move_into_place` first.
    """
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def move_into_place(staged: Path, final: Path, *, replace: bool = False) -> None:
    """Rename a finished directory to `final`.

    replace=False (caches): if a concurrent run got there first, keep theirs; `staged` is left to its scratch
    dir. replace=True (outputs): the old `final` is swapped out first, then removed.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if replace and final.exists():
        old = final.parent / f".{final.name}.{os.getpid()}.old"
        final.rename(old)
        try:
            staged.rename(final)
        except BaseException:
            old.rename(final)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        staged.rename(final)
    except OSError:
        if not final.is_dir():
            raise


@contextlib.contextmanager
def atomic_dir(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Fill the yielded empty directory; it becomes `final` only if the block succeeds."""
    with scratch_dir(final.parent, prefix=f".{final.name}-") as scratch:
        staged = scratch / final.name
        staged.mkdir()
        yield staged
        move_into_place(staged, final, replace=replace)


def remove_empty(*paths: Path) -> None:
    """Remove each directory if it is empty (in order: give children before parents)."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.rmdir()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes of this host (flock), e.g. around one build cache volume."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
