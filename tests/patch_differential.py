"""apachews' patch engine against GNU patch, on real patches and real trees (shared by
tests/test_patch_differential.py and benchmarks/patch_agreement.py).

Real patches: httpd's own history (`git diff A B` between neighbouring release tags, of modules/proxy/ and
other directories, split per file) applied to the releases around them; this project's series applied to
every 2.2 / 2.4 release; line-ending variants of real hunks (CRLF trees, CRLF patches); and the same diffs
applied a second time. Everything is read from the apache/httpd git repository at test time
(APACHEWS_HTTPD_GIT); nothing from it is committed.

A case is one file's section of one patch on one release's version of that file. Both tools see the
same one-file tree: GNU patch runs with `--dry-run` (the verdicts) and then for real on a copy (the bytes);
apachews runs `patches.check` (the verdicts), `patches.patch_file_bytes` (the bytes GNU patch would leave,
partial results included) and, when every hunk fits, the real `patches.apply` on a copy. Compared per hunk:
applies or not, the line it lands on (as GNU patch prints it), the offset, the fuzz; per file: the bytes
and the mode of a created file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from apachews import patches

GNU_OPTIONS = ["-p1", "-N", "-t", "-F2", "--verbose", "--no-backup-if-mismatch", "-r", "-"]
DIRECTORIES = ["modules/proxy", "server", "modules/http", "modules/ssl", "include", "modules/filters"]
# The default (fast) selection: pairs of neighbouring releases whose diffs are applied to the releases
# around them, chosen to cover 2.2 and 2.4, small and large changes, offsets, fuzz and failures.
DEFAULT_PAIRS = [("2.2.22", "2.2.23"), ("2.2.31", "2.2.32"), ("2.4.3", "2.4.4"), ("2.4.4", "2.4.6")]
DEFAULT_DIRECTORIES = ["modules/proxy", "modules/http"]
_HUNK_LINE = re.compile(
    r"^Hunk #(\d+) (succeeded|FAILED|ignored) at (-?\d+)(?: with fuzz (\d+))?(?: \(offset (-?\d+) lines?\))?"
)


def release_tags(git_dir: Path) -> list[str]:
    out = _git(git_dir, "tag", "--list", "2.*").decode().split()
    tags = [t for t in out if re.fullmatch(r"2\.[24]\.\d+", t)]
    return sorted(tags, key=lambda t: tuple(int(x) for x in t.split(".")))


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def git_dir_of(location: Path) -> Path:
    return location / ".git" if (location / ".git").exists() else location


class Blobs:
    """File contents at tags, read through one `git cat-file --batch` process."""

    def __init__(self, git_dir: Path) -> None:
        self.process = subprocess.Popen(
            ["git", f"--git-dir={git_dir}", "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.memo: dict[str, bytes | None] = {}

    def get(self, tag: str, path: str) -> bytes | None:
        key = f"refs/tags/{tag}:{path}"
        if key not in self.memo:
            assert self.process.stdin and self.process.stdout
            self.process.stdin.write(key.encode() + b"\n")
            self.process.stdin.flush()
            header = self.process.stdout.readline().split()
            if header[-1] == b"missing" or header[1] != b"blob":
                if header[-1] != b"missing":
                    self.process.stdout.read(int(header[2]) + 1)
                self.memo[key] = None
            else:
                data = self.process.stdout.read(int(header[2]))
                self.process.stdout.read(1)
                self.memo[key] = data
        return self.memo[key]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait()


@dataclass(frozen=True)
class Case:
    name: str  # what a test id shows
    kind: str  # history, series, crlf-tree, crlf-patch, crlf-both, reapplied, eof-anchor
    patch: bytes  # a one-file unified diff, -p1
    path: str  # the file in the tree
    content: bytes | None  # the tree's file before patching (None: absent)


@dataclass
class HunkComparison:
    hunk: int
    gnu: str  # "succeeded at 12 (fuzz 1, offset +3)", "FAILED at 40", "ignored (previously applied)", ...
    ours: str
    agrees: bool
    same_line: bool
    same_fuzz: bool
    justified: str = ""  # for a disagreement: the documented reason it is by design


@dataclass
class Outcome:
    """One case, compared twice: the placement (apachews without its already-applied check against
    `patch -f`, which never guesses "reversed") and the behaviour (apachews as users get it against
    `patch -N`, which detects a previously applied patch from its first hunk)."""

    case: Case
    placement: list[HunkComparison] = field(default_factory=list)
    behaviour: list[HunkComparison] = field(default_factory=list)
    bytes_compared: bool = False
    same_bytes: bool = True
    rebase: str | None = None  # None: not tried; "": the rebased patch is exact under GNU patch; else why not
    note: str = ""

    @property
    def placement_agrees(self) -> bool:
        return all(h.agrees for h in self.placement) and self.same_bytes

    @property
    def behaviour_agrees(self) -> bool:
        return all(h.agrees for h in self.behaviour)

    @property
    def unjustified(self) -> list[HunkComparison]:
        return [h for h in self.behaviour if not h.agrees and not h.justified]

    def explain(self) -> str:
        rows = [f"{self.case.name}" + (f" [{self.note}]" if self.note else "")]
        rows += [
            f"  placement, hunk {h.hunk}: GNU -f {h.gnu} | apachews {h.ours}" for h in self.placement if not h.agrees
        ]
        if not self.same_bytes:
            rows.append("  resulting bytes differ")
        for h in self.behaviour:
            if not h.agrees:
                why = f" -- {h.justified}" if h.justified else " -- NOT JUSTIFIED"
                rows.append(f"  behaviour, hunk {h.hunk}: GNU -N {h.gnu} | apachews {h.ours}{why}")
        return "\n".join(rows)


# -- the cases ----------------------------------------------------------------------------------------------------
def split_sections(diff: bytes) -> list[bytes]:
    """`git diff` output cut per file; binary and mode-only sections are left out."""
    parts = re.split(rb"(?m)^(?=diff --git )", diff)
    keep = []
    for part in parts:
        if not part.startswith(b"diff --git ") or b"\n--- " not in part or b"\nBinary files " in part:
            continue
        if b"GIT binary patch" in part:
            continue
        keep.append(part)
    return keep


def section_path(section: bytes) -> tuple[str, bool, bool]:
    """(path, creates, deletes) of one section."""
    old = re.search(rb"(?m)^--- (\S+)", section).group(1).decode()  # type: ignore[union-attr]
    new = re.search(rb"(?m)^\+\+\+ (\S+)", section).group(1).decode()  # type: ignore[union-attr]
    creates, deletes = old == "/dev/null", new == "/dev/null"
    name = old if creates is False else new
    return name.split("/", 1)[1], creates, deletes


def to_crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def crlf_hunk_lines(section: bytes) -> bytes:
    """A section as `git diff` prints it for CRLF files: the hunk lines end in CRLF, the headers do not."""
    out, in_hunk = [], False
    for line in section.split(b"\n")[:-1]:
        if line.startswith(b"@@ "):
            in_hunk = True
        elif not line.startswith((b" ", b"-", b"+", b"\\")) or line.startswith((b"--- ", b"+++ ")):
            in_hunk = False
        out.append(line + (b"\r\n" if in_hunk and not line.startswith((b"@@", b"\\")) else b"\n"))
    return b"".join(out)


def _pairs(tags: list[str], full: bool) -> list[tuple[str, str]]:
    if not full:
        return [p for p in DEFAULT_PAIRS if p[0] in tags and p[1] in tags]
    pairs = []
    for series in ("2.2.", "2.4."):
        line = [t for t in tags if t.startswith(series)]
        pairs += list(zip(line, line[1:]))
    return pairs


def history_cases(git_dir: Path, blobs: Blobs, full: bool) -> list[Case]:
    tags = release_tags(git_dir)
    directories = DIRECTORIES if full else DEFAULT_DIRECTORIES
    cases: list[Case] = []
    for a, b in _pairs(tags, full):
        line = [t for t in tags if t.startswith(a[:4])]
        i, j = line.index(a), line.index(b)
        targets = [t for t in (line[i - 1] if i else None, line[j + 1] if j + 1 < len(line) else None) if t]
        diff = _git(
            git_dir,
            "diff",
            "--no-renames",
            "--no-color",
            "--no-ext-diff",
            "-U3",
            f"refs/tags/{a}",
            f"refs/tags/{b}",
            "--",
            *directories,
        )
        for section in split_sections(diff):
            path, creates, _ = section_path(section)
            for target in targets:
                content = blobs.get(target, path)
                if content is None and not creates:
                    continue  # no file to patch: neither tool compares anything
                cases.append(Case(f"{a}..{b} on {target} {path}", "history", section, path, content))
    return cases


def reapplied_cases(git_dir: Path, blobs: Blobs, full: bool) -> list[Case]:
    """The diff A..B on B itself: already applied."""
    cases = []
    for a, b in _pairs(release_tags(git_dir), full)[:: 1 if full else 2]:
        diff = _git(
            git_dir,
            "diff",
            "--no-renames",
            "--no-color",
            "-U3",
            f"refs/tags/{a}",
            f"refs/tags/{b}",
            "--",
            "modules/proxy",
        )
        for section in split_sections(diff):
            path, _, deletes = section_path(section)
            content = blobs.get(b, path)
            if not deletes:
                cases.append(Case(f"{a}..{b} again on {b} {path}", "reapplied", section, path, content))
    return cases


def line_ending_cases(git_dir: Path, blobs: Blobs, full: bool) -> list[Case]:
    """Real hunks with CRLF: a CRLF tree with a patch made from it (hunk lines in CRLF), a patch saved
    with CRLF everywhere (headers too) on an LF tree, and that patch on a CRLF tree."""
    cases = []
    for a, b in _pairs(release_tags(git_dir), full)[: None if full else 2]:
        diff = _git(
            git_dir,
            "diff",
            "--no-renames",
            "--no-color",
            "-U3",
            f"refs/tags/{a}",
            f"refs/tags/{b}",
            "--",
            "modules/proxy",
        )
        for section in split_sections(diff)[: None if full else 3]:
            path, creates, _ = section_path(section)
            content = blobs.get(a, path)
            if content is None or creates:
                continue
            crlf = to_crlf(content)
            name = f"{a}..{b} on {a} {path}"
            cases.append(Case(f"CRLF tree, CRLF hunks: {name}", "crlf-tree", crlf_hunk_lines(section), path, crlf))
            cases.append(Case(f"CRLF patch, LF tree: {name}", "crlf-patch", to_crlf(section), path, content))
            cases.append(Case(f"CRLF patch, CRLF tree: {name}", "crlf-both", to_crlf(section), path, crlf))
    return cases


def series_cases(blobs: Blobs, tags: list[str], full: bool) -> list[Case]:
    """This project's series on every release of its branch (and the first releases past it)."""
    cases = []
    wanted = tags if full else ["2.2.15", "2.2.34", "2.4.1", "2.4.4", "2.4.6", "2.4.62"]
    for name in ("wstunnel-2.2", "wstunnel-2.4"):
        series = patches.load_series(name)
        branch = "2.2." if name.endswith("2.2") else "2.4."
        for patch_file in series.patch_files:
            for section in split_any(patch_file.read_bytes()):
                path, _, _ = section_path(section)
                for tag in [t for t in wanted if t.startswith(branch)]:
                    content = blobs.get(tag, path)
                    cases.append(Case(f"{name}/{patch_file.name} on {tag}", "series", section, path, content))
    return cases


