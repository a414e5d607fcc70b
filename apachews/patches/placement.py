"""Placing one file's hunks the way GNU patch 2.7 does (src/patch.c: locate_hunk, apply_hunk), so that both
tools agree hunk by hunk:
- lines are compared as bytes, line ends included;
- a hunk is searched in the *original* file, from its header line shifted by the offset of the previous
  hunk, nearest first (+d before -d), never before the end of the previous hunk's change;
- fuzz F drops F context lines from each end; a hunk with less context on one side than the other is
  anchored there (fewer lines after the change: only at the end of the file; fewer before and starting at
  line 1: only at the start) until the fuzz makes up the difference;
- every place is tried with fuzz 0 before any place with fuzz 1, and so on up to the maximum.
One difference, on purpose: a hunk whose *reverse* fits better than itself (at lower fuzz) is "already
applied" (GNU patch only checks the first hunk, and only with -N).
"""

from __future__ import annotations

from dataclasses import dataclass

from apachews.patches.model import Hunk
from apachews.serial import Serialised


@dataclass
class HunkResult(Serialised):
    index: int
    status: str  # clean, offset, fuzz, already-applied, failed
    offset: int = 0  # where it was found relative to its header line (GNU patch's "offset N lines")
    fuzz: int = 0
    line: int | None = None  # the line it starts at in the patched file, as GNU patch reports it
    detail: str = ""
    _renamed = {"index": "hunk"}

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


class FilePlacer:
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
