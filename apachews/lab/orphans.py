"""Clients that vanish from a backend that never closes on EOF (broadwayd): a killed browser's FIN, a cut
network's RST. The apachews module must free the backend's sockets (both ends) within its fin timeout; the
count looks this long in all, so that a proxy that waits for its idle limit shows as all of them left.
verify's abrupt-disconnect and torture's orphans cases both count with `orphans`."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from apachews.lab import client
from apachews.lab.holding import HoldingBackend
from apachews.lab.sockets import TcpSocket, socket_holders

ORPHAN_CLIENTS = 20
ORPHAN_SLACK_SECONDS = 1.5  # beyond the fin timeout: the event loop's 250 ms sweep, a loaded machine
ORPHAN_WAIT_SECONDS = 10.0


async def wait_until(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until predicate() holds, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    return None


@dataclass
class Orphans:
    """What clients that vanished left behind a backend that never closes on EOF."""

    how: str  # "fin" or "rst", "tls fin" over wss://
    upgraded: int
    gone_after: float | None  # seconds until no backend-side socket was left (None: some still after the wait)
    left: dict[str, int]  # state -> sockets left at the end of the wait (both ends)
    holders: int  # Apache processes still holding a socket to the backend then (busy children / event loops)

    def text(self) -> str:
        if self.gone_after is not None:
            return f"{self.how.upper()}: {self.upgraded}/{ORPHAN_CLIENTS} gone in {self.gone_after:.2f} s"
        states = ", ".join(f"{count} {state}" for state, count in sorted(self.left.items()))
        return (
            f"{self.how.upper()}: {self.upgraded}/{ORPHAN_CLIENTS}, after {ORPHAN_WAIT_SECONDS:.0f} s still "
            f"{states} (Apache: {self.holders} processes holding them)"
        )


async def orphans(
    port: int, path: str, backend: HoldingBackend, how: str, tls: ssl.SSLContext | None = None
) -> Orphans:
    """ORPHAN_CLIENTS clients leave `backend` by `how` (over wss:// with `tls`); wait up to ORPHAN_WAIT_SECONDS
    for its sockets to go."""
    before = {(sock.local_port, sock.remote_port) for sock in backend.sockets()}  # an earlier round's, if any

    def new_sockets() -> list[TcpSocket]:
        return [sock for sock in backend.sockets() if (sock.local_port, sock.remote_port) not in before]

    leaving = (asyncio.to_thread(client.leave, port, path, how, tls) for _ in range(ORPHAN_CLIENTS))
    upgraded = sum(await asyncio.gather(*leaving))
    gone = await wait_until(lambda: not new_sockets(), ORPHAN_WAIT_SECONDS)
    left = new_sockets()
    states: dict[str, int] = {}
    for sock in left:
        states[sock.state] = states.get(sock.state, 0) + 1
    apache_side = {sock.inode for sock in left if sock.remote_port == backend.port}
    holders = len(await asyncio.to_thread(socket_holders, apache_side)) if apache_side else 0
    return Orphans(f"tls {how}" if tls else how, upgraded, gone, states, holders)
