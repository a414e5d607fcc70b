"""The patch engine: quilt-style series, and check / apply / rebase of unified diffs on Apache trees.

One model, parsed once (with unidiff): a Series is a list of Patch, a Patch a list of FilePatch, a
FilePatch a list of Hunk. Every operation is defined on it. Hunks are placed like GNU patch does: at the
expected line, else at the nearest offset, else with up to `fuzz` context lines dropped at each end.
`apply` is atomic: every new file content is computed in memory first and written only when all fit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import unidiff

from apachews.errors import BadInput, JobFailed
from apachews.resources import patches_dir

DEFAULT_FUZZ = 2
_NO_NEWLINE = "\\"


# -- the model --------------------------------------------------------------------------------------------
@dataclass
class Hunk:
    index: int
    source_start: int  # 1-based, as in the @@ line
    old: list[str]  # context and removed lines, without line ends
    new: list[str]  # context and added lines, without line ends
    leading_context: int
    trailing_context: int
    old_ends_without_newline: bool = False
    new_ends_without_newline: bool = False

    def reversed(self) -> Hunk:
        return Hunk(
            self.index,
            self.source_start,
            self.new,
            self.old,
            self.leading_context,
            self.trailing_context,
            self.new_ends_without_newline,
            self.old_ends_without_newline,
        )


@dataclass
class FilePatch:
    old_path: str
    new_path: str
    hunks: list[Hunk]
    is_new: bool
    is_deleted: bool

    def reversed(self) -> FilePatch:
        return FilePatch(self.new_path, self.old_path, [h.reversed() for h in self.hunks], self.is_deleted, self.is_new)

    def path(self, strip: int) -> str:
        name = self.new_path if self.is_new else self.old_path
        parts = name.split("/")
        return "/".join(parts[strip:]) if len(parts) > strip else ""


@dataclass
class Patch:
    source: Path
    preamble: str
    files: list[FilePatch]

    @property
    def name(self) -> str:
        return self.source.name

    def stats(self) -> dict[str, object]:
        added = sum(len(h.new) - (h.leading_context + h.trailing_context) for f in self.files for h in f.hunks)
        removed = sum(len(h.old) - (h.leading_context + h.trailing_context) for f in self.files for h in f.hunks)
        return {
            "patch": self.name,
            "files": [f.path(1) for f in self.files],
            "hunks": sum(len(f.hunks) for f in self.files),
            "added": added,
            "removed": removed,
        }


@dataclass
class Series:
    name: str
    directory: Path
    patch_files: list[Path]
    patches: list[Patch]
    info: dict[str, object] = field(default_factory=dict)


def parse_patch(path: Path) -> Patch:
    """Parse one unified diff; BadInput (nothing touched) for what is not a usable text patch."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read patch {path}: {error.strerror}") from error
    if not raw.strip():
        raise BadInput(f"{path} is empty, not a patch")
    text = raw.decode("utf-8", errors="surrogateescape").replace("\r\n", "\n")  # CRLF patches: normalised
    if "GIT binary patch" in text or re.search(r"^Binary files .* differ$", text, re.MULTILINE):
        raise BadInput(f"{path} contains a binary diff", hint="apachews applies text patches only")
    try:
        parsed = unidiff.PatchSet(text)
    except unidiff.UnidiffParseError as error:
        raise BadInput(f"{path} is not a valid unified diff: {error}") from error
    if not len(parsed):
        raise BadInput(f"{path} is not a patch (no unified diff in it)", hint="make one with diff -u or git diff")
    first = re.search(r"^(--- |diff |Index: )", text, re.MULTILINE)
    preamble = text[: first.start()] if first else ""
    files = []
    for patched in parsed:
        hunks = []
        for index, hunk in enumerate(patched, 1):
            old: list[str] = []
            new: list[str] = []
            lines = list(hunk)
            old_no_nl = new_no_nl = False
            last_kind = ""
            for line in lines:
                value = line.value.rstrip("\n")
                if line.line_type == _NO_NEWLINE:
                    if last_kind in (" ", "-"):
                        old_no_nl = True
                    if last_kind in (" ", "+"):
                        new_no_nl = True
                    continue
                if line.line_type in (" ", "-"):
                    old.append(value)
                if line.line_type in (" ", "+"):
                    new.append(value)
                last_kind = line.line_type
            kinds = [line.line_type for line in lines if line.line_type != _NO_NEWLINE]
            leading = next((i for i, kind in enumerate(kinds) if kind != " "), len(kinds))
            trailing = next((i for i, kind in enumerate(reversed(kinds)) if kind != " "), len(kinds))
            hunks.append(Hunk(index, hunk.source_start, old, new, leading, trailing, old_no_nl, new_no_nl))
        files.append(
            FilePatch(
                patched.source_file,
                patched.target_file,
                hunks,
                patched.is_added_file,
                patched.is_removed_file,
            )
        )
    return Patch(Path(path), preamble, files)


