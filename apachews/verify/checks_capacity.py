"""verify's capacity check: N WebSockets open through Apache, all echoing, while plain HTTP requests go to the
same server. Everything is bounded in count and time."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence

from websockets.asyncio.client import ClientConnection

from apachews.lab import client
from apachews.lab.client import PLAIN_GET_TIMEOUT
from apachews.lab.report import Check, outcome, skipped
from apachews.verify.target import Target

CAPACITY_MAX_WEBSOCKETS = 10_000  # verify opens them all from this one process (clients and the echo backend)
CAPACITY_OPENING = 64  # handshakes in flight at once (Apache's listen backlog is 511)
CAPACITY_STALL = 5.0  # no WebSocket opened for this long: the server takes no more (it spawns children each second)
CAPACITY_OPEN_LIMIT = 90.0  # the whole opening, at most
CAPACITY_ECHO_TIMEOUT = 20.0
CAPACITY_HTTP_REQUESTS = 20  # plain GETs while the WebSockets are open, in waves of CAPACITY_HTTP_WAVE
CAPACITY_HTTP_WAVE = 5
CAPACITY_PROBE_PATH = "/apachews-verify/capacity-probe"  # served by Apache itself (404), or the app at "/"
CAPACITY_FDS_PER_WEBSOCKET = 2  # in this process: the client's socket and the echo backend's


async def open_many(t: Target, count: int) -> tuple[list[ClientConnection], set[asyncio.Task], int, float]:
    """Open `count` WebSockets, CAPACITY_OPENING handshakes at a time, until all are open, none opened for
    CAPACITY_STALL seconds, or CAPACITY_OPEN_LIMIT: (open ones, unfinished handshakes, failures, seconds)."""
    gate = asyncio.Semaphore(CAPACITY_OPENING)

    async def one() -> ClientConnection:
        async with gate:
            return await client.connect(t.ws(), open_timeout=CAPACITY_OPEN_LIMIT, close_timeout=2)

    pending = {asyncio.create_task(one()) for _ in range(count)}
    opened: list[ClientConnection] = []
    failed = 0
    start = progress = time.monotonic()
    while pending:
        done, pending = await asyncio.wait(pending, timeout=0.25)
        for task in done:
            if task.exception() is None:
                opened.append(task.result())
                progress = time.monotonic()
            else:
                failed += 1
        now = time.monotonic()
        if now - progress > CAPACITY_STALL or now - start > CAPACITY_OPEN_LIMIT:
            break
    return opened, pending, failed, time.monotonic() - start


async def _echo(ws: ClientConnection, message: str) -> bool:
    await ws.send(message)
    return await asyncio.wait_for(ws.recv(), CAPACITY_ECHO_TIMEOUT) == message


async def _echo_all(sockets: Sequence[ClientConnection], tag: str) -> int:
    """How many of `sockets` echo a message of their own."""
    results = await asyncio.gather(*(_echo(ws, f"{tag} {i}") for i, ws in enumerate(sockets)), return_exceptions=True)
    return sum(result is True for result in results)


async def timed_get(t: Target) -> float | None:
    """Seconds until a plain GET is answered with a status line, or None (no answer within PLAIN_GET_TIMEOUT)."""
    start = time.monotonic()
    try:
        line = await asyncio.to_thread(client.status_line, t.apache_port, CAPACITY_PROBE_PATH)
    except OSError:
        return None
    return time.monotonic() - start if line.startswith("HTTP/") else None


async def close_all(sockets: Sequence[ClientConnection]) -> None:
    try:
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), 15)
    except asyncio.TimeoutError:
        pass
    for ws in sockets:  # whatever did not close in time
        ws.transport.abort()


async def check_capacity(t: Target) -> Check:
    """N WebSockets open through Apache, all echoing, while plain HTTP requests go to the same server: are
    they answered, and how slowly? Red where the tunnels hold every worker (an MPM not sized for them)."""
    if t.max_websockets is None:
        return skipped("no --max-websockets N (the check opens N WebSockets, through a server sized for them)")
    wanted = t.max_websockets
    opened: list[ClientConnection] = []
    pending: set[asyncio.Task] = set()
    during: asyncio.Task | None = None
    try:
        opened, pending, failed, opening = await open_many(t, wanted)
        waiting = len(pending)
        for task in pending:  # handshakes the server never took up: given up, their sockets closed
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        pending = set()
        before = await _echo_all(opened, "before")
        # Plain HTTP while every WebSocket echoes once more: the requests meet the tunnels busy.
        during = asyncio.create_task(_echo_all(opened, "during"))
        latencies: list[float] = []
        asked = 0
        for _ in range(CAPACITY_HTTP_REQUESTS // CAPACITY_HTTP_WAVE):
            wave = await asyncio.gather(*(timed_get(t) for _ in range(CAPACITY_HTTP_WAVE)))
            asked += len(wave)
            latencies += [latency for latency in wave if latency is not None]
            if all(latency is None for latency in wave):
                break  # not answering: more requests would only wait as long
        echoed_during = await during
        during = None
        after = await _echo_all(opened, "after")
    finally:
        for task in pending:
            task.cancel()
        if during is not None:
            during.cancel()
        await asyncio.gather(*pending, *([during] if during else []), return_exceptions=True)
        await close_all(opened)
    answered = len(latencies)
    unanswered = asked - answered
    worst = max(latencies + ([PLAIN_GET_TIMEOUT] if unanswered else []), default=None)
    passed = len(opened) == wanted and before == echoed_during == after == wanted and unanswered == 0
    ws_part = f"{len(opened)}/{wanted} WebSockets open in {opening:.1f} s"
    if len(opened) < wanted:
        ws_part += f" ({waiting} handshakes not taken up within {CAPACITY_STALL:.0f} s, {failed} failed)"
    echo_part = f"echoing {before} before, {echoed_during} during the HTTP requests, {after} after"
    if answered:
        http_part = (
            f"plain HTTP answered {answered}/{asked}, p50 {statistics.median(latencies):.3f} s, "
            f"max {max(latencies):.3f} s"
        )
    else:
        http_part = f"plain HTTP answered 0/{asked} within {PLAIN_GET_TIMEOUT:.0f} s"
    detail = f"{ws_part}; {echo_part}; {http_part}; server: {t.server_capacity}"
    return outcome(passed, worst, "s", detail)
