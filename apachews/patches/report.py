"""What check / apply report: per hunk (HunkResult, from placement), per file, per patch, and for the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from apachews.patches.placement import HunkResult
from apachews.serial import Serialised


def _hunks_phrase(count: int) -> str:
    return f"{count} hunk{'s' if count != 1 else ''}"


@dataclass
class FileResult(Serialised):
    path: str
    change: str  # modified, new, deleted
    hunks: list[HunkResult]


@dataclass
class PatchResult(Serialised):
    patch: str
    strip: int
    files: list[FileResult]
    _derived = ("status",)

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


@dataclass
class Report(Serialised):
    tree: Path
    patches: list[PatchResult]
    written: list[str] = field(default_factory=list)
    reverse: bool = False
    _derived = ("status", "summary", "hint")

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
