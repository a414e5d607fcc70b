"""verify's TLS and HTTP/2 checks: a wss:// backend (SSLProxyEngine), clients on wss:// (mod_ssl in front),
and WebSockets over HTTP/2 (RFC 8441 extended CONNECT)."""

from __future__ import annotations

import asyncio
import os
import ssl
import time

from apachews import h2client
from apachews.lab import client
from apachews.lab.client import BROWSER_CIPHERS
from apachews.lab.report import Check, outcome, skipped
from apachews.verify.checks_session import echo_once
from apachews.verify.target import VERIFY_PREFIX, Target

H2_PROTOCOLS = "Protocols h2 h2c http/1.1\n"  # verify's server: h2 over TLS (ALPN), h2c with prior knowledge
# An exchange takes ~0.15 s; the deadline is for a busy machine (a container's Apache, TLS, 64 KiB each way),
# as the capacity check's echoes have.
H2_ECHO_TIMEOUT = 20.0


async def check_tls_backend(t: Target) -> Check:
    """A wss:// backend through mod_ssl's proxy engine (SSLProxyEngine)."""
    if t.tls_echo is None:
        return skipped("this Apache has no mod_ssl")
    try:
        ok, elapsed, detail = await echo_once(t, "through a TLS backend", f"{VERIFY_PREFIX}/tls")
    except Exception as error:  # noqa: BLE001 - the handshake itself failing is the finding
        return outcome(False, None, "", f"{type(error).__name__}: {error}")
    return outcome(ok and t.tls_echo.sessions > 0, elapsed * 1000, "ms", detail)


async def check_tls_front(t: Target) -> Check:
    """The client speaks wss:// to Apache (mod_ssl), as every real deployment does."""
    if t.tls_port is None or t.tls_ca is None:
        return skipped("this Apache has no mod_ssl")
    context = ssl.create_default_context(cafile=str(t.tls_ca))
    context.set_ciphers(BROWSER_CIPHERS)
    url = f"wss://127.0.0.1:{t.tls_port}{t.ws_path}"
    message = os.urandom(12 * 1024)
    try:
        async with client.connect(url, ssl=context) as ws:
            start = time.monotonic()
            await ws.send(message)
            answer = await asyncio.wait_for(ws.recv(), 10)
            elapsed = time.monotonic() - start
    except Exception as error:  # noqa: BLE001
        return outcome(False, None, "", f"{type(error).__name__}: {error}")
    same = answer == message
    return outcome(same, elapsed * 1000, "ms", "12 KiB echoed over wss://" if same else "echo differs")


async def check_h2_websocket(t: Target) -> Check:
    """A WebSocket over HTTP/2 (RFC 8441): an extended CONNECT on an h2c connection (and h2 over TLS where the
    server has a TLS front), frames echoed through it, as a browser does on a vhost with Protocols h2."""
    if t.h2:
        return skipped(t.h2)
    messages = [b"over HTTP/2", os.urandom(64 * 1024), b""]
    origin = f"http://127.0.0.1:{t.apache_port}"
    runs = [("h2c", t.apache_port, None)]
    if t.tls_port is not None and t.tls_ca is not None:
        runs.append(("h2 over TLS", t.tls_port, ssl.create_default_context(cafile=str(t.tls_ca))))
    said, elapsed = [], 0.0
    for name, port, context in runs:
        try:
            exchange = await asyncio.to_thread(
                h2client.echo,
                "127.0.0.1",
                port,
                t.ws_path,
                messages,
                origin=origin,
                tls=context,
                timeout=H2_ECHO_TIMEOUT,
            )
        except (h2client.H2WebSocketError, OSError) as error:
            return outcome(False, None, "", f"{name}: {error}")
        if exchange.status != 200:
            return outcome(False, None, "", f"{name}: the extended CONNECT got {exchange.status}, not 200")
        if exchange.echoed != messages:
            return outcome(False, None, "", f"{name}: {len(exchange.echoed)} echoes, not the {len(messages)} sent")
        elapsed = max(elapsed, exchange.seconds)
        said.append(name)
    detail = f"extended CONNECT, {len(messages)} frames echoed over " + " and ".join(said)
    return outcome(True, elapsed * 1000, "ms", detail)
