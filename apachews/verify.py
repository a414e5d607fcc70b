"""`apachews verify`: a real Apache in front of the bundled echo backend, driven by a real client.

One run: start the echo backends, render the preset's config for the Apache at hand (apachews.config), lay it
out the way a user of that server does (distros.trees: Debian's own tree with its <VirtualHost> and
mod_reqtimeout, or the release's own httpd.conf; "bare" is the lab ServerRoot), start that Apache, run the
named checks, stop everything. `httpd -t` warnings are failures (check "config-clean").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
import secrets
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from apachews import capacity, catalogue, config, h2client, module, sources, tunnelling
from apachews.dist import Dist
from apachews.distros import trees
from apachews.echo import (
    MAX_MESSAGE,
    EchoServer,
    HoldingBackend,
    RequestLine,
    TcpSocket,
    accept_value,
    socket_holders,
)
from apachews.errors import BadInput, JobFailed
from apachews.httpd import Httpd, Server, ServerRoot, SyntaxResult, free_port
from apachews.progress import Progress
from apachews.tunnelling import Tunnelling

RESET_CLIENTS = 100
RESET_LIMIT_SECONDS = 1.0
AFTER_RESET_HANDSHAKES = 20
# Clients that vanish from a backend that never closes on EOF (broadwayd): a killed browser's FIN, a cut
# network's RST. The apachews module must free the backend's sockets (both ends) within its fin timeout; the
# check looks this long in all, so that a proxy that waits for its idle limit shows as all of them left.
ORPHAN_CLIENTS = 20
ORPHAN_SLACK_SECONDS = 1.5  # beyond the fin timeout: the event loop's 250 ms sweep, a loaded machine
ORPHAN_WAIT_SECONDS = 10.0
CONCURRENT_CLIENTS = 50
DIE_LIMIT_SECONDS = 1.0
PLAIN_GET_TIMEOUT = 5.0
CRASH_MARKERS = ("Segmentation fault", "exit signal", "AH00052")  # AH00052: child pid exit signal
IDLE_BODY_TIMEOUT = 2  # RequestReadTimeout body=N while verifying (shipped: 10): the idle check outwaits it
VERIFY_PREFIX = "/apachews-verify"  # verify's own routes, beside the preset's
BALANCER_SESSIONS = 6
# A preset's RewriteRule at "/" (stock 2.4.7-2.4.46) would proxy verify's own routes to the app: read first.
# The capacity check: N WebSockets open through Apache, then plain HTTP. Everything is bounded in count and time.
CAPACITY_MAX_WEBSOCKETS = 10_000  # verify opens them all from this one process (clients and the echo backend)
CAPACITY_OPENING = 64  # handshakes in flight at once (Apache's listen backlog is 511)
CAPACITY_STALL = 5.0  # no WebSocket opened for this long: the server takes no more (it spawns children each second)
CAPACITY_OPEN_LIMIT = 90.0  # the whole opening, at most
CAPACITY_ECHO_TIMEOUT = 20.0
CAPACITY_HTTP_REQUESTS = 20  # plain GETs while the WebSockets are open, in waves of CAPACITY_HTTP_WAVE
CAPACITY_HTTP_WAVE = 5
CAPACITY_PROBE_PATH = "/apachews-verify/capacity-probe"  # served by Apache itself (404), or the app at "/"
CAPACITY_FDS_PER_WEBSOCKET = 2  # in this process: the client's socket and the echo backend's
CHECK_TIMEOUTS = {"capacity": 240.0, "abrupt-disconnect": 120.0}  # the others: 60 s
# What today's browsers offer: no finite-field DHE (Chrome and Firefox dropped it). mod_ssl before ECDHE support
# (2.2 up to 2.2.25) would pick DHE with 1024-bit parameters, which OpenSSL 3 clients refuse; browsers use RSA there.
BROWSER_CIPHERS = "DEFAULT:!kDHE"
KEEP_REWRITES_OFF = (
    f'<IfModule rewrite_module>\n    RewriteEngine On\n    RewriteRule "^{VERIFY_PREFIX}/" "-" [L]\n</IfModule>\n'
)


@dataclass
class Check:
    name: str
    passed: bool
    figure: float | None = None
    unit: str = ""
    detail: str = ""
    skipped: bool = False  # the server lacks what the check needs (mod_ssl): neither pass nor fail

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "passed": self.passed,
            "skipped": self.skipped,
            "figure": self.figure,
            "unit": self.unit,
            "detail": self.detail,
        }


def outcome(passed: bool, figure: float | None = None, unit: str = "", detail: str = "") -> Check:
    """A check's result; its name is the key it is registered under in CHECKS (run_checks fills it in)."""
    return Check("", passed, figure, unit, detail)


def skipped(why: str) -> Check:
    return Check("", True, None, "", f"skipped: {why}", skipped=True)


@dataclass
class VerifyReport:
    apache: str
    httpd: str
    module: str | None
    tunnelling: str
    checks: list[Check] = field(default_factory=list)
    error_log: Path | None = None
    preset: str = "generic"
    layout: str = "bare"
    capacity: dict[str, object] | None = None  # with --max-websockets: the sizing and the server's workers

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {
            "apache": self.apache,
            "httpd": self.httpd,
            "module": self.module,
            "tunnelling": self.tunnelling,
            "preset": self.preset,
            "layout": self.layout,
            "passed": sum(check.passed and not check.skipped for check in self.checks),
            "skipped": sum(check.skipped for check in self.checks),
            "total": len(self.checks),
            "checks": [check.to_dict() for check in self.checks],
            "error_log": str(self.error_log) if self.error_log else None,
            **({"capacity": self.capacity} if self.capacity is not None else {}),
        }

    def table(self) -> str:
        width = max([20, *(len(check.name) for check in self.checks)])
        rows = [f"{'check':<{width}} {'result':<6} {'figure':>12}  detail"]
        for check in self.checks:
            figure = f"{check.figure:.3f} {check.unit}" if check.figure is not None else ""
            result = "skip" if check.skipped else "pass" if check.passed else "FAIL"
            rows.append(f"{check.name:<{width}} {result:<6} {figure:>12}  {check.detail}")
        ran = [c for c in self.checks if not c.skipped]
        skips = len(self.checks) - len(ran)
        rows.append(f"{sum(c.passed for c in ran)}/{len(ran)} checks passed" + (f", {skips} skipped" if skips else ""))
        return "\n".join(rows)