def load_patches(paths: list[Path]) -> list[Patch]:
    return [parse_patch(Path(p)) for p in paths]


def _index() -> dict[str, dict[str, object]]:
    index_file = patches_dir() / "index.json"
    return json.loads(index_file.read_text()).get("series", {}) if index_file.exists() else {}


def list_series() -> list[Series]:
    return [load_series(name) for name in _index()]


def load_series(name: str) -> Series:
    directory = patches_dir() / name
    series_file = directory / "series"
    if not series_file.is_file():
        raise BadInput(f"no patch series {name!r}", hint="apachews patch list shows the series")
    files = []
    for line in series_file.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            files.append((directory / entry).resolve())
    return Series(name, directory, files, load_patches(files), _index().get(name, {}))


# -- placing hunks --------------------------------------------------------------------------------------------
@dataclass
class HunkResult:
    index: int
    status: str  # clean, offset, fuzz, already-applied, failed
    offset: int = 0
    fuzz: int = 0
    line: int | None = None  # where it landed (1-based)
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "hunk": self.index,
            "status": self.status,
            "offset": self.offset,
            "fuzz": self.fuzz,
            "line": self.line,
            "detail": self.detail,
        }


def _matches(lines: list[str], at: int, wanted: list[str]) -> bool:
    return at >= 0 and at + len(wanted) <= len(lines) and lines[at : at + len(wanted)] == wanted


def _find(lines: list[str], hunk: Hunk, expected: int, max_fuzz: int) -> tuple[int, int, int, int] | None:
    """(position, fuzz, top dropped, bottom dropped) of the best place for the hunk's old lines."""
    order = [expected] + [p for d in range(1, len(lines) + 1) for p in (expected - d, expected + d)]
    for fuzz in range(0, max_fuzz + 1):
        top = min(fuzz, hunk.leading_context)
        bottom = min(fuzz, hunk.trailing_context)
        if fuzz and not (top or bottom):
            break
        wanted = hunk.old[top : len(hunk.old) - bottom]
        if not wanted and hunk.old:
            continue
        for position in order:
            if _matches(lines, position + top, wanted):
                return position, fuzz, top, bottom
    return None


def _place(
    lines: list[str], hunk: Hunk, delta: int, last_offset: int, max_fuzz: int
) -> tuple[list[str] | None, HunkResult, int]:
    """Apply one hunk to `lines`. `delta`: lines added so far by earlier hunks of this file;
    `last_offset`: where the previous hunk landed relative to its header (the search starts there).
    Returns the new lines (None on failure), the result, and this hunk's offset."""
    header = max(hunk.source_start - 1, 0) + delta if hunk.old else hunk.source_start + delta
    expected = max(header + last_offset, 0)
    found = _find(lines, hunk, expected, max_fuzz)
    if found is None:
        done = _find(lines, hunk.reversed(), expected, 0)
        if done is not None:
            return None, HunkResult(hunk.index, "already-applied", line=done[0] + 1), last_offset
        near = "\n".join(lines[max(expected - 2, 0) : expected + 3])
        expected_text = "\n".join(hunk.old[:6])
        detail = f"context not found; expected:\n{expected_text}\nnear line {expected + 1}:\n{near}"
        return None, HunkResult(hunk.index, "failed", line=expected + 1, detail=detail), last_offset
    position, fuzz, top, bottom = found
    replacement = hunk.new[top : len(hunk.new) - bottom]
    patched = lines[: position + top] + replacement + lines[position + len(hunk.old) - bottom :]
    offset = position - header  # like GNU patch: relative to the hunk's own header line
    status = "fuzz" if fuzz else "offset" if offset else "clean"
    return patched, HunkResult(hunk.index, status, offset, fuzz, position + 1), offset