def split_any(patch: bytes) -> list[bytes]:
    """A plain `diff -u` patch (no `diff --git` lines) cut per file."""
    parts = re.split(rb"(?m)^(?=--- (?:a/|/dev/null))", patch)
    return [part for part in parts if part.startswith(b"--- ")]


def end_of_file_case(blobs: Blobs) -> list[Case]:
    """The issue's report: a hunk appending code at the end of proxy_util.c, made on 2.2.24 (3 lines of
    context before, none after), on 2.4.4. GNU patch anchors it at the end of the file."""
    made_on = blobs.get("2.2.24", "modules/proxy/proxy_util.c")
    target = blobs.get("2.4.4", "modules/proxy/proxy_util.c")
    if made_on is None or target is None:
        return []
    with tempfile.TemporaryDirectory() as scratch:
        a, b = Path(scratch) / "a", Path(scratch) / "b"
        a.write_bytes(made_on)
        b.write_bytes(made_on + b"\n/* apachews: appended at the end */\nint apachews_marker;\n")
        diff = subprocess.run(
            ["diff", "-u", "--label", "a/modules/proxy/proxy_util.c", "--label", "b/modules/proxy/proxy_util.c", a, b],
            capture_output=True,
        ).stdout
    return [
        Case(
            "append at end of proxy_util.c (made on 2.2.24) on 2.4.4",
            "eof-anchor",
            diff,
            "modules/proxy/proxy_util.c",
            target,
        )
    ]