@dataclass
class Target:
    """Where the checks send traffic, and the backends behind it."""

    apache_port: int
    echo: EchoServer
    refuse_200: EchoServer
    refuse_403: EchoServer
    die: EchoServer
    error_log: Path
    ws_path: str = "/ws"  # the preset's (first) WebSocket path
    rendering: config.Rendering | None = None
    members: list[EchoServer] = field(default_factory=list)  # the app backends (balancer: several)
    syntax: SyntaxResult | None = None  # what `httpd -t` said at start
    idle_silence: float = IDLE_BODY_TIMEOUT + 1.0
    tls_echo: EchoServer | None = None  # a wss:// backend (None: this Apache has no mod_ssl)
    tls_port: int | None = None  # Apache's TLS front (None: no mod_ssl)
    tls_ca: Path | None = None
    front_tls: bool = False  # the preset's routes are served on the TLS front only (inside its <VirtualHost>)
    die_path: str = "/ws-die"
    holding: HoldingBackend | None = None  # a backend that never closes on EOF (None: not measured, e.g. live)
    holding_path: str = "/ws-hold"
    refuse_paths: dict[int, str] = field(default_factory=lambda: {200: "/ws-refuse200", 403: "/ws-refuse403"})
    max_websockets: int | None = None  # the capacity check opens this many (None: it is skipped)
    server_capacity: str = ""  # the workers the server under test has, and whether apachews sized it
    # "": WebSockets over HTTP/2 are on (H2WebSockets, Protocols h2 h2c, as running_proxy sets up); else why not
    h2: str = "not set up on this server (H2WebSockets on, Protocols h2c: verify's own server has them)"

    def ws(self, path: str | None = None) -> str:
        if self.front_tls and self.tls_port is not None:
            return f"wss://127.0.0.1:{self.tls_port}{path or self.ws_path}"
        return f"ws://127.0.0.1:{self.apache_port}{path or self.ws_path}"

    @property
    def app_backends(self) -> list[EchoServer]:
        return self.members or [self.echo]

    def backend_connections(self) -> int:
        return sum(backend.open_connections() for backend in self.app_backends)


# -- raw-socket helpers (for what a library client hides: the accept value, resets) -----------------------
def _tls_client() -> ssl.SSLContext:
    """For checks that reach the TLS front by port (tls-front is the one that verifies the certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(BROWSER_CIPHERS)
    return context


def _raw_handshake(
    port: int, path: str, timeout: float = 5.0, tls: ssl.SSLContext | bool | None = None
) -> tuple[socket.socket, int, dict[str, str], str]:
    """Send an upgrade request by hand (over TLS with `tls`: True for the browser-like client, or a context);
    return the socket, status, headers and the key sent."""
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        context = _tls_client() if tls is True else tls
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return sock, status, headers, key


def expected_accept(key: str) -> str:
    return accept_value(key)


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST, like a killed browser tab or a cut network."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _wait_until(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until predicate() holds, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    return None


def _client(url: str) -> Awaitable[ClientConnection]:
    tls = _tls_client() if url.startswith("wss:") else None
    return connect(url, ssl=tls, max_size=MAX_MESSAGE, compression=None, open_timeout=10, close_timeout=5)


# -- the checks ---------------------------------------------------------------------------------------------
async def check_handshake(t: Target) -> Check:
    start = time.monotonic()
    sock, status, headers, key = await asyncio.to_thread(_raw_handshake, t.apache_port, t.ws_path)
    elapsed = time.monotonic() - start
    _reset(sock)
    accept_ok = headers.get("sec-websocket-accept") == expected_accept(key)
    return outcome(
        status == 101 and accept_ok,
        elapsed * 1000,
        "ms",
        f"status {status}, Sec-WebSocket-Accept {'correct' if accept_ok else 'WRONG or missing'}",
    )


async def _echo_once(t: Target, message: str | bytes, path: str | None = None) -> tuple[bool, float, str]:
    async with await _client(t.ws(path)) as ws:
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


def _echo_check(message: str | bytes) -> Callable[[Target], Awaitable[Check]]:
    async def run(t: Target) -> Check:
        ok, elapsed, detail = await _echo_once(t, message)
        return outcome(ok, elapsed * 1000, "ms", detail)

    return run


async def check_fragmented(t: Target) -> Check:
    parts = ["frag-", "ment-", "ed"]
    async with await _client(t.ws()) as ws:
        await ws.send(iter(parts))
        answer = await asyncio.wait_for(ws.recv(), 10)
    return outcome(answer == "".join(parts), None, "", f"{len(parts)} fragments, got {answer!r}")


async def check_ping(t: Target) -> Check:
    async with await _client(t.ws()) as ws:
        pong = await ws.ping(b"apachews")
        latency = await asyncio.wait_for(pong, 5)
    return outcome(True, latency * 1000, "ms", "pong received")


async def check_close_code(t: Target) -> Check:
    async with await _client(t.ws()) as ws:
        await ws.close(code=4001, reason="apachews")
    code = ws.close_code  # the code in the close frame the peer sent back
    return outcome(code == 4001, None, "", f"sent 4001, peer answered {code}")


async def check_concurrent(t: Target) -> Check:
    async def one(index: int) -> bool:
        ok, _, _ = await _echo_once(t, f"client {index}")
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


def _leave(port: int, path: str, how: str, tls: ssl.SSLContext | None = None) -> bool:
    """Handshake, send one text frame, and vanish: "fin" closes as a killed browser's kernel does (a FIN, no
    close frame, no TLS close_notify), "rst" with a reset. True when the upgrade succeeded."""
    sock, status, _, _ = _raw_handshake(port, path, tls=tls)
    if status == 101:
        key = secrets.token_bytes(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(b"last words"))
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + key + payload)
    if how == "rst":
        _reset(sock)
    else:
        os.close(sock.detach())  # the kernel's FIN, as when a browser's process dies (no TLS close_notify)
    return status == 101


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

    leaving = (asyncio.to_thread(_leave, port, path, how, tls) for _ in range(ORPHAN_CLIENTS))
    upgraded = sum(await asyncio.gather(*leaving))
    gone = await _wait_until(lambda: not new_sockets(), ORPHAN_WAIT_SECONDS)
    left = new_sockets()
    states: dict[str, int] = {}
    for sock in left:
        states[sock.state] = states.get(sock.state, 0) + 1
    apache_side = {sock.inode for sock in left if sock.remote_port == backend.port}
    holders = len(await asyncio.to_thread(socket_holders, apache_side)) if apache_side else 0
    return Orphans(f"tls {how}" if tls else how, upgraded, gone, states, holders)


async def check_abrupt_disconnect(t: Target) -> Check:
    baseline = await _wait_until(lambda: t.backend_connections() == 0, 5)
    if baseline is None:
        return outcome(False, None, "", "backend sockets still open before the test")

    def open_and_reset() -> int:
        opened = []
        for _ in range(RESET_CLIENTS):
            sock, status, _, _ = _raw_handshake(t.apache_port, t.ws_path)
            opened.append((sock, status))
        for sock, _ in opened:
            _reset(sock)
        return sum(status == 101 for _, status in opened)

    upgraded = await asyncio.to_thread(open_and_reset)
    drained = await _wait_until(lambda: t.backend_connections() == 0, 10)
    after = await asyncio.gather(
        *(_echo_once(t, "after reset") for _ in range(AFTER_RESET_HANDSHAKES)), return_exceptions=True
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


def _refuse_check(status: int, backend: Callable[[Target], EchoServer]):
    async def run(t: Target) -> Check:
        def exchange() -> tuple[int, bytes]:
            sock, got, _, _ = _raw_handshake(t.apache_port, t.refuse_paths[status])
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
    async with await _client(t.ws(t.die_path)) as ws:
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


def _status_line(port: int, path: str, timeout: float = PLAIN_GET_TIMEOUT) -> str:
    """A plain GET (no upgrade); the answer's status line ("" when the server closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return sock.recv(256).split(b"\r\n", 1)[0].decode("latin-1")


