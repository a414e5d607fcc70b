"""verify's checks of clients that vanish: resets (plain, over TLS, to a TLS backend) and, where a backend
never closes on EOF, the orphans a FIN or an RST leaves behind."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from apachews import module
from apachews.lab import client
from apachews.lab.orphans import ORPHAN_CLIENTS, ORPHAN_SLACK_SECONDS, ORPHAN_WAIT_SECONDS, orphans, wait_until
from apachews.lab.report import Check, outcome, skipped
from apachews.verify.checks_session import echo_once
from apachews.verify.target import VERIFY_PREFIX, Target

RESET_CLIENTS = 100
RESET_LIMIT_SECONDS = 1.0
AFTER_RESET_HANDSHAKES = 20


async def check_abrupt_disconnect(t: Target) -> Check:
    baseline = await wait_until(lambda: t.backend_connections() == 0, 5)
    if baseline is None:
        return outcome(False, None, "", "backend sockets still open before the test")

    def open_and_reset() -> int:
        opened = []
        for _ in range(RESET_CLIENTS):
            answer = client.handshake(t.apache_port, t.ws_path)
            opened.append((answer.sock, answer.status))
        for sock, _ in opened:
            client.reset(sock)
        return sum(status == 101 for _, status in opened)

    upgraded = await asyncio.to_thread(open_and_reset)
    drained = await wait_until(lambda: t.backend_connections() == 0, 10)
    after = await asyncio.gather(
        *(echo_once(t, "after reset") for _ in range(AFTER_RESET_HANDSHAKES)), return_exceptions=True
    )
    good_after = sum(isinstance(r, tuple) and r[0] for r in after)
    passed = (
        upgraded == RESET_CLIENTS
        and drained is not None
        and drained < RESET_LIMIT_SECONDS
        and good_after == AFTER_RESET_HANDSHAKES
    )
    still_open = t.backend_connections()
    drain = f"backend drained in {drained:.3f} s" if drained is not None else f"{still_open} still open after 10 s"
    detail = (
        f"{upgraded}/{RESET_CLIENTS} upgraded then reset; {drain}; "
        f"{good_after}/{AFTER_RESET_HANDSHAKES} handshakes after"
    )
    figure = drained
    if t.holding is not None:
        # A backend that never closes on EOF: what the proxy does after the client left decides it all.
        limit = module.DEFAULT_FIN_TIMEOUT + ORPHAN_SLACK_SECONDS
        left = [await orphans(t.apache_port, t.holding_path, t.holding, how) for how in ("fin", "rst")]
        if t.tls_port is not None and t.tls_ca is not None:  # the filter path (mod_ssl in front)
            context = ssl.create_default_context(cafile=str(t.tls_ca))
            left.append(await orphans(t.tls_port, t.holding_path, t.holding, "fin", context))
        passed = passed and all(o.upgraded == ORPHAN_CLIENTS and o.gone_after is not None for o in left)
        passed = passed and all(o.gone_after is not None and o.gone_after <= limit for o in left)
        detail += f"; a backend that never closes on EOF: {'; '.join(o.text() for o in left)} (limit {limit:.1f} s)"
        figure = max(ORPHAN_WAIT_SECONDS if o.gone_after is None else o.gone_after for o in left)
    return outcome(passed, figure, "s", detail)


async def _reset_and_drain(
    t: Target, port: int, path: str, tls: bool, connections: Callable[[], int], after: str | None = None
) -> Check:
    """RESET_CLIENTS upgrades at `path` (the handshake over TLS with `tls`), then each reset (RST, no TLS
    close_notify): the backend behind must hold no socket (`connections`) within RESET_LIMIT_SECONDS, and
    AFTER_RESET_HANDSHAKES sessions at `after` (a ws:// or wss:// URL) must still echo."""
    if await wait_until(lambda: connections() == 0, 5) is None:
        return outcome(False, None, "", "backend sockets still open before the test")

    def open_and_reset() -> int:
        answers = [client.handshake(port, path, tls=tls) for _ in range(RESET_CLIENTS)]
        opened = [(answer.sock, answer.status) for answer in answers]
        for sock, _ in opened:
            client.reset(sock)
        return sum(status == 101 for _, status in opened)

    upgraded = await asyncio.to_thread(open_and_reset)
    drained = await wait_until(lambda: connections() == 0, 10)
    url = after or f"{'wss' if tls else 'ws'}://127.0.0.1:{port}{path}"
    results = await asyncio.gather(
        *(_echo_url(url, "after reset") for _ in range(AFTER_RESET_HANDSHAKES)), return_exceptions=True
    )
    good_after = sum(result is True for result in results)
    passed = upgraded == RESET_CLIENTS and drained is not None and drained < RESET_LIMIT_SECONDS
    passed = passed and good_after == AFTER_RESET_HANDSHAKES
    drain = f"backend drained in {drained:.3f} s" if drained is not None else f"{connections()} still open after 10 s"
    return outcome(
        passed,
        drained,
        "s",
        f"{upgraded}/{RESET_CLIENTS} upgraded{' over TLS' if tls else ''} then reset; {drain}; "
        f"{good_after}/{AFTER_RESET_HANDSHAKES} handshakes after",
    )


async def _echo_url(url: str, message: str) -> bool:
    async with await client.connect(url) as ws:
        await ws.send(message)
        return await asyncio.wait_for(ws.recv(), 30) == message


async def check_tls_abrupt_disconnect(t: Target) -> Check:
    """Orphans under a TLS front: clients vanish mid-session on wss:// (a closed laptop); the app must lose them."""
    if t.tls_port is None:
        return skipped("this Apache has no mod_ssl")
    return await _reset_and_drain(t, t.tls_port, t.ws_path, True, t.backend_connections)


async def check_tls_backend_abrupt_disconnect(t: Target) -> Check:
    """Orphans behind a TLS backend (wss://, SSLProxyEngine): resets on the client side must reach it."""
    if t.tls_echo is None:
        return skipped("this Apache has no mod_ssl")
    tls_echo = t.tls_echo
    return await _reset_and_drain(t, t.apache_port, f"{VERIFY_PREFIX}/tls", False, tls_echo.open_connections)
