"""The model (Patch > FilePatch > Hunk, line bytes kept as they are) and reading a unified diff into it.

unidiff parses the structure: files, their names, git's modes, hunks, line kinds, the "\\ No newline" marks.
It reads the patch cut into lines at "\\n" only (as GNU patch does: a lone "\\r" stays inside its line) and
with a CR before a newline left out, so that a patch saved with CRLF reads like any other (unidiff's own
patterns would take the CR for part of a name, or miss a git header). The bytes of every hunk line are
then taken from the patch itself (unidiff numbers each line), CRLF included: CRLF is data, as for GNU patch.
What unidiff leaves to its caller, done here the way GNU patch does it:
- a hunk line that starts with a tab is context whose leading space got eaten;
- "\\ No newline at end of file" takes the newline off the line before it;
- a file whose "+++" header ends in CRLF has the CRs of its hunk lines stripped;
- a file is new (deleted) when its old (new) name is /dev/null, git says so, or its header carries the
  epoch timestamp and every hunk only adds (removes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from unidiff import PatchedFile, PatchSet
from unidiff.constants import LINE_TYPE_EMPTY, LINE_TYPE_NO_NEWLINE
from unidiff.errors import UnidiffParseError

from apachews.errors import BadInput

_EPOCH = re.compile(r"(1970-01-01|1969-12-31)[ T]\d\d:\d\d:\d\d(\.0+)?( [+-]\d{4})?$")
_SPACED_STAMP = re.compile(r"^(\S+)\s+(\d{4}-\d\d-\d\d .*)$")  # some tools put spaces before the timestamp
_PREAMBLE_HEADERS = re.compile(rb"^(diff |Index:|====|new file mode |deleted file mode |index )")


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

    def reversed(self) -> Hunk:
        swap = {"+": "-", "-": "+", " ": " "}
        lines = [(swap[kind], text) for kind, text in self.lines]
        return Hunk(self.index, self.new_start, self.new_count, self.old_start, self.old_count, lines, self.section)


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


def split_lines(data: bytes) -> list[bytes]:
    """Lines with their "\\n" kept; a "\\r" stays part of the line (CRLF is data, as for GNU patch)."""
    lines = data.split(b"\n")
    last = lines.pop()
    result = [line + b"\n" for line in lines]
    if last:
        result.append(last)
    return result


def _header(name: str, stamp: str | None) -> tuple[str, bool]:
    """A ---/+++ header's file name, and whether its timestamp is the epoch ("no such file")."""
    stamp = stamp or ""
    if not stamp and (spaced := _SPACED_STAMP.match(name)):
        name, stamp = spaced.group(1), spaced.group(2)
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    return name, bool(_EPOCH.search(stamp.strip()))


def _from_git(parsed: PatchedFile) -> bool:
    return bool(parsed.patch_info) and parsed.patch_info[0].startswith("diff --git ")


def _file_patch(parsed: PatchedFile, lines: list[bytes]) -> FilePatch:
    """One file of the patch; `lines` are the patch's own lines, which unidiff's line numbers point into."""
    old_name, old_epoch = _header(parsed.source_file, parsed.source_timestamp)
    new_name, new_epoch = _header(parsed.target_file, parsed.target_timestamp)
    plus = next(at for at in range(parsed.diff_line_no - 1, len(lines)) if lines[at].startswith(b"+++ "))
    strip_cr = lines[plus].endswith(b"\r\n")
    hunks = []
    for index, block in enumerate(parsed, 1):
        body: list[tuple[str, bytes]] = []
        for line in block:
            if line.line_type == LINE_TYPE_NO_NEWLINE:
                if body and body[-1][1].endswith(b"\n"):
                    body[-1] = (body[-1][0], body[-1][1][:-1])
                continue
            if line.line_type == LINE_TYPE_EMPTY:  # a blank line after the hunk, not part of it
                continue
            text = lines[line.diff_line_no - 1]
            if text[:1] in (b" ", b"-", b"+"):  # else a blank or tab-led context line whose space got eaten
                text = text[1:]
            if strip_cr and text.endswith(b"\r\n"):
                text = text[:-2] + b"\n"
            body.append((line.line_type, text))
        start, length = block.source_start, block.source_length
        hunks.append(Hunk(index, start, length, block.target_start, block.target_length, body, block.section_header))
    is_new = old_name == "/dev/null" or (old_epoch and all(h.old_count == 0 for h in hunks))
    is_deleted = new_name == "/dev/null" or (new_epoch and all(h.new_count == 0 for h in hunks))
    git_new = _from_git(parsed) and old_name == "/dev/null"
    mode = int(parsed.target_mode, 8) & 0o777 if git_new and parsed.target_mode else None
    return FilePatch(old_name, new_name, hunks, is_new, is_deleted, mode)


def _preamble(lines: list[bytes]) -> str:
    """The text before the first file header (a commit message), without the diff/Index/git lines that
    belong to that header."""
    end = next(
        (at for at in range(len(lines) - 1) if lines[at].startswith(b"--- ") and lines[at + 1].startswith(b"+++ ")),
        0,
    )
    while end > 0 and _PREAMBLE_HEADERS.match(lines[end - 1]):
        end -= 1
    return b"".join(lines[:end]).decode("utf-8", errors="surrogateescape")


def _as_unidiff_reads_it(line: bytes) -> str:
    text = line.decode("utf-8", errors="surrogateescape")
    if text.endswith("\r\n"):
        text = text[:-2] + "\n"
    return " " + text if text.startswith("\t") else text  # GNU patch: a tab-led hunk line lost its space


def parse_patch(path: Path) -> Patch:
    """Parse one unified diff; BadInput (nothing touched) for what is not a usable text patch."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read patch {path}: {error.strerror}") from error
    if not raw.strip():
        raise BadInput(f"{path} is empty, not a patch")
    lines = split_lines(raw)
    try:
        parsed = PatchSet(_as_unidiff_reads_it(line) for line in lines)
    except UnidiffParseError as error:
        hint = "make one with diff -u or git diff"
        raise BadInput(f"{path} is not a valid unified diff: {error}", hint=hint) from error
    if any(f.is_binary_file for f in parsed):
        raise BadInput(f"{path} contains a binary diff", hint="apachews applies text patches only")
    files = [_file_patch(f, lines) for f in parsed if len(f) or not _from_git(f)]  # git's mode-only: nothing
    for file in files:
        if not file.hunks:
            raise BadInput(f"{path} is not a valid unified diff: no hunk after the header of {file.new_path}")
    if not files:
        raise BadInput(f"{path} is not a patch (no unified diff in it)", hint="make one with diff -u or git diff")
    return Patch(Path(path), _preamble(lines), files)
