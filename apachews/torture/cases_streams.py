"""torture's streaming cases: a refusal with a big body, a refusal that never ends read slowly, a backend that
never answers, a flood in one direction (is the other starved?), and a half-close."""

from __future__ import annotations

import socket
import statistics
import struct
import subprocess
import sys
import time

from apachews.lab.client import Stream, key_header, open_ws, reset, upgrade_request, ws_frame
from apachews.lab.processes import RssSampler
from apachews.lab.raw import TICK
from apachews.torture.target import MIB, SILENT_TIMEOUT, CaseResult, Context

RSS_BOUND = 32 * MIB  # growth of the children's summed RSS a streaming proxy stays under
FIRST_BYTE_LIMIT = 1.0  # seconds to the first body byte of a refused upgrade
STARVATION_LIMIT = 1.0  # worst delay of the quiet direction during a flood (stock: ~0.3 s)


def _read_body(
    stream: Stream, headers: dict[str, str], slow: float = 0.0, until: float | None = None
) -> tuple[int, float]:
    """Read a response body as its head frames it (length, chunked, or to EOF); returns (payload bytes,
    seconds to the first byte). `slow`: pause per 16 KiB read, like a reader on a thin line."""
    started = time.monotonic()
    first = -1.0
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length = None if chunked or "content-length" not in headers else int(headers["content-length"])
    got = 0
    pending = 0  # chunked: payload bytes of the current chunk still to come

    def more() -> bool:
        nonlocal first
        if until is not None and time.monotonic() > until:
            return False
        chunk = stream.sock.recv(16384 if slow else 1 << 20)
        if chunk and first < 0:
            first = time.monotonic() - started
        stream.buf += chunk
        if slow:
            time.sleep(slow)
        return bool(chunk)

    if stream.buf:
        first = 0.0
    while True:
        if not chunked:
            got += len(stream.buf)
            stream.buf = b""
            if (length is not None and got >= length) or not more():
                return got, first
            continue
        if pending:
            take = min(pending, len(stream.buf))
            got, pending, stream.buf = got + take, pending - take, stream.buf[take:]
            if pending and not more():
                return got, first
            continue
        if b"\r\n" not in stream.buf[2 if stream.buf.startswith(b"\r\n") else 0 :]:
            if not more():
                return got, first
            continue
        stream.buf = stream.buf.removeprefix(b"\r\n")
        size_line, _, stream.buf = stream.buf.partition(b"\r\n")
        pending = int(size_line.split(b";")[0] or b"0", 16)
        if pending == 0:
            return got, first


def case_refused_big(ctx: Context) -> CaseResult:
    size = ctx.settings.big_body
    ctx.backends["big"].reset()
    with RssSampler(ctx.parent_pid) as rss:
        started = time.monotonic()
        sock = socket.create_connection(("127.0.0.1", ctx.port), timeout=60)
        stream = Stream(sock)
        try:
            stream.send(upgrade_request(ctx.path("big"), ctx.port, key_header()))
            status, headers, _ = stream.read_head()
            head_at = time.monotonic() - started
            got, first = _read_body(stream, headers)
            first = head_at + max(first, 0.0)
        finally:
            stream.close()
        total = time.monotonic() - started
    growth = rss.growth
    passed = status == 200 and got == size and growth < RSS_BOUND and first < FIRST_BYTE_LIMIT
    return CaseResult(
        f"refused-{size // MIB}mib",
        passed,
        growth / MIB,
        "MiB rss",
        f"status {status}, {got}/{size} bytes in {total:.1f} s, first byte after {first:.2f} s",
    )


def case_slow_reader_forever(ctx: Context) -> CaseResult:
    backend = ctx.backends["forever"]
    backend.reset()
    status = 0
    got = 0
    with RssSampler(ctx.parent_pid) as rss:
        sock = socket.create_connection(("127.0.0.1", ctx.port), timeout=10)
        stream = Stream(sock)
        deadline = time.monotonic() + ctx.settings.slow_seconds
        try:
            stream.send(upgrade_request(ctx.path("forever"), ctx.port, key_header()))
            # A buffering proxy sends no head before the (endless) body ends: give up at the deadline.
            sock.settimeout(ctx.settings.slow_seconds)
            status, headers, _ = stream.read_head()
            sock.settimeout(10)
            got, _ = _read_body(stream, headers, slow=0.05, until=deadline)
        except (OSError, ConnectionError):
            pass
        finally:
            while time.monotonic() < deadline and rss.growth < 256 * MIB:
                time.sleep(0.1)  # let a buffering proxy show its growth for the full period
            backend.stop.set()
            stream.close()
    sent = next((int(n.split()[1]) for n in backend.notes if n.startswith("sent")), None)
    sent_text = f"backend pushed {sent / MIB:.0f} MiB" if sent is not None else "backend still pushing"
    growth = rss.growth
    return CaseResult(
        "slow-reader-forever",
        status == 200 and got > 0 and growth < RSS_BOUND,
        growth / MIB,
        "MiB rss",
        f"status {status}, read {got / MIB:.1f} MiB in {ctx.settings.slow_seconds:.0f} s; {sent_text}",
    )