async def check_plain_get(t: Target) -> Check:
    start = time.monotonic()
    try:
        line = await asyncio.to_thread(_status_line, t.apache_port, t.ws_path)
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
        async with await _client(t.ws()) as ws:
            await ws.send("before the silence")
            await asyncio.wait_for(ws.recv(), 10)
            await asyncio.sleep(silence)
            await ws.send("after the silence")
            answer = await asyncio.wait_for(ws.recv(), 10)
            return "" if answer == "after the silence" else f"client-first session got {answer!r}"

    async def backend_speaks() -> str:
        async with await _client(t.ws()) as ws:
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


def backend_request_path(backend_path: str, rel: str) -> str:
    """Where a request for <path><rel> must arrive at the backend, which serves under backend_path."""
    return (backend_path.rstrip("/") + rel) if rel else backend_path


def _http_get(port: int, path: str, tls: bool = False) -> int:
    return _http_get_headers(port, path, tls=tls)[0]


def _http_get_headers(port: int, path: str, cookie: str = "", tls: bool = False) -> tuple[int, list[str]]:
    """GET `path` from Apache (its TLS front with `tls`): the status and the response's header lines."""
    extra = f"Cookie: {cookie}\r\n" if cookie else ""
    with socket.create_connection(("127.0.0.1", port), timeout=PLAIN_GET_TIMEOUT) as plain:
        sock = _tls_client().wrap_socket(plain, server_hostname="127.0.0.1") if tls else plain
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    line, *headers = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = line.split()
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), headers


async def check_app_routes(t: Target) -> Check:
    """The preset's own URL layout, answered by an app-shaped backend that records every request line: a
    wrong path, a double slash or an upgrade that arrived as plain HTTP fails with the exact line."""
    if t.rendering is None:
        return skipped("no preset rendering")
    preset = config.get_preset(t.rendering.preset)
    path = t.rendering.path
    problems: list[str] = []
    ran = 0

    def seen_since(marks: list[int]) -> list[str]:
        return [str(line) for b, mark in zip(t.app_backends, marks) for line in b.requests[mark:]]

    for kind in ("http", "ws"):
        for rel in preset.app.get(kind, ()):
            url_path = config.join_path(path, rel) or "/"
            expected = echo_request(backend_request_path(t.rendering.backend_path, rel) or "/", kind == "ws")
            marks = [len(b.requests) for b in t.app_backends]
            try:
                if kind == "http":
                    front = t.tls_port if t.front_tls and t.tls_port else t.apache_port
                    status = await asyncio.to_thread(_http_get, front, url_path, t.front_tls)
                    answered = status == 200
                    what = f"HTTP {status}"
                else:
                    ok, _, what = await _echo_once(t, f"app {url_path}", url_path)
                    answered = ok
            except Exception as error:  # noqa: BLE001 - any failure is this route's failure
                answered, what = False, f"{type(error).__name__}: {error}"
            ran += 1
            lines = seen_since(marks)
            if not answered or lines != [expected]:
                got = ", ".join(lines) or "nothing"
                problems.append(
                    f"{'WS' if kind == 'ws' else 'GET'} {url_path}: {what}; backend got {got}, expected {expected}"
                )
    if t.rendering.preset == "balancer" or len(t.app_backends) > 1:
        problems += await _balancer_spread(t)
    if preset.sticky:
        problems += await _sticky_sessions(t, preset)
    detail = "; ".join(problems)[:600] or f"{ran} app requests reached the backend as the app expects"
    return outcome(not problems, ran, "requests", detail)