# -- reports ---------------------------------------------------------------------------------------------------
@dataclass
class FileResult:
    path: str
    change: str  # modified, new, deleted
    hunks: list[HunkResult]

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "change": self.change, "hunks": [h.to_dict() for h in self.hunks]}


@dataclass
class PatchResult:
    patch: str
    strip: int
    files: list[FileResult]

    def to_dict(self) -> dict[str, object]:
        return {"patch": self.patch, "strip": self.strip, "files": [f.to_dict() for f in self.files]}


@dataclass
class Report:
    tree: Path
    patches: list[PatchResult]
    written: list[str] = field(default_factory=list)
    reverse: bool = False

    def _hunks(self) -> list[HunkResult]:
        return [h for p in self.patches for f in p.files for h in f.hunks]

    @property
    def status(self) -> str:
        statuses = {h.status for h in self._hunks()}
        if "failed" in statuses or (statuses & {"already-applied"} and statuses - {"already-applied"}):
            return "fails"
        if statuses == {"already-applied"}:
            return "already-applied"
        return "applies"

    @property
    def ok(self) -> bool:
        return self.status != "fails"

    def summary(self) -> str:
        hunks = self._hunks()
        if self.status == "already-applied":
            return "already applied"
        failed = sum(h.status == "failed" for h in hunks)
        if failed:
            return f"{failed} of {len(hunks)} hunks FAIL"
        max_offset = max((abs(h.offset) for h in hunks), default=0)
        max_fuzz = max((h.fuzz for h in hunks), default=0)
        if not max_offset and not max_fuzz:
            return f"clean ({len(hunks)} hunks)"
        return f"applies ({len(hunks)} hunks, max offset {max_offset}, max fuzz {max_fuzz})"

    def to_dict(self) -> dict[str, object]:
        return {
            "tree": str(self.tree),
            "status": self.status,
            "summary": self.summary(),
            "reverse": self.reverse,
            "written": self.written,
            "patches": [p.to_dict() for p in self.patches],
        }

    def table(self) -> str:
        rows = []
        for patch in self.patches:
            rows.append(f"{patch.patch} (-p{patch.strip})")
            for file in patch.files:
                for hunk in file.hunks:
                    extra = f"offset {hunk.offset:+d}" if hunk.offset else ""
                    extra += f"{', ' if extra else ''}fuzz {hunk.fuzz}" if hunk.fuzz else ""
                    rows.append(f"  {file.path}  hunk {hunk.index}: {hunk.status} {extra}".rstrip())
                    if hunk.status == "failed":
                        rows += [f"      {line}" for line in hunk.detail.splitlines()]
        rows.append(f"=> {self.summary()}")
        return "\n".join(rows)


# -- check / apply ----------------------------------------------------------------------------------------------
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


def _read_lines(path: Path) -> tuple[list[str], str, bool]:
    """Lines without their ends, the tree file's line end, and whether it ends with one."""
    data = path.read_bytes().decode("utf-8", errors="surrogateescape")
    newline = "\r\n" if "\r\n" in data else "\n"
    ends = data.endswith("\n")
    lines = data.split(newline)
    if ends:
        lines.pop()
    return lines, newline, ends


@dataclass
class _FileState:
    lines: list[str] | None  # None: the file does not exist (or was deleted)
    newline: str = "\n"
    ends_with_newline: bool = True
    original: bytes | None = None


