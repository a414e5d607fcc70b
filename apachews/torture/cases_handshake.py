"""torture's handshake cases: what the backend answers to the upgrade (a 101 without Upgrade, a wrong accept,
100 Continue first, 120 headers), POST with Upgrade, frames pipelined before the 101, slowloris, and request
smuggling behind a refused upgrade."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable

from apachews.lab.client import accept_value, echo_frame, key_header, open_ws, upgrade_request, ws_frame
from apachews.torture.target import CaseResult, Context


def expected_accept(key: str) -> str:
    return accept_value(key)


def safe(fn: Callable[[int], bool], arg: int) -> bool:
    try:
        return fn(arg)
    except (OSError, ConnectionError):
        return False


def echo_once(ctx: Context, port: int | None = None) -> bool:
    stream, status, _, _ = open_ws(port or ctx.port, ctx.path("echo"))
    try:
        return status == 101 and echo_frame(stream, b"hello")
    finally:
        stream.close()


def status_case(name: str, backend: str, want: Callable[[int, dict[str, str], str], tuple[bool, str]]):
    """Open an upgrade to `backend`, time the answer, judge (status, headers, key) with `want`."""

    def run(ctx: Context) -> CaseResult:
        started = time.monotonic()
        try:
            stream, status, headers, key = open_ws(ctx.port, ctx.path(backend), timeout=5)
        except (OSError, ConnectionError) as error:
            return CaseResult(name, False, None, "", f"no answer: {error}")
        elapsed = time.monotonic() - started
        try:
            passed, detail = want(status, headers, key)
            if passed and status == 101:
                echoed = echo_frame(stream, b"through the tunnel")
                passed, detail = echoed, f"{detail}; echo {'ok' if echoed else 'WRONG'}"
        except (OSError, ConnectionError) as error:
            passed, detail = False, f"status {status}, then {type(error).__name__}: {error}"
        finally:
            stream.close()
        return CaseResult(name, passed, elapsed, "s", detail)

    return run


def want_502(status: int, headers: dict[str, str], key: str) -> tuple[bool, str]:
    return status == 502, f"client got {status} (want 502: the backend's 101 lacks Upgrade: websocket)"


def want_no_false_accept(status: int, headers: dict[str, str], key: str) -> tuple[bool, str]:
    accept = headers.get("sec-websocket-accept", "")
    if status == 502:
        return True, "client got 502 (proxy validated the accept)"
    if status == 101 and accept != expected_accept(key):
        return True, "client got 101 with the backend's wrong accept unchanged (the client rejects it)"
    return False, f"client got {status} with accept {'correct' if accept == expected_accept(key) else accept!r}"


def want_real_101(status: int, headers: dict[str, str], key: str) -> tuple[bool, str]:
    accept_ok = headers.get("sec-websocket-accept") == expected_accept(key)
    return status == 101 and accept_ok, f"client got {status}, accept {'correct' if accept_ok else 'WRONG'}"


def case_post_upgrade(ctx: Context) -> CaseResult:
    backend = ctx.backends["switch"]
    backend.reset()
    try:
        stream, status, _, _ = open_ws(ctx.port, ctx.path("switch"), method="POST", extra="Content-Length: 0\r\n")
        stream.close()
    except (OSError, ConnectionError) as error:
        return CaseResult("post-upgrade", False, None, "", f"no answer: {error}")
    seen = backend.requests[-1] if backend.requests else "nothing"
    method = seen.split()[0] if backend.requests else ""
    return CaseResult("post-upgrade", method == "POST", None, "", f"client got {status}; backend saw {seen!r}")


def case_pipelined(ctx: Context) -> CaseResult:
    payload = b"sent before the 101"
    try:
        stream, status, _, _ = open_ws(ctx.port, ctx.path("echo"), tail=ws_frame(payload))
    except (OSError, ConnectionError) as error:
        return CaseResult("pipelined-frame", False, None, "", f"no answer: {error}")
    try:
        if status != 101:
            return CaseResult("pipelined-frame", False, None, "", f"client got {status}")
        stream.sock.settimeout(5)
        started = time.monotonic()
        try:
            opcode, answer = stream.read_frame()
        except (OSError, ConnectionError) as error:
            return CaseResult(
                "pipelined-frame", False, None, "", f"no echo of the early frame ({type(error).__name__})"
            )
        ok = answer == payload
        return CaseResult(
            "pipelined-frame",
            ok,
            time.monotonic() - started,
            "s",
            f"early frame echoed {'byte-exact' if ok else 'WRONG'}",
        )
    finally:
        stream.close()


def case_slowloris(ctx: Context) -> CaseResult:
    """50 handshakes trickle one header line every 0.5 s; a normal client must still get through."""
    slow: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:
        line = 0
        while not stop.wait(0.5):
            line += 1
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.sendall(f"X-Slow-{line}: {line}\r\n".encode())

    try:
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
            sock.sendall(f"GET {ctx.path('echo')} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n".encode())
            slow.append(sock)
        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        time.sleep(1.0)
        latencies = []
        good = 0
        for _ in range(5):
            started = time.monotonic()
            if safe(lambda _: echo_once(ctx), 0):
                good += 1
            latencies.append(time.monotonic() - started)
        stop.set()
        thread.join(2)
    finally:
        stop.set()
        for sock in slow:
            with contextlib.suppress(OSError):
                sock.close()
    worst = max(latencies)
    return CaseResult(
        "slowloris", good == 5, worst, "s max", f"{len(slow)} slow handshakes open; {good}/5 normal echoes got through"
    )


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def smuggle_case(name: str, framing: str, body: bytes):
    def run(ctx: Context) -> CaseResult:
        backend = ctx.backends["smuggle"]
        backend.reset()
        sock = socket.create_connection(("127.0.0.1", ctx.port), timeout=10)
        started = time.monotonic()
        try:
            sock.sendall(upgrade_request(ctx.path("smuggle"), ctx.port, key_header(), extra=framing) + body)
            sock.settimeout(4)
            answer = b""
            first_at = None
            with contextlib.suppress(OSError):
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    first_at = first_at or time.monotonic() - started
                    answer += chunk
                    sock.settimeout(1)  # a pipelined second answer comes right behind the first
        finally:
            sock.close()
        statuses = re.findall(rb"HTTP/1\.[01] (\d{3})", answer)
        statuses_text = ",".join(s.decode() for s in statuses) or "none"
        smuggled = [line for line in backend.requests if "/smuggled" in line]
        first_ok = bool(statuses) and statuses[0] in (b"200", b"400")
        notes = "; ".join(backend.notes)
        # A proxy that announces a body it never sends leaves the backend waiting: not smuggling, still wrong.
        starved = any("never came" in note for note in backend.notes)
        return CaseResult(
            name,
            not smuggled and first_ok and not starved,
            first_at,
            "s",
            f"client saw status {statuses_text}; backend saw {len(backend.requests)} request(s)"
            + (f", SMUGGLED {smuggled[0]!r}" if smuggled else ", none smuggled")
            + (f"; backend: {notes}" if notes else ""),
        )

    return run