def echo_request(path: str, upgrade: bool) -> str:
    return str(RequestLine(path, upgrade))


async def _sticky_sessions(t: Target, preset: config.Preset) -> list[str]:
    """A session's first HTTP request gets the route cookie; with it, its next requests and its WebSocket
    upgrade (Socket.IO: long-polling, then the upgrade) all reach the member that answered the first."""
    http = [config.join_path(t.rendering.path, rel) or "/" for rel in preset.app.get("http", ())] if t.rendering else []
    problems: list[str] = []
    for session in range(BALANCER_SESSIONS):
        marks = [len(b.requests) for b in t.app_backends]
        status, headers = await asyncio.to_thread(_http_get_headers, t.apache_port, http[0])
        cookies = [h.split(":", 1)[1].strip().split(";", 1)[0] for h in headers if h.lower().startswith("set-cookie:")]
        route = next((c for c in cookies if c.startswith("ROUTEID=")), "")
        if status != 200 or not route:
            return [f"session {session}: GET {http[0]} answered {status} without a ROUTEID cookie ({cookies})"]
        for rel in http[1:]:
            await asyncio.to_thread(_http_get_headers, t.apache_port, rel, route)
        for rel in preset.app.get("ws", ()):
            url = t.ws(config.join_path(t.rendering.path, rel) or "/")  # type: ignore[union-attr]
            async with connect(url, additional_headers={"Cookie": route}, open_timeout=10, close_timeout=5) as ws:
                await ws.send("sticky")
                await asyncio.wait_for(ws.recv(), 10)
        reached = [i for i, (b, mark) in enumerate(zip(t.app_backends, marks)) if len(b.requests) > mark]
        if len(reached) != 1:
            problems.append(f"session {session} ({route}) reached members {reached}: not kept on one")
    return problems


async def _balancer_spread(t: Target) -> list[str]:
    """Sessions spread over the members, and each stays on the member it was opened on."""
    members: list[set[str]] = []
    for _ in range(BALANCER_SESSIONS):
        async with await _client(t.ws()) as ws:
            answers = set()
            for _ in range(3):
                await ws.send("apachews:whoami")
                answers.add(await asyncio.wait_for(ws.recv(), 10))
            members.append(answers)
    problems = [f"a session moved between members: {sorted(m)}" for m in members if len(m) != 1]
    used = set().union(*members)
    if len(used) < 2:
        problems.append(f"{BALANCER_SESSIONS} sessions all went to {sorted(used)}: no spread over the members")
    return problems


async def check_tls_backend(t: Target) -> Check:
    """A wss:// backend through mod_ssl's proxy engine (SSLProxyEngine)."""
    if t.tls_echo is None:
        return skipped("this Apache has no mod_ssl")
    try:
        ok, elapsed, detail = await _echo_once(t, "through a TLS backend", f"{VERIFY_PREFIX}/tls")
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
        async with connect(url, ssl=context, max_size=MAX_MESSAGE, compression=None, open_timeout=10) as ws:
            start = time.monotonic()
            await ws.send(message)
            answer = await asyncio.wait_for(ws.recv(), 10)
            elapsed = time.monotonic() - start
    except Exception as error:  # noqa: BLE001
        return outcome(False, None, "", f"{type(error).__name__}: {error}")
    same = answer == message
    return outcome(same, elapsed * 1000, "ms", "12 KiB echoed over wss://" if same else "echo differs")


async def _reset_and_drain(
    t: Target, port: int, path: str, tls: bool, connections: Callable[[], int], after: str | None = None
) -> Check:
    """RESET_CLIENTS upgrades at `path` (the handshake over TLS with `tls`), then each reset (RST, no TLS
    close_notify): the backend behind must hold no socket (`connections`) within RESET_LIMIT_SECONDS, and
    AFTER_RESET_HANDSHAKES sessions at `after` (a ws:// or wss:// URL) must still echo."""
    if await _wait_until(lambda: connections() == 0, 5) is None:
        return outcome(False, None, "", "backend sockets still open before the test")

    def open_and_reset() -> int:
        opened = [_raw_handshake(port, path, tls=tls)[:2] for _ in range(RESET_CLIENTS)]
        for sock, _ in opened:
            _reset(sock)
        return sum(status == 101 for _, status in opened)

    upgraded = await asyncio.to_thread(open_and_reset)
    drained = await _wait_until(lambda: connections() == 0, 10)
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
    async with await _client(url) as ws:
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


async def _open_many(t: Target, count: int) -> tuple[list[ClientConnection], set[asyncio.Task], int, float]:
    """Open `count` WebSockets, CAPACITY_OPENING handshakes at a time, until all are open, none opened for
    CAPACITY_STALL seconds, or CAPACITY_OPEN_LIMIT: (open ones, unfinished handshakes, failures, seconds)."""
    gate = asyncio.Semaphore(CAPACITY_OPENING)

    async def one() -> ClientConnection:
        async with gate:
            return await connect(
                t.ws(), max_size=MAX_MESSAGE, compression=None, open_timeout=CAPACITY_OPEN_LIMIT, close_timeout=2
            )

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


async def _timed_get(t: Target) -> float | None:
    """Seconds until a plain GET is answered with a status line, or None (no answer within PLAIN_GET_TIMEOUT)."""
    start = time.monotonic()
    try:
        line = await asyncio.to_thread(_status_line, t.apache_port, CAPACITY_PROBE_PATH)
    except OSError:
        return None
    return time.monotonic() - start if line.startswith("HTTP/") else None


