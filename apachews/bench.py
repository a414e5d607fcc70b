"""`apachews bench`: WebSocket round trips per second and latency, through Apache and direct.

A benchmark, not a test: it prints figures. Bounded in connections, messages and time; loopback only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.client import connect

from apachews.errors import BadInput
from apachews.httpd import Httpd
from apachews.lab.client import MAX_MESSAGE
from apachews.progress import Progress
from apachews.serial import Serialised
from apachews.verify import ServerSetup, running_proxy

MAX_CONNECTIONS = 500
MAX_MESSAGES = 100_000
TIME_LIMIT_SECONDS = 120


@dataclass
class BenchResult(Serialised):
    name: str
    url: str
    round_trips: int
    seconds: float
    p50_ms: float
    p99_ms: float
    _derived = ("per_second",)
    _renamed = {"per_second": "round_trips_per_second"}
    _rounded = {"seconds": 4, "per_second": 1, "p50_ms": 3, "p99_ms": 3}

    @property
    def per_second(self) -> float:
        return self.round_trips / self.seconds if self.seconds else 0.0


def require_loopback(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise BadInput(f"{url!r} is not a ws:// or wss:// URL")
    host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise BadInput(f"{url!r} is not on this machine", hint="bench sends traffic only to 127.0.0.0/8 or ::1")
    return url


async def measure(name: str, url: str, connections: int, messages: int, size: int) -> BenchResult:
    payload = os.urandom(size)
    latencies: list[float] = []
    deadline = time.monotonic() + TIME_LIMIT_SECONDS

    async def client() -> None:
        async with connect(url, max_size=MAX_MESSAGE, compression=None) as ws:
            for _ in range(messages):
                if time.monotonic() > deadline:
                    return
                sent = time.perf_counter()
                await ws.send(payload)
                await ws.recv()
                latencies.append(time.perf_counter() - sent)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies) or [0.0]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return BenchResult(name, url, len(latencies), elapsed, statistics.median(ordered) * 1000, p99 * 1000)


def run(
    httpd: Httpd,
    *,
    connections: int = 10,
    messages: int = 500,
    size: int = 1024,
    module: Path | None = None,
    prefer: str | None = None,
    against: Sequence[str] = (),
    progress: Progress | None = None,
) -> list[BenchResult]:
    progress = progress or Progress()
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise BadInput(f"--connections must be 1 to {MAX_CONNECTIONS}")
    if not 1 <= messages <= MAX_MESSAGES:
        raise BadInput(f"--messages must be 1 to {MAX_MESSAGES}")
    if not 0 <= size <= MAX_MESSAGE:
        raise BadInput(f"--size must be 0 to {MAX_MESSAGE} bytes")
    others = [require_loopback(url) for url in against]
    with running_proxy(httpd, setup=ServerSetup(module=module, prefer=prefer), progress=progress) as proxy:
        targets = [("direct", proxy.target.echo.url), (f"apache ({proxy.tunnelling})", proxy.target.ws())]
        targets += [(f"against {url}", url) for url in others]
        results = []
        for name, url in targets:
            progress.step(f"bench {name}")
            results.append(asyncio.run(measure(name, url, connections, messages, size)))
    return results


def table(results: Sequence[BenchResult]) -> str:
    direct = results[0].per_second if results else 0
    rows = [f"{'target':<44} {'rt/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs direct':>9}"]
    for r in results:
        ratio = r.per_second / direct if direct else 0
        rows.append(f"{r.name[:44]:<44} {r.per_second:>10.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} {ratio:>9.2f}")
    return "\n".join(rows)
