"""check and apply: every patch of a list on a tree, file by file, computed in memory first; `apply` writes
only when every hunk fits (all or nothing), atomically, and puts back what it wrote if writing fails."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from apachews.errors import BadInput, JobFailed
from apachews.patches.model import FilePatch, Patch, Series, split_lines
from apachews.patches.placement import FilePlacer, HunkResult
from apachews.patches.report import FileResult, PatchResult, Report

DEFAULT_FUZZ = 2


def default_mode() -> int:
    """What a new file gets: 0666 less the umask, like GNU patch (0644 with the usual umask 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


def detect_strip(patch: Patch, tree: Path) -> int:
    """The strip level (-pN) at which the paths of the patch exist in the tree."""
    for strip in range(0, 4):
        existing = [f for f in patch.files if not f.is_new]
        paths = [f.path(strip) for f in existing]
        if existing and all(p and (tree / p).is_file() for p in paths):
            return strip
        if not existing and all(f.path(strip) and (tree / f.path(strip)).parent.is_dir() for f in patch.files):
            return strip
    raise BadInput(
        f"{patch.name} does not fit this tree: none of its files exist in {tree} at any strip level",
        hint="is it a patch for another project, or for a different directory?",
    )


@dataclass
class FileState:
    lines: list[bytes] | None  # None: the file does not exist (or was deleted)
    original: bytes | None = None
    mode: int | None = None  # for files this run creates


def _file_lines(state: FileState) -> bytes:
    return b"".join(state.lines or [])


def patch_file(
    state: FileState, fp: FilePatch, fuzz: int, detect_applied: bool = True
) -> tuple[list[HunkResult], list[bytes] | None]:
    """The hunk results of one file patch on one file state, and the file's lines afterwards with every
    hunk that fits applied, as GNU patch leaves it (None: the file does not exist afterwards)."""
    if fp.is_new and state.lines is not None:
        wanted = b"".join(line for h in fp.hunks for line in h.new)
        if b"".join(state.lines) == wanted and detect_applied:
            return [HunkResult(h.index, "already-applied", line=1) for h in fp.hunks], state.lines
        if state.lines:  # GNU patch: a hunk creating a file cannot land on a non-empty one
            failed = [
                HunkResult(h.index, "failed", line=1, detail="the file to create already exists") for h in fp.hunks
            ]
            return failed, state.lines
    if not fp.is_new and state.lines is None:
        status = "already-applied" if fp.is_deleted and detect_applied else "failed"
        return [HunkResult(h.index, status, detail="" if fp.is_deleted else "file missing") for h in fp.hunks], None
    placer = FilePlacer(list(state.lines or []), fuzz, detect_applied)
    results = [placer.place(hunk) for hunk in fp.hunks]
    lines = placer.finish()
    if fp.is_deleted and all(r.applies for r in results):
        if not lines:
            return results, None
        for result in results:
            result.status, result.detail = "failed", "not deleting: the file has more than the patch removes"
    return results, lines


def patch_file_bytes(
    file_patch: FilePatch, data: bytes | None, fuzz: int = DEFAULT_FUZZ, detect_applied: bool = True
) -> tuple[list[HunkResult], bytes | None]:
    """One file patch on one file's content (None: no such file): the hunk results, and the content with
    every hunk that fits applied (None: no file), which is what GNU patch leaves behind. `apply` is the
    all-or-nothing path users get; this is for comparing the engine with GNU patch hunk by hunk.
    `detect_applied=False` leaves out the already-applied check, for a comparison with `patch -f`."""
    state = FileState(None if data is None else split_lines(data), data)
    results, lines = patch_file(state, file_patch, fuzz, detect_applied)
    return results, None if lines is None else b"".join(lines)


def compute(
    patches: list[Patch], tree: Path, fuzz: int, reverse: bool, strip: int | None
) -> tuple[dict[str, FileState], list[PatchResult]]:
    tree = Path(tree)
    if not tree.is_dir():
        raise BadInput(f"{tree} is not a directory")
    if fuzz < 0 or fuzz > 3:
        raise BadInput("--fuzz must be 0 to 3")
    overlay: dict[str, FileState] = {}
    results = []
    order = list(reversed(patches)) if reverse else patches
    for patch in order:
        if strip is not None:
            level = strip
        else:
            level = _reverse_strip(patch, tree) if reverse else detect_strip(patch, tree)
        file_results = []
        pending: dict[str, FileState] = {}
        for file_patch in patch.files:
            fp = file_patch.reversed() if reverse else file_patch
            relative = fp.path(level)
            if not relative or ".." in Path(relative).parts or relative.startswith("/"):
                raise BadInput(f"{patch.name} names an unsafe path {relative!r}")
            state = pending.get(relative) or overlay.get(relative)
            if state is None:
                target = tree / relative
                if target.is_file():
                    data = target.read_bytes()
                    state = FileState(split_lines(data), data)
                else:
                    state = FileState(None)
                overlay[relative] = state
            change = "new" if fp.is_new else "deleted" if fp.is_deleted else "modified"
            hunk_results, lines = patch_file(state, fp, fuzz)
            file_results.append(FileResult(relative, change, hunk_results))
            if all(r.applies for r in hunk_results):
                mode = state.mode if state.lines is not None else (fp.new_mode or default_mode())
                pending[relative] = FileState(lines, state.original, mode)
        result = PatchResult(patch.name, level, file_results)
        results.append(result)
        if result.status == "applies":  # an already-applied patch changes nothing; a failing one neither
            overlay.update(pending)
    return overlay, results


def _reverse_strip(patch: Patch, tree: Path) -> int:
    for strip in range(0, 4):
        if all(f.path(strip) and (tree / f.path(strip)).exists() != f.is_deleted for f in patch.files):
            return strip
    return detect_strip(patch, tree)


def _as_patches(patches: Series | list[Patch]) -> list[Patch]:
    return patches.patches if isinstance(patches, Series) else list(patches)


def check(
    patches: Series | list[Patch], tree: Path, fuzz: int = DEFAULT_FUZZ, reverse: bool = False, strip: int | None = None
) -> Report:
    """Dry run: what applying would do, hunk by hunk. Nothing is written."""
    _, results = compute(_as_patches(patches), Path(tree), fuzz, reverse, strip)
    return Report(Path(tree), results, reverse=reverse)


def write_atomically(target: Path, data: bytes, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".apachews-", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, mode)  # mkstemp makes 0600; keep the file's mode, or 0666 less the umask
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def apply(
    patches: Series | list[Patch], tree: Path, fuzz: int = DEFAULT_FUZZ, reverse: bool = False, strip: int | None = None
) -> Report:
    """Apply all or nothing: when any hunk fails, no file in the tree changes. Patches already in the tree
    are skipped (a tree with all of them is reported "already-applied" and left alone)."""
    tree = Path(tree)
    overlay, results = compute(_as_patches(patches), tree, fuzz, reverse, strip)
    report = Report(tree, results, reverse=reverse)
    if report.status != "applies":
        return report
    written: list[tuple[Path, bytes | None, int | None]] = []
    try:
        for relative, state in overlay.items():
            target = tree / relative
            if state.lines is None:
                if target.exists():
                    written.append((target, target.read_bytes(), target.stat().st_mode & 0o7777))
                    target.unlink()
                    report.written.append(relative)
                continue
            data = _file_lines(state)
            if state.original == data:
                continue
            exists = target.exists()
            mode = target.stat().st_mode & 0o7777 if exists else (state.mode or default_mode())
            written.append((target, state.original if exists else None, mode))
            write_atomically(target, data, mode)
            report.written.append(relative)
    except OSError as error:
        for target, original, mode in reversed(written):  # put back what was already replaced
            if original is None:
                target.unlink(missing_ok=True)
            else:
                write_atomically(target, original, mode or default_mode())
        raise JobFailed(f"writing the patched tree failed ({error}); every file was restored") from error
    return report