async def _close_all(sockets: Sequence[ClientConnection]) -> None:
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
        opened, pending, failed, opening = await _open_many(t, wanted)
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
            wave = await asyncio.gather(*(_timed_get(t) for _ in range(CAPACITY_HTTP_WAVE)))
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
        await _close_all(opened)
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


H2_PROTOCOLS = "Protocols h2 h2c http/1.1\n"  # verify's server: h2 over TLS (ALPN), h2c with prior knowledge


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
                h2client.echo, "127.0.0.1", port, t.ws_path, messages, origin=origin, tls=context
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


async def check_error_log(t: Target) -> Check:
    text = t.error_log.read_text(errors="replace") if t.error_log.exists() else ""
    bad = [line for line in text.splitlines() if any(marker in line for marker in CRASH_MARKERS)]
    return outcome(not bad, len(bad), "lines", bad[0][:120] if bad else "no crash lines")


CHECKS: dict[str, Callable[[Target], Awaitable[Check]]] = {
    "config-clean": check_config_clean,
    "handshake": check_handshake,
    "echo-text": _echo_check("hello through Apache"),
    "echo-binary": _echo_check(bytes(range(256)) * 4),
    "echo-empty": _echo_check(b""),
    "echo-1mib": _echo_check(os.urandom(2**20)),
    "fragmented": check_fragmented,
    "ping-pong": check_ping,
    "close-code": check_close_code,
    f"concurrent-{CONCURRENT_CLIENTS}": check_concurrent,
    "abrupt-disconnect": check_abrupt_disconnect,
    "refuse-200": _refuse_check(200, lambda t: t.refuse_200),
    "refuse-403": _refuse_check(403, lambda t: t.refuse_403),
    "backend-dies": check_backend_dies,
    "plain-get": check_plain_get,
    "idle": check_idle,
    "app-routes": check_app_routes,
    "tls-backend": check_tls_backend,
    "tls-front": check_tls_front,
    "tls-abrupt-disconnect": check_tls_abrupt_disconnect,
    "tls-backend-abrupt-disconnect": check_tls_backend_abrupt_disconnect,
    "capacity": check_capacity,
    "h2-websocket": check_h2_websocket,
    "error-log-clean": check_error_log,  # last: it reads what the others left in the log
}


async def run_checks(target: Target, names: Sequence[str], progress: Progress) -> list[Check]:
    results = []
    for name in names:
        progress.step(f"check {name}")
        try:
            result = await asyncio.wait_for(CHECKS[name](target), CHECK_TIMEOUTS.get(name, 60))
        except Exception as error:  # a check that blows up is a failed check, not a crashed run
            result = outcome(False, None, "", f"{type(error).__name__}: {error}")
        result.name = name  # the registry's key is the check's one name
        results.append(result)
    return results


# -- configuration -----------------------------------------------------------------------------------------
def route_location(path: str, url: str, style: Tunnelling, nohalfclose: bool = False) -> str:
    """A <Location> proxying WebSockets at `path` to the ws:// `url`, in `style` (`nohalfclose`: with the
    `SetEnv proxy-nohalfclose 1` config renders on stock 2.4.52+)."""
    if style is Tunnelling.HTTP_UPGRADE:
        target, options = url.replace("ws", "http", 1), " upgrade=websocket"
    else:
        target, options = url, ""
    env = "    SetEnv proxy-nohalfclose 1\n" if nohalfclose else ""
    return f'<Location "{path}">\n    ProxyPass "{config.proxy_target(path, target)}"{options}\n{env}</Location>\n'


def verify_routes(
    backends: dict[str, EchoServer | HoldingBackend],
    style: Tunnelling,
    tls_ca: Path | None = None,
    nohalfclose: bool = False,
) -> str:
    """verify's own routes (misbehaving backends, a wss:// backend) under VERIFY_PREFIX, in `style`; with
    `nohalfclose` when the preset's WebSocket routes have it (what a vanished client meets must be the same)."""
    lines = ["# apachews verify: routes to the misbehaving and the TLS backends"]
    if "tls" in backends and tls_ca is not None:
        lines += [
            "<IfModule ssl_module>",
            "    SSLProxyEngine on",
            f'    SSLProxyCACertificateFile "{tls_ca}"',
            "</IfModule>",
        ]
    for name in ("refuse-200", "refuse-403", "die", "hold", "tls"):
        if name in backends:
            location = route_location(f"{VERIFY_PREFIX}/{name}", backends[name].url, style, nohalfclose)
            lines.append(location.rstrip("\n"))
    return "\n".join(lines) + "\n"


def proxy_snippets(
    apache: str, preset: str, backends: dict[str, EchoServer], prefer: str | None
) -> tuple[dict[str, str], str, str]:
    """The rendered preset (generic layout) for the echo backend plus verify's routes, as ServerRoot snippets;
    returns them, the tunnelling style and the preset's WebSocket path. (live-verify uses this too.)"""
    release = catalogue.load().get(apache)
    style = tunnelling.choose(release, prefer)
    rendering = config.render(preset, apache=release, backends=[backends["echo"].url], path="/ws", prefer=style)
    files = with_verify_routes(rendering.files, verify_routes(backends, style), release.family)
    return files, style.value, rendering.websocket_paths[0]


def with_verify_routes(files: dict[str, str], routes: str, family: str) -> dict[str, str]:
    """The rendering's files and verify's routes in the order that lets the routes win where paths nest:
    2.2 takes the first matching ProxyPass (routes first), 2.4 the last <Location> merged (routes last)."""
    if family == "2.2":
        return {"00-verify-routes.conf": routes, **files}
    return {**files, "zz-verify-routes.conf": routes}


