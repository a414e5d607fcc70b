"""What a lab run reports: a `Check` per check or case (pass, fail or skipped, a figure, a detail), the
tables verify and torture print, and the crash lines an error log gained."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from apachews.serial import Serialised

CRASH_MARKERS = ("Segmentation fault", "exit signal", "AH00052")  # AH00052: child pid exit signal


@dataclass
class Check(Serialised):
    name: str
    passed: bool
    figure: float | None = None
    unit: str = ""
    detail: str = ""
    skipped: bool = False  # the server lacks what the check needs (mod_ssl): neither pass nor fail


@dataclass
class Report(Serialised):
    """One Apache's checks (verify: one preset; torture: one target)."""

    apache: str
    httpd: str
    module: str | None
    tunnelling: str
    checks: list[Check] = field(default_factory=list)
    error_log: Path | None = None
    preset: str = "generic"
    layout: str = "bare"
    capacity: dict[str, object] | None = None  # with --max-websockets: the sizing and the server's workers
    _derived = ("passed", "skipped", "total")
    _omit_unset = ("capacity",)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def passed(self) -> int:
        """How many checks passed (skipped ones not counted)."""
        return sum(check.passed and not check.skipped for check in self.checks)

    @property
    def skipped(self) -> int:
        return sum(check.skipped for check in self.checks)

    @property
    def total(self) -> int:
        return len(self.checks)

    def table(self) -> str:
        return table(self.checks)


def outcome(passed: bool, figure: float | None = None, unit: str = "", detail: str = "") -> Check:
    """A check's result; its name is the key it is registered under (the runner fills it in)."""
    return Check("", passed, figure, unit, detail)


def skipped(why: str, name: str = "") -> Check:
    return Check(name, True, None, "", f"skipped: {why}", skipped=True)


def table(checks: Sequence[Check]) -> str:
    """One row per check, then how many passed."""
    width = max([20, *(len(check.name) for check in checks)])
    rows = [f"{'check':<{width}} {'result':<6} {'figure':>12}  detail"]
    for check in checks:
        figure = f"{check.figure:.3f} {check.unit}" if check.figure is not None else ""
        result = "skip" if check.skipped else "pass" if check.passed else "FAIL"
        rows.append(f"{check.name:<{width}} {result:<6} {figure:>12}  {check.detail}")
    ran = [c for c in checks if not c.skipped]
    skips = len(checks) - len(ran)
    rows.append(f"{sum(c.passed for c in ran)}/{len(ran)} checks passed" + (f", {skips} skipped" if skips else ""))
    return "\n".join(rows)


def cell(check: Check) -> str:
    """A check in a side-by-side table: pass/FAIL/n/a with the figure."""
    if check.skipped:
        return "n/a"
    result = "pass" if check.passed else "FAIL"
    if check.figure is None:
        return result
    figure = check.figure
    text = f"{figure:.0f}" if abs(figure) >= 100 else f"{figure:.3g}"
    return f"{result} {text} {check.unit}".rstrip()


def side_by_side(columns: Sequence[tuple[str, Sequence[Check]]], first: str = "case") -> str:
    """Rows: checks; columns: (label, checks) pairs."""
    names: list[str] = []
    for _, checks in columns:
        names += [check.name for check in checks if check.name not in names]
    cells = {(label, c.name): cell(c) for label, checks in columns for c in checks}
    widths = [max(len(label), *(len(cells.get((label, n), "")) for n in names)) for label, _ in columns]
    left = max(len(first), *(len(n) for n in names))
    lines = [first.ljust(left) + " | " + " | ".join(label.ljust(w) for (label, _), w in zip(columns, widths))]
    lines.append("-" * left + "-|-" + "-|-".join("-" * w for w in widths))
    for name in names:
        row = " | ".join(cells.get((label, name), "").ljust(w) for (label, _), w in zip(columns, widths))
        lines.append(name.ljust(left) + " | " + row)
    return "\n".join(lines)


def log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def crash_lines(log: Path, since: int = 0) -> list[str]:
    """Crash lines the error log holds after byte offset `since`."""
    try:
        with log.open("rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if any(marker in line for marker in CRASH_MARKERS)]


def error_log_check(log: Path) -> Check:
    """error-log-clean: no crash line in the whole log."""
    bad = crash_lines(log)
    return outcome(not bad, len(bad), "lines", bad[0][:120] if bad else "no crash lines")
