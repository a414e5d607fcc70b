"""Progress reporting for long work, shown on a terminal and silent otherwise.

API functions take a `Progress` and call `step()` / `transfer()`; the CLI picks the implementation:
`TerminalProgress` when stderr is a tty and --json is off, `Progress` (silent) otherwise.
"""

from __future__ import annotations

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
    """Silent progress: the default for --json, pipes and library use."""

    def step(self, message: str) -> None:
        """A new stage of the work began."""

    def note(self, message: str) -> None:
        """Something the user should read even when the work succeeds (e.g. which builder ran)."""

    @contextmanager
    def transfer(self, label: str, total: int | None) -> Iterator[Transfer]:
        yield Transfer(total)


class TerminalProgress(Progress):
    """Human progress on stderr: steps with elapsed time, a bar for transfers."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self.started:6.1f}s"

    def step(self, message: str) -> None:
        print(f"[{self._elapsed()}] {message}", file=self.stream, flush=True)

    def note(self, message: str) -> None:
        print(f"note: {message}", file=self.stream, flush=True)

    @contextmanager
    def transfer(self, label: str, total: int | None) -> Iterator[Transfer]:
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


def for_terminal(json_mode: bool, stream: TextIO | None = None) -> Progress:
    stream = stream or sys.stderr
    if json_mode or not stream.isatty():
        return Progress()
    return TerminalProgress(stream)