def _preset_backends(preset: str, members: list[EchoServer]) -> list[str]:
    """The preset's default backend URL(s), pointed at the bundled app backends on 127.0.0.1."""
    spec = config.get_preset(preset)
    default = config.validate_backend(spec.backend)
    scheme = spec.backend.split("://", 1)[0]
    path = spec.path if spec.backend_follows_path else default.path
    count = len(members) if any(r["kind"] in ("balancer", "balanced") for r in spec.routes) else 1
    return [f"{scheme}://127.0.0.1:{member.port}{path}" for member in members[:count]]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (as a SAN, so it verifies), made at test time."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    result = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise JobFailed("openssl could not make a test certificate", hint=result.stderr[-1000:])
    return cert, key


def _keep_log(log: Path) -> Path | None:
    """Copy a failing run's error log out of the ServerRoot, which is about to be removed."""
    if not log.exists():
        return None
    kept = sources.cache_dir() / "verify-logs" / f"error_log-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(log, kept)
    return kept


@dataclass
class Proxy:
    """A running Apache in front of the echo backends."""

    target: Target
    server: Server
    tunnelling: str
    layout: str
    sizing: capacity.Sizing | None = None  # the MPM sizing rendered for --max-websockets

    @property
    def root(self) -> Server:  # the name bench and older callers use
        return self.server


Edit = Callable[[dict[str, str]], dict[str, str]]


@dataclass(frozen=True)
class Case:
    """A named setup users run, verified as it was written: a preset with TLS on one side."""

    preset: str
    description: str
    backend_tls: bool = False  # the app serves wss:// and https:// itself; its certificate verified (SSLProxyVerify)
    front_tls: bool = False  # the routes inside the layout's own TLS <VirtualHost> (config --vhost tls)
    layout: str | None = None  # the layout whose TLS vhost it uses (None: the server's default layout)
    checks: tuple[str, ...] = ()  # () : every check


CASES = {
    "gateone-wss": Case(
        "gateone",
        "GateOne behind ProxyPass wss://: the backend serves TLS, SSLProxyEngine verifies its certificate",
        backend_tls=True,
    ),
    "broadway-ssl": Case(
        "broadway",
        "GTK Broadway inside <VirtualHost _default_:443> of RHEL/CentOS conf.d/ssl.conf: clients speak wss://",
        front_tls=True,
        layout="rhel",
        checks=("config-clean", "tls-front", "app-routes", "tls-abrupt-disconnect", "error-log-clean"),
    ),
}


class CannotRender(BadInput):
    """This release cannot serve the preset in this tunnelling style (config says why and what to do)."""


def check_module_fits(module: Path, httpd: Httpd) -> None:
    """A module built by apachews says which release it was built for (build.json beside it or its
    modules/ dir): refuse another family here, instead of httpd's raw "undefined symbol" later."""
    if httpd.runner is not None:  # another root: its glibc decides first
        httpd.runner.check_module(module)
    built = Dist.of_module(module)
    built_for = built.built_for() if built is not None else None
    if built is not None and built_for is not None and built_for.family != httpd.version.family:
        raise BadInput(
            f"{module} was built for Apache {built_for} ({built.info_file}); {httpd.binary} is {httpd.version}",
            hint=f"build it for this server: apachews build --apache {httpd.version} (or --apxs)",
        )


def resolve_style(httpd: Httpd, module: Path | None, prefer: str | Tunnelling | None) -> Tunnelling:
    """The style under test: the apachews module when one is given, else what was asked for, else the
    release's own, where the httpd can do it (no module given: a stock module is what it has)."""
    release = catalogue.load().get(str(httpd.version))
    if module is not None:
        return Tunnelling.APACHEWS  # a given mod_proxy_wstunnel.so must be the one tunnelling
    if prefer is not None:
        return tunnelling.choose(release, prefer)
    style = tunnelling.default_for(release)
    if style is Tunnelling.APACHEWS and release.stock_wstunnel:
        return Tunnelling.WSTUNNEL
    return style


def validate_capacity_count(value: object) -> int:
    """verify --max-websockets: capacity's rules, and what one verify process can open."""
    count = capacity.validate_websockets(value)
    if count > CAPACITY_MAX_WEBSOCKETS:
        raise BadInput(
            f"verify --max-websockets {count}: verify opens at most {CAPACITY_MAX_WEBSOCKETS} WebSockets, from one "
            "process that also runs the echo backend",
            hint=f"give at most {CAPACITY_MAX_WEBSOCKETS} (config and doctor size for up to {capacity.MAX_WEBSOCKETS})",
        )
    return count


