"""The command line as a child process that a test interrupts (Ctrl-C, SIGTERM) at a moment it observed."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import IO, Any


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args: str, **popen: Any) -> subprocess.Popen:
    """`python -m apachews ARGS` with SIGINT at its default. A shell ignores SIGINT in the jobs it runs in the
    background (`make test &`, CI scripts), a child inherits that, and a Python started with SIGINT ignored
    never turns it into KeyboardInterrupt: the test's Ctrl-C would be lost and the test would hang."""
    return subprocess.Popen([sys.executable, "-m", "apachews", *args], preexec_fn=_default_sigint, **popen)


def wait_for_line(stream: IO[bytes], wanted: str) -> str:
    """Read `stream` (a child's pipe opened with bufsize=0, so that nothing read ahead is lost to a later
    communicate()) line by line until a line contains `wanted`; what was read. AssertionError if the stream
    ends first (the child exited), with what it said."""
    seen = ""
    for line in iter(stream.readline, b""):
        text = line.decode(errors="replace")
        seen += text
        if wanted in text:
            return seen
    raise AssertionError(f"{wanted!r} never came; the child said:\n{seen}")