def build_cases(location: Path, full: bool = False) -> list[Case]:
    git_dir = git_dir_of(location)
    blobs = Blobs(git_dir)
    try:
        tags = release_tags(git_dir)
        cases = end_of_file_case(blobs)
        cases += history_cases(git_dir, blobs, full)
        cases += reapplied_cases(git_dir, blobs, full)
        cases += line_ending_cases(git_dir, blobs, full)
        cases += series_cases(blobs, tags, full)
    finally:
        blobs.close()
    return cases


# -- running both tools -------------------------------------------------------------------------------------------
@dataclass
class GnuHunk:
    verdict: str  # succeeded, FAILED, ignored
    line: int
    fuzz: int
    offset: int


@cache
def gnu_patch() -> str | None:
    found = shutil.which("patch")
    if not found:
        return None
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    return found if version.startswith("GNU patch") else None


def _tree(root: Path, case: Case) -> Path:
    target = root / case.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if case.content is not None:
        target.write_bytes(case.content)
    return target


@dataclass
class GnuRun:
    hunks: dict[int, GnuHunk]
    transcript: str
    data: bytes | None  # the file after a real run (None: absent)
    mode: int | None
    reversed_patch: bool  # "Reversed (or previously applied) patch detected! Skipping patch."


def run_gnu(case: Case, scratch: Path, mode: str) -> GnuRun:
    """GNU patch with `mode` ("-N" or "-f"): the verdicts of --dry-run, then the bytes of a real run (the
    two must report the same hunks)."""
    scratch.mkdir(parents=True, exist_ok=True)
    patch_file = scratch / "case.patch"
    patch_file.write_bytes(case.patch)
    environment = {**os.environ, "LC_ALL": "C", "QUOTING_STYLE": "literal"}
    transcripts, target = [], scratch
    for dry in (True, False):
        root = scratch / f"gnu{mode}{'-dry' if dry else ''}"
        target = _tree(root, case)
        command = [gnu_patch() or "patch", *GNU_OPTIONS, mode, "-d", str(root), "-i", str(patch_file)]
        run = subprocess.run(command + (["--dry-run"] if dry else []), capture_output=True, env=environment)
        transcripts.append(run.stdout.decode(errors="replace") + run.stderr.decode(errors="replace"))
    hunks = {}
    for line in transcripts[0].splitlines():
        match = _HUNK_LINE.match(line)
        if match:
            number, verdict, at, fuzz, offset = match.groups()
            hunks[int(number)] = GnuHunk(verdict, int(at), int(fuzz or 0), int(offset or 0))
    dry_hunks, real_hunks = ([ln for ln in t.splitlines() if _HUNK_LINE.match(ln)] for t in transcripts)
    assert real_hunks == dry_hunks, f"GNU patch --dry-run and a real run disagree:\n{transcripts[0]}\n{transcripts[1]}"
    data = target.read_bytes() if target.exists() else None
    file_mode = target.stat().st_mode & 0o777 if target.exists() else None
    reversed_patch = "Reversed (or previously applied)" in transcripts[0]
    return GnuRun(hunks, transcripts[0], data, file_mode, reversed_patch)


