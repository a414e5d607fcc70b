"""verify's checks of one WebSocket session through Apache: the handshake, echoes, fragments, ping, close
codes, many at once, refused upgrades, a backend that dies, plain GETs, silence, and the logs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from websockets.exceptions import ConnectionClosed

from apachews.lab import client
from apachews.lab.client import PLAIN_GET_TIMEOUT
from apachews.lab.echo import EchoServer
from apachews.lab.report import Check, error_log_check, outcome, skipped
from apachews.verify.target import Target

CONCURRENT_CLIENTS = 50
DIE_LIMIT_SECONDS = 1.0


def expected_accept(key: str) -> str:
    return client.accept_value(key)


async def check_handshake(t: Target) -> Check:
    start = time.monotonic()
    answer = await asyncio.to_thread(client.handshake, t.apache_port, t.ws_path)
    elapsed = time.monotonic() - start
    client.reset(answer.sock)
    status, accept_ok = answer.status, answer.accepted
    return outcome(
        status == 101 and accept_ok,
        elapsed * 1000,
        "ms",
        f"status {status}, Sec-WebSocket-Accept {'correct' if accept_ok else 'WRONG or missing'}",
    )


async def echo_once(t: Target, message: str | bytes, path: str | None = None) -> tuple[bool, float, str]:
    async with await client.connect(t.ws(path)) as ws:
        start = time.monotonic()
        await ws.send(message)
        answer = await asyncio.wait_for(ws.recv(), 30)
        elapsed = time.monotonic() - start
    same = type(answer) is type(message) and answer == message
    return (
        same,
        elapsed,
        "byte-exact" if same else f"got {len(answer)} of {len(message)}, type {type(answer)}",
    )


def echo_check(message: str | bytes) -> Callable[[Target], Awaitable[Check]]:
    async def run(t: Target) -> Check:
        ok, elapsed, detail = await echo_once(t, message)
        return outcome(ok, elapsed * 1000, "ms", detail)

    return run


async def check_fragmented(t: Target) -> Check:
    parts = ["frag-", "ment-", "ed"]
    async with await client.connect(t.ws()) as ws:
        await ws.send(iter(parts))
        answer = await asyncio.wait_for(ws.recv(), 10)
    return outcome(answer == "".join(parts), None, "", f"{len(parts)} fragments, got {answer!r}")


async def check_ping(t: Target) -> Check:
    async with await client.connect(t.ws()) as ws:
        pong = await ws.ping(b"apachews")
        latency = await asyncio.wait_for(pong, 5)
    return outcome(True, latency * 1000, "ms", "pong received")


async def check_close_code(t: Target) -> Check:
    async with await client.connect(t.ws()) as ws:
        await ws.close(code=4001, reason="apachews")
    code = ws.close_code  # the code in the close frame the peer sent back
    return outcome(code == 4001, None, "", f"sent 4001, peer answered {code}")


async def check_concurrent(t: Target) -> Check:
    async def one(index: int) -> bool:
        ok, _, _ = await echo_once(t, f"client {index}")
        return ok

    start = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(CONCURRENT_CLIENTS)), return_exceptions=True)
    elapsed = time.monotonic() - start
    good = sum(result is True for result in results)
    return outcome(
        good == CONCURRENT_CLIENTS,
        elapsed,
        "s",
        f"{good}/{CONCURRENT_CLIENTS} echoed",
    )


def refuse_check(status: int, backend: Callable[[Target], EchoServer]):
    async def run(t: Target) -> Check:
        def exchange() -> tuple[int, bytes]:
            answer = client.handshake(t.apache_port, t.refuse_paths[status])
            sock, got = answer.sock, answer.status
            try:
                # Were a raw tunnel open, this frame-like junk would reach the backend as WebSocket data.
                sock.sendall(b"\x81\x05hello")
                sock.settimeout(1)
                with contextlib.suppress(OSError):
                    sock.recv(4096)
            finally:
                sock.close()
            return got, b""

        got, _ = await asyncio.to_thread(exchange)
        sessions = backend(t).sessions
        return outcome(
            got == status and sessions == 0,
            None,
            "",
            f"client got {got} (expected {status}); backend WebSocket sessions: {sessions}",
        )

    return run


async def check_backend_dies(t: Target) -> Check:
    async with await client.connect(t.ws(t.die_path)) as ws:
        await ws.send("hello")
        await asyncio.wait_for(ws.recv(), 5)
        start = time.monotonic()
        await ws.send("die")
        try:
            await asyncio.wait_for(ws.recv(), 5)
            return outcome(False, None, "", "got a message after the backend died")
        except ConnectionClosed:
            elapsed = time.monotonic() - start
        except asyncio.TimeoutError:
            return outcome(False, 5.0, "s", "no close seen within 5 s")
    return outcome(elapsed < DIE_LIMIT_SECONDS, elapsed, "s", "client saw the close")


async def check_plain_get(t: Target) -> Check:
    start = time.monotonic()
    try:
        line = await asyncio.to_thread(client.status_line, t.apache_port, t.ws_path)
    except OSError as error:
        return outcome(False, None, "", f"no answer within {PLAIN_GET_TIMEOUT:.0f} s: {error}")
    return outcome(line.startswith("HTTP/"), time.monotonic() - start, "s", line or "empty answer")


async def check_config_clean(t: Target) -> Check:
    """`httpd -t` warnings (AH01146: a ProxyPass parameter dropped by worker sharing) are config that lies."""
    if t.syntax is None:
        return skipped("no httpd -t output for this server")
    warnings = t.syntax.warnings
    return outcome(not warnings, len(warnings), "warnings", "; ".join(warnings)[:400] or "httpd -t: Syntax OK")


async def check_idle(t: Target) -> Check:
    """Sessions that stay silent longer than mod_reqtimeout's body limit must live on, in both directions:
    the client speaks first after the silence, or the backend does."""
    silence = t.idle_silence

    async def client_speaks() -> str:
        async with await client.connect(t.ws()) as ws:
            await ws.send("before the silence")
            await asyncio.wait_for(ws.recv(), 10)
            await asyncio.sleep(silence)
            await ws.send("after the silence")
            answer = await asyncio.wait_for(ws.recv(), 10)
            return "" if answer == "after the silence" else f"client-first session got {answer!r}"

    async def backend_speaks() -> str:
        async with await client.connect(t.ws()) as ws:
            await ws.send(f"apachews:later:{silence}:the backend after the silence")
            answer = await asyncio.wait_for(ws.recv(), silence + 10)
            if answer != "the backend after the silence":
                return f"backend-first session got {answer!r}"
            await ws.send("and the client")
            answer = await asyncio.wait_for(ws.recv(), 10)
            return "" if answer == "and the client" else f"backend-first session got {answer!r} back"

    results = await asyncio.gather(client_speaks(), backend_speaks(), return_exceptions=True)
    problems = [
        f"{who}: {type(r).__name__}: {r}" if isinstance(r, BaseException) else r
        for who, r in zip(("client first", "backend first"), results)
        if r
    ]
    detail = "; ".join(problems) or f"both sessions alive after {silence:.1f} s of silence, both ways"
    return outcome(not problems, silence, "s", detail)


async def check_error_log(t: Target) -> Check:
    return error_log_check(t.error_log)
