"""The lab's httpd processes: the runner owns every Apache it starts. `owned` stops a server and then makes
sure no process of its tree is left (an httpd that outlived its parent's stop, or one that detached), whatever
ends the run: the checks, an error, Ctrl-C or SIGTERM (a second signal during the cleanup waits until it is
done). `children_rss` and `RssSampler` watch the children's memory."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from apachews.errors import JobFailed
from apachews.httpd import Server

SWEEP_TIMEOUT = 10.0


def processes_of(root: Path) -> list[int]:
    """The pids of processes (other than this one) whose command line names `root`: an httpd run with
    `-d ROOT` or `-f ROOT/...`."""
    wanted = str(root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg == wanted or arg.startswith(wanted + b"/") for arg in argv):
            found.append(int(entry.name))
    return found


def sweep(root: Path, timeout: float = SWEEP_TIMEOUT) -> list[int]:
    """End every process still running from `root` (SIGTERM, then SIGKILL), and wait until none is left;
    the pids found."""
    found = processes_of(root)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_of(root):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout / 2
        while processes_of(root) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not processes_of(root):
            break
    return found


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (then their handlers run): a cleanup is not cut short.
    Outside the main thread, signals are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in caught[:1]:
            handler = previous[sig]
            if callable(handler):
                handler(sig, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(sig)


@contextlib.contextmanager
def owned(server: Server) -> Iterator[Server]:
    """`server`, stopped on exit with nothing of its ServerRoot left running."""
    try:
        yield server
    finally:
        with deferred_signals():
            try:
                server.stop()
            finally:
                if server.httpd.runner is None:  # a container's processes are the runner's to end
                    sweep(server.server_root)


def parent_pid(server: Server, pid_file: Path, timeout: float = 10.0) -> int:
    """The httpd parent's pid, from its PidFile (written once it runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return int(pid_file.read_text().strip())
        time.sleep(0.05)
    raise JobFailed(f"Apache wrote no pid file at {pid_file}", hint=server.log_tail())


# -- Apache children's memory ------------------------------------------------------------------------------
def children_rss(parent: int) -> int:
    """Summed VmRSS (bytes) of the processes whose parent is `parent` (the httpd children)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s*(\d+)", status, re.MULTILINE)
        rss = re.search(r"^VmRSS:\s*(\d+) kB", status, re.MULTILINE)
        if ppid and rss and int(ppid.group(1)) == parent:
            total += int(rss.group(1)) * 1024
    return total


class RssSampler:
    """Samples children_rss every 50 ms in a thread; `growth` is the peak over the first sample."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.baseline = children_rss(parent)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, children_rss(self.parent))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.peak = max(self.peak, children_rss(self.parent))