def _compute(patches: list[Patch], tree: Path, fuzz: int, reverse: bool, strip: int | None):
    tree = Path(tree)
    if not tree.is_dir():
        raise BadInput(f"{tree} is not a directory")
    if fuzz < 0 or fuzz > 3:
        raise BadInput("--fuzz must be 0 to 3")
    overlay: dict[str, _FileState] = {}
    results = []
    order = list(reversed(patches)) if reverse else patches
    for patch in order:
        level = (
            strip if strip is not None else detect_strip(patch, tree) if not reverse else _reverse_strip(patch, tree)
        )
        file_results = []
        for file_patch in patch.files:
            fp = file_patch.reversed() if reverse else file_patch
            relative = fp.path(level)
            if not relative or ".." in Path(relative).parts or relative.startswith("/"):
                raise BadInput(f"{patch.name} names an unsafe path {relative!r}")
            state = overlay.get(relative)
            if state is None:
                target = tree / relative
                if target.is_file():
                    lines, newline, ends = _read_lines(target)
                    state = _FileState(lines, newline, ends, target.read_bytes())
                else:
                    state = _FileState(None)
                overlay[relative] = state
            change = "new" if fp.is_new else "deleted" if fp.is_deleted else "modified"
            hunk_results = []
            if fp.is_new and state.lines is not None:
                wanted = fp.hunks[0].new if fp.hunks else []
                status = "already-applied" if state.lines == wanted else "failed"
                detail = "" if status == "already-applied" else "the file to create already exists"
                hunk_results = [HunkResult(h.index, status, detail=detail) for h in fp.hunks]
            elif not fp.is_new and state.lines is None:
                status = "already-applied" if fp.is_deleted else "failed"
                hunk_results = [HunkResult(h.index, status, detail="file missing") for h in fp.hunks]
            else:
                lines = list(state.lines or [])
                delta = last_offset = 0
                for hunk in fp.hunks:
                    patched, result, last_offset = _place(lines, hunk, delta, last_offset, fuzz)
                    hunk_results.append(result)
                    if patched is not None:
                        lines = patched
                        delta += len(hunk.new) - len(hunk.old)
                    if hunk.new_ends_without_newline:
                        state.ends_with_newline = False
                    elif hunk.old_ends_without_newline:
                        state.ends_with_newline = True
                if all(r.status not in ("failed", "already-applied") for r in hunk_results):
                    state.lines = None if fp.is_deleted else lines
            file_results.append(FileResult(relative, change, hunk_results))
        results.append(PatchResult(patch.name, level, file_results))
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
    _, results = _compute(_as_patches(patches), Path(tree), fuzz, reverse, strip)
    return Report(Path(tree), results, reverse=reverse)


def apply(
    patches: Series | list[Patch], tree: Path, fuzz: int = DEFAULT_FUZZ, reverse: bool = False, strip: int | None = None
) -> Report:
    """Apply all or nothing: when any hunk fails, no file in the tree changes."""
    tree = Path(tree)
    overlay, results = _compute(_as_patches(patches), tree, fuzz, reverse, strip)
    report = Report(tree, results, reverse=reverse)
    if report.status != "applies":
        return report
    written: list[tuple[Path, bytes | None]] = []
    try:
        for relative, state in overlay.items():
            target = tree / relative
            if state.lines is None:
                if target.exists():
                    written.append((target, target.read_bytes()))
                    target.unlink()
                continue
            text = state.newline.join(state.lines) + (state.newline if state.ends_with_newline and state.lines else "")
            data = text.encode("utf-8", errors="surrogateescape")
            if state.original == data:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".apachews-", dir=target.parent)
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            if target.exists():
                os.chmod(temporary, target.stat().st_mode)
            written.append((target, state.original))
            os.replace(temporary, target)
            report.written.append(relative)
    except OSError as error:
        for target, original in reversed(written):  # put back what was already replaced
            if original is None:
                target.unlink(missing_ok=True)
            else:
                target.write_bytes(original)
        raise JobFailed(f"writing the patched tree failed ({error}); every file was restored") from error
    return report


# -- rebase ---------------------------------------------------------------------------------------------------------
@dataclass
class RebaseReport:
    output: Path
    report: Report
    conflicts: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts

    def to_dict(self) -> dict[str, object]:
        return {
            "output": str(self.output),
            "conflicts": self.conflicts,
            "merged": self.merged,
            "moved": [
                {"file": f.path, **h.to_dict()}
                for p in self.report.patches
                for f in p.files
                for h in f.hunks
                if h.offset or h.fuzz or h.status != "clean"
            ],
            "check": self.report.to_dict(),
        }


