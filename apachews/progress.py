"""Progress reporting for long work, on stderr.

API functions take a `Progress` and call `step()` / `note()` / `transfer()`, and `output()` for each line a
build prints; the CLI picks the implementation (`for_terminal`):
- `TerminalProgress` on a terminal: steps with elapsed time, a redrawn bar for transfers, the build's current
  make step on one status line;
- `LineProgress` when stderr is not a terminal (CI logs, pipes) or with -v: whole lines only, transfers and
  make steps at most every few seconds, so a log shows the work moving without flooding;
- `Progress` (silent) with -q, with --json (unless -v), and for library use.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Transfer:
    """A byte counter for one download or upload."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.done = 0

    def advance(self, count: int) -> None:
        self.done += count


class Progress:
    """Silent progress: the default for -q, --json and library use."""

    def step(self, message: str) -> None:
        """A new stage of the work began."""

    def note(self, message: str) -> None:
        """Something the user should read even when the work succeeds (e.g. which builder ran)."""

    def output(self, line: str) -> None:
        """One line a long-running tool printed (the build's make, configure); shown as its current step."""

    @contextmanager
    def transfer(self, label: str, total: int | None) -> Iterator[Transfer]:
        yield Transfer(total)


class Labelled(Progress):
    """Another progress with every step and note prefixed by a label: one of several jobs in parallel (the
    matrix's versions) in one log."""

    def __init__(self, inner: Progress, label: str) -> None:
        self.inner = inner
        self.label = label

    def step(self, message: str) -> None:
        self.inner.step(f"{self.label}: {message}")

    def note(self, message: str) -> None:
        self.inner.note(f"{self.label}: {message}")

    def output(self, line: str) -> None:
        self.inner.output(line)

    @contextmanager
    def transfer(self, label: str, total: int | None) -> Iterator[Transfer]:
        with self.inner.transfer(f"{self.label}: {label}", total) as transfer:
            yield transfer


# What a build line says it is doing: libtool/gcc compiles and links, make entering a directory, configure.
_COMPILE = re.compile(r"(?:^|\s)-c\s+(?:\S*/)?([\w.+-]+\.c)\b")
_LINK = re.compile(r"--mode=link\b.*?\s-o\s+(?:\S*/)?(\S+)")
_MAKING = re.compile(r"^Making (\w+) in (\S+)")
_CHECKING = re.compile(r"^checking (.+?)\.\.\.")


def describe_build_line(line: str) -> str | None:
    """`make: compiling mod_proxy.c` for a line of build output that says what the build is at, else None."""
    if found := _MAKING.match(line):
        return f"make {found.group(1)}: {found.group(2)}"
    if "--mode=link" in line and (found := _LINK.search(line)):
        return f"make: linking {found.group(1)}"
    if found := _COMPILE.search(line):
        return f"make: compiling {found.group(1)}"
    if found := _CHECKING.match(line):
        return f"configure: checking {found.group(1)}"
    return None


class LineProgress(Progress):
    """Whole lines on stderr, for logs: no carriage returns, throttled detail."""

    DETAIL_EVERY = 5.0  # seconds between two make-step or transfer lines

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last_detail = 0.0

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self.started:6.1f}s"

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def step(self, message: str) -> None:
        self._line(f"[{self._elapsed()}] {message}")
        self._last_detail = 0.0  # a step's first detail is shown at once, then one every DETAIL_EVERY

    def note(self, message: str) -> None:
        self._line(f"note: {message}")

    def _detail_due(self) -> bool:
        now = time.monotonic()
        if now - self._last_detail < self.DETAIL_EVERY:
            return False
        self._last_detail = now
        return True

    def output(self, line: str) -> None:
        detail = describe_build_line(line)
        if detail and self._detail_due():
            self._line(f"[{self._elapsed()}]   {detail}")

    @contextmanager
    def transfer(self, label: str, total: int | None) -> Iterator[Transfer]:
        transfer = _LoggedTransfer(total, label, self)
        try:
            yield transfer
        finally:
            transfer.finish()


def _amount(done: int, total: int | None) -> str:
    mib = done / 2**20
    if total:
        return f"{mib:.1f}/{total / 2**20:.1f} MiB ({100 * done // total}%)"
    return f"{mib:.1f} MiB"


class _LoggedTransfer(Transfer):
    def __init__(self, total: int | None, label: str, progress: LineProgress) -> None:
        super().__init__(total)
        self.label = label
        self.progress = progress

    def advance(self, count: int) -> None:
        super().advance(count)
        if self.progress._detail_due():
            self.progress._line(f"[{self.progress._elapsed()}]   {self.label}: {_amount(self.done, self.total)}")

    def finish(self) -> None:
        self.progress._line(f"[{self.progress._elapsed()}]   {self.label}: {_amount(self.done, self.total)} done")


class TerminalProgress(LineProgress):
    """Human progress on a terminal: steps with elapsed time, a bar for transfers, a status line for make."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._status = False  # a status line is drawn and must be cleared before the next line
        self._last_draw = 0.0

    def _line(self, text: str) -> None:
        self._clear_status()
        super()._line(text)

    def _clear_status(self) -> None:
        if self._status:
            self.stream.write("\r\x1b[K")
            self._status = False

    def output(self, line: str) -> None:
        detail = describe_build_line(line)
        now = time.monotonic()
        if detail and now - self._last_draw >= 0.1:
            self._last_draw = now
            width = shutil.get_terminal_size((80, 24)).columns - 1
            self.stream.write(f"\r\x1b[K[{self._elapsed()}]   {detail}"[: width + 4])  # +4: the escape codes
            self.stream.flush()
            self._status = True

    @contextmanager
    def transfer(self, label: str, total: int | None) -> Iterator[Transfer]:
        self._clear_status()
        transfer = _DrawnTransfer(total, label, self.stream)
        try:
            yield transfer
        finally:
            transfer.finish()


class _DrawnTransfer(Transfer):
    WIDTH = 30

    def __init__(self, total: int | None, label: str, stream: TextIO) -> None:
        super().__init__(total)
        self.label = label
        self.stream = stream
        self.last_draw = 0.0

    def advance(self, count: int) -> None:
        super().advance(count)
        now = time.monotonic()
        if now - self.last_draw >= 0.1:
            self.last_draw = now
            self._draw()

    def _draw(self) -> None:
        mib = self.done / 2**20
        if self.total:
            filled = int(self.WIDTH * self.done / self.total)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            text = f"\r{self.label} [{bar}] {mib:7.1f}/{self.total / 2**20:.1f} MiB"
        else:
            text = f"\r{self.label} {mib:7.1f} MiB"
        self.stream.write(text)
        self.stream.flush()

    def finish(self) -> None:
        self._draw()
        self.stream.write("\n")
        self.stream.flush()


def for_terminal(json_mode: bool, stream: TextIO | None = None, *, verbose: int = 0, quiet: bool = False) -> Progress:
    """The progress a command run shows: see the module docstring. $APACHEWS_PROGRESS=lines forces lines."""
    stream = stream or sys.stderr
    if quiet or (json_mode and not verbose):
        return Progress()
    if verbose or not stream.isatty() or os.environ.get("APACHEWS_PROGRESS") == "lines":
        return LineProgress(stream)
    return TerminalProgress(stream)