def _describe_gnu(hunk: GnuHunk | None, reversed_patch: bool) -> str:
    if hunk is None:
        return "no verdict"
    if hunk.verdict == "succeeded":
        return f"succeeded at {hunk.line} (fuzz {hunk.fuzz}, offset {hunk.offset:+d})"
    if hunk.verdict == "ignored":
        return "ignored (previously applied)" if reversed_patch else "ignored (no file to patch)"
    return f"FAILED at {hunk.line}"


def _describe_ours(result: patches.HunkResult) -> str:
    if result.applies:
        return f"applies at {result.line} (fuzz {result.fuzz}, offset {result.offset:+d})"
    if result.status == "already-applied":
        return f"already applied at {result.line} (fuzz {result.fuzz})"
    return f"{result.status} at {result.line}"


def _compare_hunk(result: patches.HunkResult, theirs: GnuHunk | None, reversed_patch: bool) -> HunkComparison:
    described, mine = _describe_gnu(theirs, reversed_patch), _describe_ours(result)
    if theirs is None:
        return HunkComparison(result.index, described, mine, False, False, False)
    if theirs.verdict == "succeeded":
        same_line = result.line == theirs.line and result.offset == theirs.offset
        same_fuzz = result.fuzz == theirs.fuzz
        return HunkComparison(
            result.index, described, mine, result.applies and same_line and same_fuzz, same_line, same_fuzz
        )
    if theirs.verdict == "ignored" and reversed_patch:
        same = result.status == "already-applied"
        return HunkComparison(result.index, described, mine, same, same, same)
    # FAILED, or ignored (no file to patch, or a file to create that exists): neither applies it
    same_line = theirs.verdict != "FAILED" or result.status != "failed" or result.line == theirs.line
    return HunkComparison(result.index, described, mine, not result.applies and same_line, same_line, True)