def case_never_answers(ctx: Context) -> CaseResult:
    started = time.monotonic()
    try:
        stream, status, _, _ = open_ws(ctx.port, ctx.path("silent"), timeout=SILENT_TIMEOUT + 30)
        stream.close()
    except (OSError, ConnectionError) as error:
        return CaseResult("never-answers", False, time.monotonic() - started, "s", f"no answer: {error}")
    finally:
        ctx.backends["silent"].stop.set()
    elapsed = time.monotonic() - started
    passed = status in (502, 504) and elapsed < SILENT_TIMEOUT + 1.5
    return CaseResult("never-answers", passed, elapsed, "s", f"client got {status} (route timeout={SILENT_TIMEOUT})")


_FLOOD_SCRIPT = """
import os, socket, sys, time
sock = socket.socket(fileno=int(sys.argv[1]))
sock.setblocking(True)  # the descriptor comes non-blocking from the parent
frame = bytes([0x82, 0xFF]) + (65536).to_bytes(8, "big") + bytes(4) + os.urandom(65536)  # mask key 0
end, sent = time.monotonic() + float(sys.argv[2]), 0
try:
    while time.monotonic() < end:
        sock.sendall(frame)
        sent += len(frame)
except OSError:
    pass
print(sent)
"""


def case_flood(ctx: Context) -> CaseResult:
    """Client floods the backend; the backend's 20 ms ticks must keep arriving (no starvation)."""
    ctx.backends["ticker"].reset()
    stream, status, _, _ = open_ws(ctx.port, ctx.path("ticker"))
    if status != 101:
        stream.close()
        return CaseResult("flood-starvation", False, None, "", f"client got {status}")
    delays: list[float] = []
    # The flood comes from a child process on the same socket: a thread here would share the GIL with
    # the reader and the ticker backend, and could not outrun Apache.
    flooder = subprocess.Popen(
        [sys.executable, "-c", _FLOOD_SCRIPT, str(stream.sock.fileno()), str(ctx.settings.flood_seconds)],
        pass_fds=[stream.sock.fileno()],
        stdout=subprocess.PIPE,
        text=True,
    )
    sent = 0
    try:
        stream.sock.settimeout(5)
        deadline = time.monotonic() + ctx.settings.flood_seconds
        while time.monotonic() < deadline:
            _, payload = stream.read_frame()
            delays.append(time.monotonic() - struct.unpack("!d", payload)[0])
    except (OSError, ConnectionError) as error:
        return CaseResult("flood-starvation", False, None, "", f"tunnel broke: {type(error).__name__}: {error}")
    finally:
        try:
            out, _ = flooder.communicate(timeout=ctx.settings.flood_seconds + 10)
            sent = int(out.strip() or 0)
        except subprocess.TimeoutExpired:
            flooder.kill()
            flooder.wait()
        reset(stream.sock)
    if not delays:
        return CaseResult("flood-starvation", False, None, "", "no tick arrived during the flood")
    worst = max(delays)
    p99 = sorted(delays)[int(len(delays) * 0.99) - 1 if len(delays) > 1 else 0]
    expected = ctx.settings.flood_seconds / TICK
    return CaseResult(
        "flood-starvation",
        worst < STARVATION_LIMIT,
        worst,
        "s max",
        f"{len(delays)}/{expected:.0f} ticks, p50 {statistics.median(delays) * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms; client pushed {sent / MIB:.0f} MiB",
    )


def case_half_close(ctx: Context) -> CaseResult:
    backend = ctx.backends["half-close"]
    backend.reset()
    stream, status, _, _ = open_ws(ctx.port, ctx.path("half-close"))
    try:
        if status != 101:
            return CaseResult("half-close", False, None, "", f"client got {status}")
        stream.send(ws_frame(b"last words", 0x1))
        stream.sock.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        stream.sock.settimeout(6)
        try:
            opcode, payload = stream.read_frame()
        except (OSError, ConnectionError) as error:
            return CaseResult("half-close", False, None, "", f"nothing after the FIN ({type(error).__name__})")
        got = opcode == 0x1 and payload == b"after-fin"
        saw = backend.notes[0] if backend.notes else "?"
        return CaseResult(
            "half-close",
            got,
            time.monotonic() - started,
            "s",
            f"backend data after the client's FIN: {payload!r}; backend: {saw}",
        )
    finally:
        stream.close()