def _unified(relative: str, before: list[str] | None, after: list[str] | None) -> str:
    import difflib

    old = [f"{line}\n" for line in before or []]
    new = [f"{line}\n" for line in after or []]
    diff = difflib.unified_diff(
        old,
        new,
        fromfile="/dev/null" if before is None else f"a/{relative}",
        tofile="/dev/null" if after is None else f"b/{relative}",
        n=3,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


def rebase(patch: Path, tree: Path, out: Path, base_tree: Path | None = None, fuzz: int = DEFAULT_FUZZ) -> RebaseReport:
    """Refresh `patch` so it applies to `tree` with zero offset and fuzz; three-way merge failed files
    against `base_tree` (the tree the patch was made for) when given."""
    parsed = parse_patch(Path(patch))
    tree = Path(tree)
    overlay, results = _compute([parsed], tree, fuzz, False, None)
    report = Report(tree, results)
    level = results[0].strip
    conflicts: list[str] = []
    merged: list[str] = []
    pieces = [parsed.preamble]
    for file_patch, file_result in zip(parsed.files, results[0].files):
        relative = file_result.path
        current = tree / relative
        before = _read_lines(current)[0] if current.is_file() else None
        failed = any(h.status == "failed" for h in file_result.hunks)
        if not failed:
            after = overlay[relative].lines
        elif base_tree is None:
            conflicts.append(relative)
            continue
        else:
            after, clean = _three_way(parsed, file_patch, level, Path(base_tree), tree, relative, out)
            if not clean:
                conflicts.append(relative)
                continue
            merged.append(relative)
        pieces.append(_unified(relative, before, after))
    rebased = RebaseReport(Path(out), report, conflicts, merged)
    if conflicts and base_tree is None:
        failed = ", ".join(conflicts)
        raise JobFailed(
            f"hunks fail outright in {failed}",
            hint="give the tree the patch was made for (--base-source DIR or --base-apache V) to try a 3-way merge",
        )
    handle, temporary = tempfile.mkstemp(prefix=".apachews-rebase-", dir=Path(out).parent)
    with os.fdopen(handle, "w") as written:
        written.write("".join(pieces))
    os.replace(temporary, out)
    return rebased


def _three_way(
    parsed: Patch, file_patch: FilePatch, level: int, base_tree: Path, tree: Path, relative: str, out: Path
) -> tuple[list[str] | None, bool]:
    """Merge the patch's change to one file into the target with `git merge-file`."""
    base_file = base_tree / relative
    if not base_file.is_file():
        raise BadInput(f"the base tree {base_tree} has no {relative}")
    single = Patch(parsed.source, "", [file_patch])
    overlay, results = _compute([single], base_tree, 0, False, level)
    if any(h.status != "clean" for h in results[0].files[0].hunks):
        raise BadInput(f"the patch does not apply cleanly to the base tree's {relative}: is it the right base?")
    with tempfile.TemporaryDirectory() as scratch:
        ours = Path(scratch) / "ours"
        theirs = Path(scratch) / "theirs"
        ours.write_bytes((tree / relative).read_bytes())
        theirs.write_text("\n".join(overlay[relative].lines or []) + "\n")
        merge = subprocess.run(
            [
                "git",
                "merge-file",
                "-p",
                "-L",
                "target",
                "-L",
                "base",
                "-L",
                "patch",
                str(ours),
                str(base_file),
                str(theirs),
            ],
            capture_output=True,
        )
    if merge.returncode < 0 or merge.returncode > 127:
        raise JobFailed(f"git merge-file failed on {relative}: {merge.stderr.decode(errors='replace')}")
    text = merge.stdout.decode("utf-8", errors="surrogateescape")
    if merge.returncode == 0:
        return text.rstrip("\n").split("\n"), True
    conflict_file = Path(f"{out}.conflicts") / relative
    conflict_file.parent.mkdir(parents=True, exist_ok=True)
    conflict_file.write_text(text)
    return None, False