def _justify(comparisons: list[HunkComparison], results: list[patches.HunkResult], gnu: GnuRun) -> None:
    """Name the by-design reason of each behaviour disagreement, when there is one."""
    earlier = False
    for comparison, result in zip(comparisons, results):
        if comparison.agrees:
            continue
        theirs = gnu.hunks.get(result.index)
        if gnu.reversed_patch and result.index > 1:
            comparison.justified = "GNU -N judges the whole file from hunk 1; apachews judges each hunk"
        elif result.status == "already-applied" and theirs and theirs.verdict == "succeeded":
            how = (
                f"at fuzz {result.fuzz}, the hunk only at fuzz {theirs.fuzz}"
                if result.fuzz < theirs.fuzz
                else f"at the same fuzz {result.fuzz}, and the file's earlier hunks are already applied too"
                if result.index > 1
                else f"at the same fuzz {result.fuzz}, nearer than the hunk"
            )
            comparison.justified = f"already in the tree: its reverse fits {how}; GNU -N would apply it a second time"
        elif earlier:
            comparison.justified = "follows a hunk judged differently (by design) in the same file"
        earlier = earlier or bool(comparison.justified)


def _check_rebase(case: Case, scratch: Path, tree: Path, forward: GnuRun) -> str:
    """Rebase the case's patch onto the tree, then hand the result to GNU patch: every hunk must land at
    its header line with no fuzz, and the file must come out as the original patch left it."""
    rebased = scratch / "rebased.patch"
    patches.rebase(scratch / "case.patch", tree, rebased)
    check = run_gnu(Case(case.name, case.kind, rebased.read_bytes(), case.path, case.content), scratch / "rebase", "-f")
    moved = [n for n, h in check.hunks.items() if h.verdict != "succeeded" or h.fuzz or h.offset]
    if moved:
        return f"GNU patch moves or fails hunks {moved} of the rebased patch: {check.transcript[-300:]}"
    if check.data != forward.data:
        return "the rebased patch gives other bytes than the original"
    return ""