@contextlib.contextmanager
def raised_open_files(needed: int) -> Iterator[int]:
    """RLIMIT_NOFILE's soft limit raised to the hard one for this process and the Apache it starts (which
    inherits it), put back on exit; refused when even the hard limit is below `needed`. Yields the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BadInput(
            f"this needs {needed} open files in one process (the clients, the echo backend, Apache's children); "
            f"the hard limit here is {hard}",
            hint="raise it (ulimit -Hn as root, LimitNOFILE for a service) or give a smaller --max-websockets",
        )
    limit = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def verify_sizing(
    httpd: Httpd, layout: str, max_websockets: int, handoff: bool = False, mpm: str | None = None
) -> tuple[capacity.Sizing, capacity.Capacity]:
    """The MPM sizing verify renders for `max_websockets` (capacity.size of the layout's stock settings, the
    HTTP reserve its default: the workers the tree has now), and that stock capacity."""
    stock = capacity.compute(trees.stock_settings(layout, httpd, mpm))
    return capacity.size(stock, max_websockets, handoff=handoff), stock


@contextlib.contextmanager
def running_proxy(
    httpd: Httpd,
    *,
    preset: str = "generic",
    module: Path | None = None,
    prefer: str | Tunnelling | None = None,
    layout: str | None = None,
    edit: Edit | None = None,
    progress: Progress | None = None,
    max_websockets: int | None = None,
    handoff: bool = False,
    h2: bool | None = None,
    mpm: str | None = None,
) -> Iterator[Proxy]:
    """Start the backends and Apache in front of them, laid out as `layout`; stop and remove all on exit.

    `edit` may change the files verify is about to install (file name -> text): the tests use it to show
    that a check goes red on a config that is wrong in the way users' configs are. `max_websockets`: the
    server gets the MPM sizing `apachews config --max-websockets` renders (the same function and template),
    this process and Apache a raised open-files limit, and the capacity check opens that many WebSockets.
    `handoff`: the routes get ProxyWebsocketHandoff On (the apachews module only). `h2`: WebSockets over HTTP/2
    (H2WebSockets on, Protocols h2 h2c); None: wherever the server can (h2_unavailable). `mpm`: the MPM the
    debian or bare layout runs instead of its own (the debian tree as after a2dismod/a2enmod)."""
    progress = progress or Progress()
    if max_websockets is not None:
        max_websockets = validate_capacity_count(max_websockets)
    if module is not None:
        module = Path(module).resolve()
        if not module.is_file():
            raise BadInput(f"no module at {module}")
        check_module_fits(module, httpd)
    case = CASES.get(preset)
    if case is not None:
        preset = case.preset
        layout = layout or case.layout
    layout = layout or trees.default_layout(httpd)
    if layout not in trees.LAYOUTS:
        raise BadInput(f"unknown layout {layout!r}", hint="layouts: " + ", ".join(trees.LAYOUTS))
    style = resolve_style(httpd, module, prefer)
    release = catalogue.load().get(str(httpd.version))
    has_ssl = httpd.has_module("ssl")
    if case is not None and not has_ssl:
        raise BadInput(f"{httpd.binary} has no mod_ssl: this setup needs it")
    backend_tls = case is not None and case.backend_tls
    front_tls = case is not None and case.front_tls
    sizing = stock = None
    if max_websockets is not None:
        sizing, stock = verify_sizing(httpd, layout, max_websockets, handoff, mpm)
    h2_off = h2_unavailable(httpd, layout, style, mpm)
    if h2 and h2_off:
        raise BadInput(f"no WebSockets over HTTP/2 here: {h2_off}")
    h2_off = h2_off or ("not asked for" if h2 is False else "")
    progress.step("starting the backends")
    with contextlib.ExitStack() as stack:
        if sizing is not None:
            needed = CAPACITY_FDS_PER_WEBSOCKET * sizing.websockets + 256
            limit = stack.enter_context(raised_open_files(max(needed, sizing.open_files)))
            handed = " handed off" if sizing.handoff else ""
            sizing_note = f"{capacity.sized(sizing, limit).summary()}, sized for {sizing.websockets} WebSockets"
            sizing_note += f"{handed} + {sizing.http_reserve} for HTTP"
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="apachews-verify-")))
        scratch.chmod(0o711)  # the server's User reaches the tree's run dir (the handoff keeper's socket)
        tls_ca = tls_key = None
        tls_context = None
        if has_ssl:
            tls_ca, tls_key = make_certificate(scratch)
            tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls_context.load_cert_chain(tls_ca, tls_key)
        members = [stack.enter_context(EchoServer("echo", tls=tls_context if backend_tls else None)) for _ in range(2)]
        backends = {mode: stack.enter_context(EchoServer(mode)) for mode in ("refuse-200", "refuse-403", "die")}
        holding = stack.enter_context(HoldingBackend())
        if tls_context is not None:
            backends["tls"] = stack.enter_context(EchoServer("echo", tls=tls_context))
        app_backends = _preset_backends(preset, members)
        try:
            rendering = config.render(
                preset,
                apache=release,
                distro=trees.rendering_distro(layout),
                backends=app_backends,
                prefer=style,
                sizing=sizing,
                handoff=handoff,
                h2=not h2_off,
                tls=backend_tls,
                backend_ca=str(tls_ca) if backend_tls else None,
                vhost="tls" if front_tls else "server",
            )
        except BadInput as error:
            raise CannotRender(error.message, hint=error.hint) from None
        nohalfclose = "SetEnv proxy-nohalfclose 1" in rendering.proxy_conf
        routes = verify_routes({**backends, "hold": holding}, style, tls_ca, nohalfclose)
        if not h2_off:
            routes = H2_PROTOCOLS + routes
        port = free_port()
        tls_port = free_port() if has_ssl else None
        progress.step(f"starting Apache {httpd.version} ({httpd.binary}), {layout} layout")
        if layout == "bare":
            files = with_verify_routes(rendering.files, routes, release.family)
            files = edit(files) if edit else files
            sized = rendering.capacity_file in files
            root = stack.enter_context(
                ServerRoot(
                    httpd, files, port=port, extra_modules={"proxy_wstunnel": module} if module else None, mpm=mpm
                )
            )
            server = root.server
            tls_port = None  # the lab layout has no TLS front
        else:
            if edit is not None:
                rendering.files = edit(rendering.files)
                rendering.proxy_conf = edit({"proxy": rendering.proxy_conf})["proxy"]
                routes = edit({"routes": routes})["routes"]
            sized = rendering.capacity_file in rendering.files
            additions = trees.Additions(
                routes=routes,
                first=KEEP_REWRITES_OFF,
                body_timeout=IDLE_BODY_TIMEOUT,
                tls_port=tls_port,
                tls_cert=tls_ca,
                tls_key=tls_key,
                modules=["ssl"] if tls_port else [],
                mpm=mpm,
            )
            tree = scratch / "tree"
            tree.mkdir()
            server = trees.build(layout, tree, httpd, rendering, module, port, additions)
        stack.callback(server.stop)
        syntax = server.start()
        target = Target(
            port,
            members[0],
            backends["refuse-200"],
            backends["refuse-403"],
            backends["die"],
            server.error_log,
            rendering.websocket_paths[0],
            rendering=rendering,
            members=members[: len(app_backends)],
            syntax=syntax,
            tls_echo=backends.get("tls"),
            tls_port=tls_port,
            tls_ca=tls_ca,
            front_tls=front_tls,
            die_path=f"{VERIFY_PREFIX}/die",
            refuse_paths={200: f"{VERIFY_PREFIX}/refuse-200", 403: f"{VERIFY_PREFIX}/refuse-403"},
            max_websockets=max_websockets,
            holding=holding,
            holding_path=f"{VERIFY_PREFIX}/hold",
            h2=h2_off,
        )
        if sizing is not None and stock is not None:
            target.server_capacity = sizing_note if sized else f"{stock.summary()}, not sized"
        yield Proxy(target, server, style.value, layout, sizing)


def h2_unavailable(httpd: Httpd, layout: str, style: Tunnelling, mpm: str | None = None) -> str:
    """Why verify's server cannot carry WebSockets over HTTP/2, or "" when it can: mod_http2 2.4.58+ (H2WebSockets),
    a stock tunnel (mod_http2 hands each stream to mod_proxy's tunnel), and an MPM mod_http2 runs under."""
    release = catalogue.load().get(str(httpd.version))
    if not tunnelling.has_h2_websockets(release):
        return f"Apache {httpd.version} has no H2WebSockets (from {tunnelling.H2_WEBSOCKETS_SINCE})"
    if not httpd.has_module("http2"):
        return f"{httpd.binary} has no mod_http2"
    if style is Tunnelling.APACHEWS:
        return "the apachews module tunnels on the client's TCP socket, not on HTTP/2 streams"
    if trees.layout_mpm(layout, httpd, mpm) == "prefork":
        return "mod_http2 does not serve HTTP/2 under the prefork MPM"
    return ""


def setup_names(spec: str) -> list[str]:
    """`all` (every preset, then the named TLS cases) or a comma-separated list of presets and cases."""
    if spec == "all":
        return [preset.name for preset in config.list_presets()] + list(CASES)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    return [name if name in CASES else config.get_preset(name).name for name in names]


def check_names(checks: Sequence[str] | None) -> list[str]:
    names = list(checks or CHECKS)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        raise BadInput(f"unknown check(s): {', '.join(unknown)}", hint="checks: " + ", ".join(CHECKS))
    return names


def run(
    httpd: Httpd,
    *,
    preset: str = "generic",
    module: Path | None = None,
    checks: Sequence[str] | None = None,
    prefer: str | Tunnelling | None = None,
    layout: str | None = None,
    edit: Edit | None = None,
    progress: Progress | None = None,
    max_websockets: int | None = None,
    handoff: bool = False,
    h2: bool | None = None,
    mpm: str | None = None,
) -> VerifyReport:
    progress = progress or Progress()
    case = CASES.get(preset)
    names = check_names(checks or (case.checks if case else None))
    if case is not None and not httpd.has_module("ssl"):
        report = VerifyReport(
            str(httpd.version), str(httpd.binary), str(module) if module else None, "-", preset=preset
        )
        report.checks = [Check("tls", True, None, "", "skipped: this Apache has no mod_ssl", skipped=True)]
        return report
    with running_proxy(
        httpd,
        preset=preset,
        module=module,
        prefer=prefer,
        layout=layout,
        edit=edit,
        progress=progress,
        max_websockets=max_websockets,
        handoff=handoff,
        h2=h2,
        mpm=mpm,
    ) as proxy:
        report = VerifyReport(
            str(httpd.version),
            str(httpd.binary),
            str(module) if module else None,
            proxy.tunnelling,
            preset=preset,
            layout=proxy.layout,
        )
        if proxy.sizing is not None:
            report.capacity = {**proxy.sizing.to_dict(), "server": proxy.target.server_capacity}
        report.checks = asyncio.run(run_checks(proxy.target, names, progress))
        proxy.server.stop()  # flush the error log before it is read and kept
        if not report.ok:
            report.error_log = _keep_log(proxy.server.error_log)
    return report


def run_presets(
    httpd: Httpd,
    presets: Sequence[str],
    *,
    module: Path | None = None,
    checks: Sequence[str] | None = None,
    prefer: str | Tunnelling | None = None,
    layout: str | None = None,
    progress: Progress | None = None,
    max_websockets: int | None = None,
    handoff: bool = False,
    mpm: str | None = None,
) -> list[VerifyReport]:
    """One report per preset; a preset the release cannot render is a failed report that says why."""
    check_names(checks)
    reports = []
    for preset in presets:
        try:
            reports.append(
                run(
                    httpd,
                    preset=preset,
                    module=module,
                    checks=checks,
                    prefer=prefer,
                    layout=layout,
                    progress=progress,
                    max_websockets=max_websockets,
                    handoff=handoff,
                    mpm=mpm,
                )
            )
        except CannotRender as error:
            report = VerifyReport(
                str(httpd.version),
                str(httpd.binary),
                str(module) if module else None,
                "-",
                preset=preset,
                layout=layout or trees.default_layout(httpd),
            )
            report.checks = [Check("config", False, None, "", f"{error.message} ({error.hint})")]
            reports.append(report)
    return reports


def summary(reports: Sequence[VerifyReport]) -> str:
    """One line per preset: passed/total and the failing checks."""
    width = max([12, *(len(r.preset) for r in reports)])
    rows = [f"{'preset':<{width}} {'layout':<7} {'tunnelling':<13} {'result':<7} failing"]
    for r in reports:
        ran = [c for c in r.checks if not c.skipped]
        failing = ", ".join(c.name for c in ran if not c.passed) or "-"
        result = f"{sum(c.passed for c in ran)}/{len(ran)}"
        rows.append(f"{r.preset:<{width}} {r.layout:<7} {r.tunnelling:<13} {result:<7} {failing}")
    return "\n".join(rows)
