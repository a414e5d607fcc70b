"""What apachews keeps between runs, with sizes, and how to remove it (`apachews cache list|prune`).

Three kinds of thing:
- "volume": Docker build volumes (`apachews-build-<key>`, labelled apachews=build with the version and image
  they build) and the compiler cache volume; found by label or, for volumes made before the labels, by name;
- "image": apachews images (apachews/base:<suite>, apachews/builder:<hash>), by label or repository;
- "download": the file cache (`apachews.sources.cache_dir()`): downloads, unpacked trees, PyPI sdists,
  git exports, local build trees, kept logs; one entry per item under each top-level directory.

A build volume whose build lock is held (a build is running) is never pruned, nor an image a container uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from apachews import images, sources
from apachews.errors import BadInput
from apachews.serial import Serialised

log = logging.getLogger(__name__)

KINDS = ("volume", "image", "download")
_VOLUME_PREFIX = "apachews-"


@dataclass
class Entry(Serialised):
    kind: str
    name: str
    size: int | None  # bytes; None when the engine does not say
    created: float | None = None  # epoch seconds (for a file entry: its newest mtime, i.e. last written)
    labels: dict[str, str] = field(default_factory=dict)
    in_use: str | None = None  # why it cannot be removed now (None when it can)
    _derived = ("version",)

    @property
    def version(self) -> str | None:
        """The apachews version that made it (None: not labelled)."""
        return self.labels.get("apachews.version") or None


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _docker_time(text: str | None) -> float | None:
    """Docker's RFC 3339 time ("2026-11-25T12:00:00Z", "...:00.123456789+01:00"): seconds are enough."""
    if not text or len(text) < 19:
        return None
    zone = "+00:00" if text.endswith("Z") else text[-6:]
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text[:19] + zone).timestamp()
    return None


def _build_lock(volume: str) -> Path:
    """The lock `apachews.build` holds while a build uses this volume."""
    return images.workspace_lock_path(volume.removeprefix(images.BUILD_VOLUME_PREFIX))


@contextlib.contextmanager
def _unless_locked(path: Path) -> Iterator[bool]:
    """Hold `path`'s lock for the block if nobody does (yields True), else yield False at once."""
    if not path.exists():
        yield True
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def docker_entries(engine=None) -> list[Entry]:
    """apachews volumes and images in the engine, with the sizes `docker system df -v` reports."""
    engine = engine or images.client()
    usage = engine.df()
    entries: list[Entry] = []
    for volume in usage.get("Volumes") or []:
        name, labels = volume.get("Name", ""), volume.get("Labels") or {}
        if labels.get(images.LABEL) is None and not name.startswith(_VOLUME_PREFIX):
            continue
        data = volume.get("UsageData") or {}
        size = data.get("Size")
        entry = Entry("volume", name, size if isinstance(size, int) and size >= 0 else None,
                      _docker_time(volume.get("CreatedAt")), dict(labels))  # fmt: skip
        if (data.get("RefCount") or 0) > 0:
            entry.in_use = "used by a container"
        elif name.startswith(images.BUILD_VOLUME_PREFIX) and not _lock_free(_build_lock(name)):
            entry.in_use = "a build holds its lock"
        entries.append(entry)
    for image in usage.get("Images") or []:
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        labels = image.get("Labels") or {}
        ours = [t for t in tags if t.startswith(("apachews/",))]
        if not ours and labels.get(images.LABEL) is None:
            continue
        entry = Entry("image", ", ".join(ours or tags) or image.get("Id", "")[:19], image.get("Size"),
                      float(image.get("Created") or 0) or None, dict(labels))  # fmt: skip
        if (image.get("Containers") or 0) > 0:
            entry.in_use = "used by a container"
        entries.append(entry)
    return entries


def _lock_free(path: Path) -> bool:
    with _unless_locked(path) as free:
        return free


def _tree_size(path: Path) -> tuple[int, float]:
    """Bytes on disk and the newest mtime under `path` (links not followed)."""
    if path.is_symlink() or not path.is_dir():
        info = path.lstat()
        return info.st_size, info.st_mtime
    total, newest = 0, path.lstat().st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(root, name))
                total += info.st_size
                newest = max(newest, info.st_mtime)
    return total, newest


def file_entries(root: Path | None = None) -> list[Entry]:
    """One entry per item under each top-level directory of the file cache (e.g. downloads/<mirror>)."""
    root = root or sources.cache_dir()
    entries: list[Entry] = []
    if not root.is_dir():
        return entries
    # A linked top directory (a shared download dir) is not ours to empty: left out.
    for top in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name != "locks"):
        for item in sorted(top.iterdir()):
            size, newest = _tree_size(item)
            entries.append(Entry("download", str(item.relative_to(root)), size, newest))
    return entries


def list_entries(kinds: tuple[str, ...] = KINDS, version: str | None = None) -> list[Entry]:
    """Everything apachews keeps, of these kinds (and, for volumes, building this version)."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise BadInput(f"unknown cache kind {sorted(unknown)}", hint=f"kinds: {', '.join(KINDS)}")
    entries: list[Entry] = []
    if "volume" in kinds or "image" in kinds:
        entries += [e for e in docker_entries() if e.kind in kinds]
    if "download" in kinds:
        entries += file_entries()
    if version:
        entries = [e for e in entries if e.kind == "volume" and e.version == version]
    return entries


def prune(
    kinds: tuple[str, ...] = KINDS,
    *,
    older_than: float | None = None,
    version: str | None = None,
    include_base: bool = False,
    dry_run: bool = False,
) -> tuple[list[Entry], list[Entry]]:
    """Remove what `list_entries` finds (older than `older_than` seconds, when given). Returns (removed, kept):
    kept are the entries in use, and base images unless `include_base` (re-making one takes minutes)."""
    now = time.time()
    removed: list[Entry] = []
    kept: list[Entry] = []
    engine = images.client() if {"volume", "image"} & set(kinds) else None
    for entry in list_entries(kinds, version):
        if older_than is not None and entry.created is not None and now - entry.created < older_than:
            continue
        if entry.kind == "image" and not include_base and entry.labels.get(images.LABEL, "") != "builder":
            if images.BUILDER_REPOSITORY not in entry.name:
                entry.in_use = entry.in_use or "a base image (--include-base removes it)"
        if entry.in_use:
            kept.append(entry)
            continue
        if not dry_run and not _remove(entry, engine):
            kept.append(entry)
            continue
        removed.append(entry)
    return removed, kept


def _remove(entry: Entry, engine) -> bool:
    from docker.errors import APIError, NotFound

    try:
        if entry.kind == "volume":
            # Taken under the build lock, so a build cannot start in a volume being removed.
            with _unless_locked(_build_lock(entry.name)) as free:
                if not free:
                    entry.in_use = "a build holds its lock"
                    return False
                engine.volumes.get(entry.name).remove()
        elif entry.kind == "image":
            for tag in entry.name.split(", "):
                engine.images.remove(tag)
        else:
            path = sources.cache_dir() / entry.name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    except NotFound:
        return True  # gone already
    except APIError as error:
        entry.in_use = f"the engine refused: {error.explanation or error}"
        return False
    log.info("removed %s %s", entry.kind, entry.name)
    return True
