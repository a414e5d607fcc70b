"""rebase: refresh a patch so it applies to a tree with zero offset and fuzz, with a three-way merge
(`git merge-file`) for the files whose hunks fail, and unified_diff, the `diff -u` it writes."""

from __future__ import annotations

import difflib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from apachews.errors import BadInput, JobFailed
from apachews.patches.engine import DEFAULT_FUZZ, FileState, compute, default_mode, patch_file, write_atomically
from apachews.patches.model import FilePatch, parse_patch, split_lines
from apachews.patches.report import Report
from apachews.serial import Serialised

_CONFLICT_MARKERS = (b"<<<<<<< ", b">>>>>>> ")


@dataclass
class RebaseReport(Serialised):
    output: Path
    report: Report
    conflicts: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    conflict_dir: Path | None = None
    written: bool = False
    _derived = ("next_step", "moved")
    _renamed = {"next_step": "next", "report": "check"}

    @property
    def ok(self) -> bool:
        return not self.conflicts

    @property
    def moved(self) -> list[dict[str, object]]:
        """Each hunk the rebase moved, refreshed or could not place, with its file."""
        return [
            {"file": f.path, **h.to_dict()}
            for p in self.report.patches
            for f in p.files
            for h in f.hunks
            if h.offset or h.fuzz or h.status != "clean"
        ]

    def next_step(self) -> str | None:
        if not self.conflicts:
            return None
        return (
            f"no patch written. Resolve the <<<<<<< blocks in each file under {self.conflict_dir}/, then run the "
            f"same rebase again with --resolved {self.conflict_dir} to take those files as the patched content"
        )


def _label(relative: str, lines: list[bytes] | None, side: str) -> bytes:
    return b"/dev/null" if lines is None else f"{side}/{relative}".encode()


def unified_diff(relative: str, before: list[bytes] | None, after: list[bytes] | None, context: int = 3) -> bytes:
    """A `diff -u` of two line lists (line ends kept: CRLF lines stay CRLF; a last line without newline
    gets the "\\ No newline at end of file" marker)."""
    old, new = before or [], after or []
    if old == new and before is not None and after is not None:
        return b""
    out = [b"--- " + _label(relative, before, "a") + b"\n", b"+++ " + _label(relative, after, "b") + b"\n"]

    def emit(prefix: bytes, line: bytes) -> None:
        out.append(prefix + line)
        if not line.endswith(b"\n"):
            out.append(b"\n\\ No newline at end of file\n")

    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        old_range = f"{i1 + 1 if i2 > i1 else i1},{i2 - i1}" if i2 - i1 != 1 else f"{i1 + 1}"
        new_range = f"{j1 + 1 if j2 > j1 else j1},{j2 - j1}" if j2 - j1 != 1 else f"{j1 + 1}"
        out.append(f"@@ -{old_range} +{new_range} @@\n".encode())
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                for line in old[a1:a2]:
                    emit(b" ", line)
                continue
            for line in old[a1:a2]:
                emit(b"-", line)
            for line in new[b1:b2]:
                emit(b"+", line)
    return b"".join(out)


def _has_markers(data: bytes) -> bool:
    return any(line.startswith(_CONFLICT_MARKERS) for line in data.splitlines())


def rebase(
    patch: Path,
    tree: Path,
    out: Path,
    base_tree: Path | None = None,
    fuzz: int = DEFAULT_FUZZ,
    resolved: Path | None = None,
) -> RebaseReport:
    """Refresh `patch` so it applies to `tree` with zero offset and fuzz; three-way merge failed files
    against `base_tree` (the tree the patch was made for) when given. Writes a complete patch or none:
    with conflicts, the merged files with conflict markers go to OUT.conflicts/ and OUT is not written."""
    parsed = parse_patch(Path(patch))
    tree, out = Path(tree), Path(out)
    _, results = compute([parsed], tree, fuzz, False, None)
    report = Report(tree, results)
    level = results[0].strip
    conflict_dir = Path(f"{out}.conflicts")
    if conflict_dir.is_dir() and (resolved is None or Path(resolved).resolve() != conflict_dir.resolve()):
        shutil.rmtree(conflict_dir)  # a stale one from an earlier attempt would mislead
    conflicts: list[str] = []
    merged: list[str] = []
    originals: dict[str, list[bytes] | None] = {}
    afters: dict[str, list[bytes] | None] = {}  # each file's content for the rebased patch, in patch order
    for file_patch, file_result in zip(parsed.files, results[0].files):
        relative = file_result.path
        if relative not in originals:
            current = tree / relative
            originals[relative] = split_lines(current.read_bytes()) if current.is_file() else None
        before = afters.get(relative, originals[relative])
        placed, lines = patch_file(FileState(before), file_patch, fuzz)
        if all(h.applies for h in placed):
            after = lines
        elif all(h.status == "already-applied" for h in placed):
            after = before  # already in the tree: nothing left to carry for this file
        elif resolved is not None and (Path(resolved) / relative).is_file():
            data = (Path(resolved) / relative).read_bytes()
            if _has_markers(data):
                raise BadInput(f"{Path(resolved) / relative} still has conflict markers", hint="resolve them first")
            after = split_lines(data)
            merged.append(relative)
        elif base_tree is None:
            conflicts.append(relative)
            continue
        else:
            merge, clean = _three_way(file_patch, level, Path(base_tree), tree, relative)
            if not clean:
                conflicts.append(relative)
                target = conflict_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(target, merge, default_mode())
                continue
            after = split_lines(merge)
            merged.append(relative)
        afters[relative] = after
    pieces = [parsed.preamble.encode("utf-8", errors="surrogateescape")]
    pieces += [unified_diff(relative, originals[relative], after) for relative, after in afters.items()]
    rebased = RebaseReport(out, report, conflicts, merged, conflict_dir if conflicts and base_tree else None)
    if conflicts and base_tree is None:
        raise JobFailed(
            f"hunks fail outright in {', '.join(conflicts)}; no patch written",
            hint="give the tree the patch was made for (--base-source DIR or --base-apache V) to try a 3-way merge",
        )
    if not conflicts and not any(pieces[1:]):
        raise JobFailed(f"{parsed.name} is already applied in {tree}: nothing to rebase; no patch written")
    if conflicts:
        return rebased
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, b"".join(pieces), default_mode())
    rebased.written = True
    return rebased


def _three_way(file_patch: FilePatch, level: int, base_tree: Path, tree: Path, relative: str) -> tuple[bytes, bool]:
    """Merge the patch's change to one file into the target with `git merge-file`."""
    base_file = base_tree / relative
    if not base_file.is_file():
        raise BadInput(f"the base tree {base_tree} has no {relative}")
    data = base_file.read_bytes()
    results, lines = patch_file(FileState(split_lines(data), data), file_patch, 0)
    if any(r.status != "clean" for r in results) or lines is None:
        raise BadInput(f"the patch does not apply cleanly to the base tree's {relative}: is it the right base?")
    with tempfile.TemporaryDirectory() as scratch:
        ours = Path(scratch) / "ours"
        theirs = Path(scratch) / "theirs"
        ours.write_bytes((tree / relative).read_bytes())
        theirs.write_bytes(b"".join(lines))
        labels = ["-L", "target", "-L", "base", "-L", "patch"]
        merge = subprocess.run(
            ["git", "merge-file", "-p", *labels, str(ours), str(base_file), str(theirs)], capture_output=True
        )
    if merge.returncode < 0 or merge.returncode > 127:
        raise JobFailed(f"git merge-file failed on {relative}: {merge.stderr.decode(errors='replace')}")
    return merge.stdout, merge.returncode == 0