def compare(case: Case) -> Outcome:
    """Run both tools on one case and compare them hunk by hunk, then the bytes."""
    outcome = Outcome(case)
    with tempfile.TemporaryDirectory(prefix="apachews-diff-") as scratch_name:
        scratch = Path(scratch_name)
        forced, forward = run_gnu(case, scratch, "-f"), run_gnu(case, scratch, "-N")
        parsed = patches.parse_patch(scratch / "case.patch")
        file_patch = parsed.files[0]
        # Placement: the GNU algorithm itself, against patch -f.
        placed, placed_bytes = patches.patch_file_bytes(file_patch, case.content, detect_applied=False)
        outcome.placement = [_compare_hunk(r, forced.hunks.get(r.index), False) for r in placed]
        if len(forced.hunks) != len(placed):
            outcome.note = f"GNU reported {len(forced.hunks)} hunks, apachews {len(placed)}"
        if not any(h.verdict == "ignored" for h in forced.hunks.values()):
            outcome.bytes_compared = True
            outcome.same_bytes = placed_bytes == forced.data
        # Behaviour: what users get (check, with the already-applied check), against patch -N.
        ours_root = scratch / "ours"
        _tree(ours_root, case)
        results = patches.check([parsed], ours_root).patches[0].files[0].hunks
        outcome.behaviour = [_compare_hunk(r, forward.hunks.get(r.index), forward.reversed_patch) for r in results]
        _justify(outcome.behaviour, results, forward)
        # And apply() itself, when everything fits: the bytes on disk and the mode of a created file.
        if (
            all(r.applies for r in results)
            and forward.hunks
            and all(h.verdict == "succeeded" for h in forward.hunks.values())
        ):
            outcome.rebase = _check_rebase(case, scratch, ours_root, forward)
            applied = patches.apply([parsed], ours_root)
            target = ours_root / case.path
            on_disk = target.read_bytes() if target.exists() else None
            if on_disk != forward.data or applied.status != "applies":
                outcome.same_bytes = False
                outcome.note = "apply() wrote other bytes than GNU patch"
            elif case.content is None and on_disk is not None and (target.stat().st_mode & 0o777) != forward.mode:
                outcome.same_bytes = False
                outcome.note = f"created with mode {target.stat().st_mode & 0o777:o}, GNU {forward.mode:o}"
        if not outcome.placement_agrees and not outcome.note:
            outcome.note = forced.transcript.strip().replace("\n", " / ")[-300:]
    return outcome


def agreement(outcomes: list[Outcome]) -> dict[str, object]:
    """The figures: per hunk for placement (vs patch -f) and behaviour (vs patch -N), per file for bytes."""
    placement = [h for o in outcomes for h in o.placement]
    behaviour = [h for o in outcomes for h in o.behaviour]
    compared = [o for o in outcomes if o.bytes_compared]
    kinds: dict[str, list[int]] = {}
    for outcome in outcomes:
        tally = kinds.setdefault(outcome.case.kind, [0, 0, 0])
        tally[0] += len(outcome.placement)
        tally[1] += sum(h.agrees for h in outcome.placement)
        tally[2] += sum(h.agrees for h in outcome.behaviour)
    return {
        "cases": len(outcomes),
        "hunks": len(placement),
        "placement_agree": sum(h.agrees for h in placement),
        "placement_same_line": sum(h.same_line for h in placement),
        "placement_same_fuzz": sum(h.same_fuzz for h in placement),
        "files_bytes_compared": len(compared),
        "files_same_bytes": sum(o.same_bytes for o in compared),
        "rebased": sum(o.rebase is not None for o in outcomes),
        "rebased_exact": sum(o.rebase == "" for o in outcomes),
        "behaviour_agree": sum(h.agrees for h in behaviour),
        "behaviour_justified": sum(bool(h.justified) for h in behaviour if not h.agrees),
        "behaviour_unjustified": sum(not h.justified for h in behaviour if not h.agrees),
        "by_kind": {
            k: {"hunks": n, "placement_agree": p, "behaviour_agree": b} for k, (n, p, b) in sorted(kinds.items())
        },
        "disagreements": [o.explain() for o in outcomes if not (o.placement_agrees and o.behaviour_agrees)],
        "rebase_failures": [f"{o.case.name}: {o.rebase}" for o in outcomes if o.rebase],
    }
