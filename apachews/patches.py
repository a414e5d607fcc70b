"""The patch engine: quilt-style series, and check / apply / rebase of unified diffs on Apache trees.

One model, parsed once: a Series is a list of Patch, a Patch a list of FilePatch, a FilePatch a list of
Hunk. Every operation is defined on it.

Placement follows GNU patch 2.7 (src/patch.c, locate_hunk / apply_hunk), so both tools agree hunk by hunk:
- lines are compared as bytes, line ends included (CRLF files stay CRLF; a patch whose headers end in CRLF
  has its CRs stripped, like GNU patch does);
- a hunk is searched in the *original* file, from its header line shifted by the offset of the previous
  hunk, nearest first (+d before -d), never before the end of the previous hunk's change;
- fuzz F drops F context lines from each end; a hunk with less context on one side than the other is
  anchored there (fewer lines after the change: only at the end of the file; fewer before and starting at
  line 1: only at the start) until the fuzz makes up the difference;
- every place is tried with fuzz 0 before any place with fuzz 1, and so on up to `fuzz`.
Two differences, on purpose: a hunk whose *reverse* fits better than itself (at lower fuzz) is "already
applied" (GNU patch only checks the first hunk, and only with -N); and `apply` is all or nothing: every new
file content is computed in memory first and written only when every hunk fits.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from apachews.errors import BadInput, JobFailed
from apachews.resources import patches_dir

DEFAULT_FUZZ = 2
_HUNK_HEADER = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*?)\r?\n?$")
_EPOCH = re.compile(rb"(1970-01-01|1969-12-31)[ T]\d\d:\d\d:\d\d(\.0+)?( [+-]\d{4})?$")
_CONFLICT_MARKERS = (b"<<<<<<< ", b">>>>>>> ")


def _default_mode() -> int:
    """What a new file gets: 0666 less the umask, like GNU patch (0644 with the usual umask 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


# -- the model --------------------------------------------------------------------------------------------
@dataclass
class Hunk:
    """One @@ block. `lines` keep their kind (' ', '-', '+') and their bytes, line end included (absent
    for a line marked "\\ No newline at end of file")."""

    index: int
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: list[tuple[str, bytes]]
    section: str = ""

    @property
    def old(self) -> list[bytes]:
        return [text for kind, text in self.lines if kind != "+"]

    @property
    def new(self) -> list[bytes]:
        return [text for kind, text in self.lines if kind != "-"]

    @property
    def prefix_context(self) -> int:
        kinds = [kind for kind, _ in self.lines]
        return next((i for i, kind in enumerate(kinds) if kind != " "), len(kinds))

    @property
    def suffix_context(self) -> int:
        kinds = [kind for kind, _ in self.lines]
        return next((i for i, kind in enumerate(reversed(kinds)) if kind != " "), len(kinds))

    @property
    def first(self) -> int:
        """The old-file line the hunk is expected at; an insertion with no old lines goes after its line
        (GNU patch: "do append rather than insert")."""
        return self.old_start + (0 if self.old_count else 1)

    @property
    def new_first(self) -> int:
        return self.new_start + (0 if self.new_count else 1)

    def reversed(self) -> Hunk:
        swap = {"+": "-", "-": "+", " ": " "}
        return Hunk(
            self.index,
            self.new_start,
            self.new_count,
            self.old_start,
            self.old_count,
            [(swap[kind], text) for kind, text in self.lines],
            self.section,
        )


@dataclass
class FilePatch:
    old_path: str
    new_path: str
    hunks: list[Hunk]
    is_new: bool
    is_deleted: bool
    new_mode: int | None = None  # from a git "new file mode" line

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
        lines = [kind for f in self.files for h in f.hunks for kind, _ in h.lines]
        return {
            "patch": self.name,
            "files": [f.path(1) for f in self.files],
            "hunks": sum(len(f.hunks) for f in self.files),
            "added": lines.count("+"),
            "removed": lines.count("-"),
        }


@dataclass
class Series:
    name: str
    directory: Path
    patch_files: list[Path]
    patches: list[Patch]
    info: dict[str, object] = field(default_factory=dict)


# -- parsing -----------------------------------------------------------------------------------------------
def _split_lines(data: bytes) -> list[bytes]:
    """Lines with their "\\n" kept; a "\\r" stays part of the line (CRLF is data, as for GNU patch)."""
    lines = data.split(b"\n")
    last = lines.pop()
    result = [line + b"\n" for line in lines]
    if last:
        result.append(last)
    return result


def _header_name(line: bytes) -> tuple[str, bool]:
    """The file name of a ---/+++ line, and whether its timestamp says "does not exist" (the epoch)."""
    rest = line[4:].rstrip(b"\r\n")
    name, _, stamp = rest.partition(b"\t")
    if not stamp:  # some tools separate the timestamp with spaces
        match = re.match(rb"^(\S+)\s+(\d{4}-\d\d-\d\d .*)$", rest)
        if match:
            name, stamp = match.group(1), match.group(2)
    text = name.strip().decode("utf-8", errors="surrogateescape")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text, bool(_EPOCH.search(stamp.strip()))


def _parse_hunk(lines: list[bytes], at: int, index: int, strip_cr: bool, where: str) -> tuple[Hunk, int]:
    match = _HUNK_HEADER.match(lines[at])
    if match is None:
        raise BadInput(f"{where}: malformed hunk header {lines[at][:60]!r}")
    old_start, new_start = int(match.group(1)), int(match.group(3))
    old_count = int(match.group(2)) if match.group(2) is not None else 1
    new_count = int(match.group(4)) if match.group(4) is not None else 1
    section = match.group(5).decode("utf-8", errors="replace")
    body: list[tuple[str, bytes]] = []
    old_left, new_left = old_count, new_count
    at += 1
    while old_left > 0 or new_left > 0:
        if at >= len(lines):
            raise BadInput(f"{where}: hunk {index} ends early (the patch is truncated)")
        line = lines[at]
        if strip_cr and line.endswith(b"\r\n"):
            line = line[:-2] + b"\n"
        if line[:1] in (b"\n", b"\t") or line == b"\r\n":  # a blank context line whose space got eaten
            kind, text = " ", line
        elif line[:1] in (b" ", b"-", b"+"):
            kind, text = line[:1].decode(), line[1:]
        elif line.startswith(b"\\"):
            at += 1
            continue
        else:
            raise BadInput(f"{where}: hunk {index} is malformed near {line[:60]!r}")
        if kind != "+":
            old_left -= 1
        if kind != "-":
            new_left -= 1
        if old_left < 0 or new_left < 0:
            raise BadInput(f"{where}: hunk {index} has more lines than its header says")
        body.append((kind, text))
        at += 1
        if at < len(lines) and lines[at].startswith(b"\\"):  # "\ No newline at end of file"
            body[-1] = (kind, text[:-1] if text.endswith(b"\n") else text)
            at += 1
    return Hunk(index, old_start, old_count, new_start, new_count, body, section), at


def parse_patch(path: Path) -> Patch:
    """Parse one unified diff; BadInput (nothing touched) for what is not a usable text patch."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read patch {path}: {error.strerror}") from error
    if not raw.strip():
        raise BadInput(f"{path} is empty, not a patch")
    if b"GIT binary patch" in raw or re.search(rb"^Binary files .* differ\r?$", raw, re.MULTILINE):
        raise BadInput(f"{path} contains a binary diff", hint="apachews applies text patches only")
    lines = _split_lines(raw)
    files: list[FilePatch] = []
    preamble_end: int | None = None
    git_new_mode: int | None = None
    git_new = git_deleted = False
    at = 0
    while at < len(lines):
        line = lines[at]
        if line.startswith(b"diff --git "):
            git_new_mode, git_new, git_deleted = None, False, False
        elif line.startswith(b"new file mode "):
            git_new, git_new_mode = True, int(line.split()[-1], 8) & 0o777
        elif line.startswith(b"deleted file mode "):
            git_deleted = True
        if line.startswith(b"--- ") and at + 1 < len(lines) and lines[at + 1].startswith(b"+++ "):
            if preamble_end is None:
                preamble_end = at
                while preamble_end > 0 and lines[preamble_end - 1].startswith((b"diff ", b"Index:", b"====")):
                    preamble_end -= 1
                while preamble_end > 0 and re.match(rb"^(new|deleted) file mode|^index ", lines[preamble_end - 1]):
                    preamble_end -= 1
                    while preamble_end > 0 and lines[preamble_end - 1].startswith(b"diff "):
                        preamble_end -= 1
            old_name, old_epoch = _header_name(line)
            new_name, new_epoch = _header_name(lines[at + 1])
            strip_cr = lines[at + 1].endswith(b"\r\n")
            at += 2
            hunks: list[Hunk] = []
            while at < len(lines) and lines[at].startswith(b"@@ "):
                hunk, at = _parse_hunk(lines, at, len(hunks) + 1, strip_cr, f"{path}, {new_name}")
                hunks.append(hunk)
            if not hunks:
                raise BadInput(f"{path} is not a valid unified diff: no hunk after the header of {new_name}")
            only_adds = all(h.old_count == 0 for h in hunks)
            only_removes = all(h.new_count == 0 for h in hunks)
            is_new = old_name == "/dev/null" or git_new or (old_epoch and only_adds)
            is_deleted = new_name == "/dev/null" or git_deleted or (new_epoch and only_removes)
            files.append(FilePatch(old_name, new_name, hunks, is_new, is_deleted, git_new_mode))
            git_new_mode, git_new, git_deleted = None, False, False
            continue
        at += 1
    if not files:
        raise BadInput(f"{path} is not a patch (no unified diff in it)", hint="make one with diff -u or git diff")
    preamble = b"".join(lines[: preamble_end or 0]).decode("utf-8", errors="surrogateescape")
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


# -- placing hunks (GNU patch's algorithm) ---------------------------------------------------------------------
@dataclass
class HunkResult:
    index: int
    status: str  # clean, offset, fuzz, already-applied, failed
    offset: int = 0  # where it was found relative to its header line (GNU patch's "offset N lines")
    fuzz: int = 0
    line: int | None = None  # the line it starts at in the patched file, as GNU patch reports it
    detail: str = ""

    @property
    def applies(self) -> bool:
        return self.status in ("clean", "offset", "fuzz")

    def describe(self) -> str:
        """One phrase, like GNU patch's: "fuzz 2, offset +22 lines, at line 140"."""
        if self.status == "failed":
            return f"FAILED at line {self.line}" + (f" ({self.detail.split(';')[0]})" if self.detail else "")
        if self.status == "already-applied":
            return f"already applied (at line {self.line})" if self.line else "already applied"
        words = [f"fuzz {self.fuzz}"] if self.fuzz else []
        if self.offset:
            words.append(f"offset {self.offset:+d} line{'s' if abs(self.offset) != 1 else ''}")
        return ", ".join(words or ["clean"]) + f", at line {self.line}"

    def to_dict(self) -> dict[str, object]:
        return {
            "hunk": self.index,
            "status": self.status,
            "offset": self.offset,
            "fuzz": self.fuzz,
            "line": self.line,
            "detail": self.detail,
        }


class _FilePlacer:
    """Places the hunks of one file patch on `lines` the way GNU patch does, writing the output as it goes
    (input lines copied up to each hunk, context kept from the input, removed lines skipped)."""

    def __init__(self, lines: list[bytes], max_fuzz: int, detect_applied: bool = True) -> None:
        self.input = lines
        self.detect_applied = detect_applied
        self.output: list[bytes] = []
        self.max_fuzz = max_fuzz
        self.in_offset = 0  # offset of the last hunk found, in input lines
        self.out_offset = 0  # lines added minus removed by the hunks applied so far
        self.frozen = 0  # input lines 1..frozen are already copied or deleted
        self.forward = self.already = 0  # hunks of this file applied, and found already applied

    def _match(self, pattern: list[bytes], base: int, prefix_fuzz: int, suffix_fuzz: int) -> bool:
        start = base + prefix_fuzz  # 1-based input line of the first compared pattern line
        wanted = pattern[prefix_fuzz : len(pattern) - suffix_fuzz]
        if start < 1 or start - 1 + len(wanted) > len(self.input):
            return False
        return self.input[start - 1 : start - 1 + len(wanted)] == wanted

    def locate(self, hunk: Hunk, fuzz: int) -> int:
        """Where (1-based input line) the hunk's old lines start at this fuzz; 0: nowhere. GNU's locate_hunk."""
        pattern = hunk.old
        first_guess = hunk.first + self.in_offset
        pat_lines = len(pattern)
        prefix, suffix = hunk.prefix_context, hunk.suffix_context
        context = max(prefix, suffix)
        prefix_fuzz = fuzz + prefix - context
        suffix_fuzz = fuzz + suffix - context
        input_lines = len(self.input)
        max_where = input_lines - (pat_lines - suffix_fuzz) + 1
        min_where = self.frozen + 1 - (prefix - prefix_fuzz)
        max_pos = max_where - first_guess
        max_neg = first_guess - min_where
        max_offset = max(max_pos, max_neg)
        if not pat_lines:  # nothing to match: it goes where the header says
            return first_guess
        if first_guess <= max_neg:
            max_neg = first_guess - 1
        if prefix_fuzz < 0 and hunk.first <= 1:  # less context before: only at the start of the file
            if suffix_fuzz < 0 and (pat_lines != input_lines or prefix < self.frozen):
                return 0
            offset = 1 - first_guess
            if (
                self.frozen <= prefix
                and offset <= max_pos
                and self._match(pattern, first_guess + offset, 0, suffix_fuzz)
            ):
                self.in_offset += offset
                return first_guess + offset
            return 0
        prefix_fuzz = max(prefix_fuzz, 0)
        if suffix_fuzz < 0:  # less context after: only at the end of the file
            offset = first_guess - (input_lines - pat_lines + 1)
            if offset <= max_neg and self._match(pattern, first_guess - offset, prefix_fuzz, 0):
                self.in_offset -= offset
                return first_guess - offset
            return 0
        min_offset = first_guess - max_where if max_pos < 0 else first_guess - min_where if max_neg < 0 else 0
        for offset in range(min_offset, max_offset + 1):
            if offset <= max_pos and self._match(pattern, first_guess + offset, prefix_fuzz, suffix_fuzz):
                self.in_offset += offset
                return first_guess + offset
            if offset <= max_neg and self._match(pattern, first_guess - offset, prefix_fuzz, suffix_fuzz):
                self.in_offset -= offset
                return first_guess - offset
        return 0

    def _write(self, line: bytes) -> None:
        if self.output and not self.output[-1].endswith(b"\n"):
            self.output[-1] += b"\n"  # text goes after a last line that had no newline
        self.output.append(line)

    def _copy_till(self, last: int) -> bool:
        if self.frozen > last:
            return False  # misordered hunks
        for line in self.input[self.frozen : last]:
            self._write(line)
        self.frozen = max(self.frozen, last)
        return True

    def apply(self, hunk: Hunk, where: int) -> bool:
        """GNU's apply_hunk: removed lines skipped, added lines written, context taken from the input."""
        base = where - 1
        old = [kind for kind, _ in hunk.lines if kind != "+"]
        new = [(kind, text) for kind, text in hunk.lines if kind != "-"]
        o, n = 1, 0
        while o <= len(old):
            if old[o - 1] == "-":
                if not self._copy_till(base + o - 1):
                    return False
                self.frozen += 1
                o += 1
            elif n >= len(new):
                break
            elif new[n][0] == "+":
                if not self._copy_till(base + o - 1):
                    return False
                self._write(new[n][1])
                n += 1
            else:
                o += 1
                n += 1
        if n < len(new) and new[n][0] == "+":
            if not self._copy_till(base + o - 1):
                return False
            while n < len(new) and new[n][0] == "+":
                self._write(new[n][1])
                n += 1
        self.out_offset += len(new) - len(old)
        return True

    def finish(self) -> list[bytes]:
        self._copy_till(len(self.input))
        return self.output

    def place(self, hunk: Hunk) -> HunkResult:
        """Find and apply one hunk: fuzz 0 everywhere, then fuzz 1 everywhere, ... At each fuzz, a hunk
        whose reverse fits, when the hunk does not, is already applied. When both fit (after a patch went
        in, an added block often ends with the very lines its context starts with), the file's earlier
        hunks decide: all already applied, so is this one; any applied, this one applies; none (the first
        hunk), the nearer place wins."""
        context = max(hunk.prefix_context, hunk.suffix_context)
        for fuzz in range(min(self.max_fuzz, context) + 1):
            guess = self.in_offset
            where = self.locate(hunk, fuzz)
            found_offset = self.in_offset
            if self.detect_applied:
                self.in_offset = guess
                undone = self.locate(hunk.reversed(), fuzz)
                if undone and (
                    not where or self._prefer_reverse(abs(self.in_offset - guess), abs(found_offset - guess))
                ):
                    self.already += 1
                    return HunkResult(hunk.index, "already-applied", self.in_offset, fuzz, undone + self.out_offset)
                self.in_offset = found_offset
            if where:
                line = where + self.out_offset
                if not self.apply(hunk, where):  # GNU patch keeps the offset it found here
                    return HunkResult(hunk.index, "failed", line=line, detail="misordered hunks")
                self.forward += 1
                offset = self.in_offset
                status = "fuzz" if fuzz else "offset" if offset else "clean"
                return HunkResult(hunk.index, status, offset, fuzz, line)
        line = hunk.first + self.out_offset  # what GNU patch prints: the header line, shifted by the hunks applied
        return HunkResult(hunk.index, "failed", line=line, detail=self._why(hunk, hunk.first + self.in_offset))

    def _prefer_reverse(self, reverse_distance: int, forward_distance: int) -> bool:
        if self.forward or self.already:
            return not self.forward
        return reverse_distance < forward_distance

    def _why(self, hunk: Hunk, expected: int) -> str:
        expected = max(1, min(expected, len(self.input)))
        near = self.input[max(expected - 3, 0) : expected + 2]
        detail = "context not found"
        old = hunk.old
        if old and near and old[0].endswith(b"\r\n") != near[-1].endswith(b"\r\n"):
            detail += " (different line endings)"
        shown = b"".join(old[:6]).decode("utf-8", errors="replace").rstrip("\n")
        found = b"".join(near).decode("utf-8", errors="replace").rstrip("\n")
        return f"{detail}; expected:\n{shown}\nnear line {expected}:\n{found}"


# -- reports ---------------------------------------------------------------------------------------------------
def _hunks_phrase(count: int) -> str:
    return f"{count} hunk{'s' if count != 1 else ''}"


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

    @property
    def hunks(self) -> list[HunkResult]:
        return [h for f in self.files for h in f.hunks]

    @property
    def status(self) -> str:
        """applies, already-applied (every hunk is in the tree), partly-applied or fails."""
        statuses = {h.status for h in self.hunks}
        if "failed" in statuses:
            return "fails"
        if statuses == {"already-applied"}:
            return "already-applied"
        if "already-applied" in statuses:
            return "partly-applied"
        return "applies"

    def to_dict(self) -> dict[str, object]:
        return {
            "patch": self.patch,
            "strip": self.strip,
            "status": self.status,
            "files": [f.to_dict() for f in self.files],
        }


@dataclass
class Report:
    tree: Path
    patches: list[PatchResult]
    written: list[str] = field(default_factory=list)
    reverse: bool = False

    def _hunks(self) -> list[HunkResult]:
        return [h for p in self.patches for h in p.hunks]

    @property
    def status(self) -> str:
        """applies (something to do, all fits), already-applied (nothing to do) or fails."""
        statuses = {p.status for p in self.patches}
        if statuses & {"fails", "partly-applied"}:
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
            done = "not in the tree (nothing to take out" if self.reverse else "already applied (nothing to do"
            return f"{done}, {_hunks_phrase(len(hunks))})"
        failed = sum(h.status == "failed" for h in hunks)
        if failed:
            return f"{failed} of {_hunks_phrase(len(hunks))} FAIL"
        partly = [p for p in self.patches if p.status == "partly-applied"]
        if partly:
            done = sum(h.status == "already-applied" for p in partly for h in p.hunks)
            total = sum(len(p.hunks) for p in partly)
            names = ", ".join(p.patch for p in partly)
            return f"partly applied: {done} of {_hunks_phrase(total)} of {names} already in the tree"
        applying = [h for p in self.patches if p.status == "applies" for h in p.hunks]
        skipped = len(hunks) - len(applying)
        tail = f"; {_hunks_phrase(skipped)} already applied" if skipped else ""
        max_offset = max((abs(h.offset) for h in applying), default=0)
        max_fuzz = max((h.fuzz for h in applying), default=0)
        if not max_offset and not max_fuzz:
            return f"clean ({_hunks_phrase(len(applying))}{tail})"
        return f"applies ({_hunks_phrase(len(applying))}, max offset {max_offset}, max fuzz {max_fuzz}{tail})"

    def hint(self) -> str | None:
        if self.status != "fails":
            return None
        if any(p.status == "partly-applied" for p in self.patches):
            return "the tree already has part of this patch: check it against the tree, or take it out with --reverse"
        return "apachews patch rebase refreshes a patch onto this tree (3-way merge with --base-source DIR)"

    def to_dict(self) -> dict[str, object]:
        return {
            "tree": str(self.tree),
            "status": self.status,
            "summary": self.summary(),
            "hint": self.hint(),
            "reverse": self.reverse,
            "written": self.written,
            "patches": [p.to_dict() for p in self.patches],
        }

    def table(self) -> str:
        rows = []
        for patch in self.patches:
            note = {"already-applied": ": already applied", "partly-applied": ": PARTLY APPLIED"}.get(patch.status, "")
            rows.append(f"{patch.patch} (-p{patch.strip}){note}")
            for file in patch.files:
                for hunk in file.hunks:
                    rows.append(f"  {file.path}  hunk {hunk.index}: {hunk.describe()}")
                    if hunk.status == "failed" and "; " in hunk.detail:
                        rows += [f"      {line}" for line in hunk.detail.split("; ", 1)[1].splitlines()]
        rows.append(f"=> {self.summary()}")
        if self.hint():
            rows.append(f"hint: {self.hint()}")
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


@dataclass
class _FileState:
    lines: list[bytes] | None  # None: the file does not exist (or was deleted)
    original: bytes | None = None
    mode: int | None = None  # for files this run creates


def _file_lines(state: _FileState) -> bytes:
    return b"".join(state.lines or [])


def _patch_file(
    state: _FileState, fp: FilePatch, fuzz: int, detect_applied: bool = True
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
    placer = _FilePlacer(list(state.lines or []), fuzz, detect_applied)
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
    state = _FileState(None if data is None else _split_lines(data), data)
    results, lines = _patch_file(state, file_patch, fuzz, detect_applied)
    return results, None if lines is None else b"".join(lines)


def _compute(
    patches: list[Patch], tree: Path, fuzz: int, reverse: bool, strip: int | None
) -> tuple[dict[str, _FileState], list[PatchResult]]:
    tree = Path(tree)
    if not tree.is_dir():
        raise BadInput(f"{tree} is not a directory")
    if fuzz < 0 or fuzz > 3:
        raise BadInput("--fuzz must be 0 to 3")
    overlay: dict[str, _FileState] = {}
    results = []
    order = list(reversed(patches)) if reverse else patches
    for patch in order:
        if strip is not None:
            level = strip
        else:
            level = _reverse_strip(patch, tree) if reverse else detect_strip(patch, tree)
        file_results = []
        pending: dict[str, _FileState] = {}
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
                    state = _FileState(_split_lines(data), data)
                else:
                    state = _FileState(None)
                overlay[relative] = state
            change = "new" if fp.is_new else "deleted" if fp.is_deleted else "modified"
            hunk_results, lines = _patch_file(state, fp, fuzz)
            file_results.append(FileResult(relative, change, hunk_results))
            if all(r.applies for r in hunk_results):
                mode = state.mode if state.lines is not None else (fp.new_mode or _default_mode())
                pending[relative] = _FileState(lines, state.original, mode)
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
    _, results = _compute(_as_patches(patches), Path(tree), fuzz, reverse, strip)
    return Report(Path(tree), results, reverse=reverse)


def _write_atomically(target: Path, data: bytes, mode: int) -> None:
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
    overlay, results = _compute(_as_patches(patches), tree, fuzz, reverse, strip)
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
            mode = target.stat().st_mode & 0o7777 if exists else (state.mode or _default_mode())
            written.append((target, state.original if exists else None, mode))
            _write_atomically(target, data, mode)
            report.written.append(relative)
    except OSError as error:
        for target, original, mode in reversed(written):  # put back what was already replaced
            if original is None:
                target.unlink(missing_ok=True)
            else:
                _write_atomically(target, original, mode or _default_mode())
        raise JobFailed(f"writing the patched tree failed ({error}); every file was restored") from error
    return report


# -- rebase ---------------------------------------------------------------------------------------------------------
@dataclass
class RebaseReport:
    output: Path
    report: Report
    conflicts: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    conflict_dir: Path | None = None
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.conflicts

    def next_step(self) -> str | None:
        if not self.conflicts:
            return None
        return (
            f"no patch written. Resolve the <<<<<<< blocks in each file under {self.conflict_dir}/, then run the "
            f"same rebase again with --resolved {self.conflict_dir} to take those files as the patched content"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "output": str(self.output),
            "written": self.written,
            "conflicts": self.conflicts,
            "conflict_dir": str(self.conflict_dir) if self.conflict_dir else None,
            "next": self.next_step(),
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
    _, results = _compute([parsed], tree, fuzz, False, None)
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
            originals[relative] = _split_lines(current.read_bytes()) if current.is_file() else None
        before = afters.get(relative, originals[relative])
        placed, lines = _patch_file(_FileState(before), file_patch, fuzz)
        if all(h.applies for h in placed):
            after = lines
        elif all(h.status == "already-applied" for h in placed):
            after = before  # already in the tree: nothing left to carry for this file
        elif resolved is not None and (Path(resolved) / relative).is_file():
            data = (Path(resolved) / relative).read_bytes()
            if _has_markers(data):
                raise BadInput(f"{Path(resolved) / relative} still has conflict markers", hint="resolve them first")
            after = _split_lines(data)
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
                _write_atomically(target, merge, _default_mode())
                continue
            after = _split_lines(merge)
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
    _write_atomically(out, b"".join(pieces), _default_mode())
    rebased.written = True
    return rebased


def _three_way(file_patch: FilePatch, level: int, base_tree: Path, tree: Path, relative: str) -> tuple[bytes, bool]:
    """Merge the patch's change to one file into the target with `git merge-file`."""
    base_file = base_tree / relative
    if not base_file.is_file():
        raise BadInput(f"the base tree {base_tree} has no {relative}")
    data = base_file.read_bytes()
    results, lines = _patch_file(_FileState(_split_lines(data), data), file_patch, 0)
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
