"""`apachews verify`: a real Apache in front of the bundled echo backend, driven by a real client.

One run: start the echo backends, render the proxy config for the Apache at hand (apachews.config), start
that Apache in a throwaway ServerRoot (apachews.httpd), run the named checks, stop everything.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from apachews import config, sources
from apachews.echo import MAX_MESSAGE, EchoServer
from apachews.errors import BadInput
from apachews.httpd import Httpd, ServerRoot
from apachews.progress import Progress

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
RESET_CLIENTS = 100
RESET_LIMIT_SECONDS = 1.0
AFTER_RESET_HANDSHAKES = 20
CONCURRENT_CLIENTS = 50
DIE_LIMIT_SECONDS = 1.0
PLAIN_GET_TIMEOUT = 5.0
CRASH_MARKERS = ("Segmentation fault", "exit signal", "AH00052")  # AH00052: child pid exit signal


@dataclass
class Check:
    name: str
    passed: bool
    figure: float | None = None
    unit: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "passed": self.passed,
            "figure": self.figure,
            "unit": self.unit,
            "detail": self.detail,
        }


@dataclass
class VerifyReport:
    apache: str
    httpd: str
    module: str | None
    tunnelling: str
    checks: list[Check] = field(default_factory=list)
    error_log: Path | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {
            "apache": self.apache,
            "httpd": self.httpd,
            "module": self.module,
            "tunnelling": self.tunnelling,
            "passed": sum(check.passed for check in self.checks),
            "total": len(self.checks),
            "checks": [check.to_dict() for check in self.checks],
            "error_log": str(self.error_log) if self.error_log else None,
        }

    def table(self) -> str:
        rows = [f"{'check':<20} {'result':<6} {'figure':>12}  detail"]
        for check in self.checks:
            figure = f"{check.figure:.3f} {check.unit}" if check.figure is not None else ""
            result = "pass" if check.passed else "FAIL"
            rows.append(f"{check.name:<20} {result:<6} {figure:>12}  {check.detail}")
        rows.append(f"{sum(c.passed for c in self.checks)}/{len(self.checks)} checks passed")
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

    def ws(self, path: str | None = None) -> str:
        return f"ws://127.0.0.1:{self.apache_port}{path or self.ws_path}"


# -- raw-socket helpers (for what a library client hides: the accept value, resets) -----------------------
def _raw_handshake(port: int, path: str, timeout: float = 5.0) -> tuple[socket.socket, int, dict[str, str], str]:
    """Send an upgrade request by hand; return the socket, status, headers and the key sent."""
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
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
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


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
    return connect(url, max_size=MAX_MESSAGE, compression=None, open_timeout=10, close_timeout=5)


# -- the checks ---------------------------------------------------------------------------------------------
async def check_handshake(t: Target) -> Check:
    start = time.monotonic()
    sock, status, headers, key = await asyncio.to_thread(_raw_handshake, t.apache_port, t.ws_path)
    elapsed = time.monotonic() - start
    _reset(sock)
    accept_ok = headers.get("sec-websocket-accept") == expected_accept(key)
    return Check(
        "handshake",
        status == 101 and accept_ok,
        elapsed * 1000,
        "ms",
        f"status {status}, Sec-WebSocket-Accept {'correct' if accept_ok else 'WRONG or missing'}",
    )


async def _echo_once(t: Target, message: str | bytes) -> tuple[bool, float, str]:
    async with await _client(t.ws()) as ws:
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


def _echo_check(name: str, message: str | bytes) -> Callable[[Target], Awaitable[Check]]:
    async def run(t: Target) -> Check:
        ok, elapsed, detail = await _echo_once(t, message)
        return Check(name, ok, elapsed * 1000, "ms", detail)

    return run


async def check_fragmented(t: Target) -> Check:
    parts = ["frag-", "ment-", "ed"]
    async with await _client(t.ws()) as ws:
        await ws.send(iter(parts))
        answer = await asyncio.wait_for(ws.recv(), 10)
    return Check("fragmented", answer == "".join(parts), None, "", f"{len(parts)} fragments, got {answer!r}")


async def check_ping(t: Target) -> Check:
    async with await _client(t.ws()) as ws:
        pong = await ws.ping(b"apachews")
        latency = await asyncio.wait_for(pong, 5)
    return Check("ping-pong", True, latency * 1000, "ms", "pong received")


async def check_close_code(t: Target) -> Check:
    async with await _client(t.ws()) as ws:
        await ws.close(code=4001, reason="apachews")
    code = ws.close_code  # the code in the close frame the peer sent back
    return Check("close-code", code == 4001, None, "", f"sent 4001, peer answered {code}")


async def check_concurrent(t: Target) -> Check:
    async def one(index: int) -> bool:
        ok, _, _ = await _echo_once(t, f"client {index}")
        return ok

    start = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(CONCURRENT_CLIENTS)), return_exceptions=True)
    elapsed = time.monotonic() - start
    good = sum(result is True for result in results)
    return Check(
        f"concurrent-{CONCURRENT_CLIENTS}",
        good == CONCURRENT_CLIENTS,
        elapsed,
        "s",
        f"{good}/{CONCURRENT_CLIENTS} echoed",
    )


async def check_abrupt_disconnect(t: Target) -> Check:
    baseline = await _wait_until(lambda: t.echo.open_connections() == 0, 5)
    if baseline is None:
        return Check("abrupt-disconnect", False, None, "", "backend sockets still open before the test")

    def open_and_reset() -> int:
        opened = []
        for _ in range(RESET_CLIENTS):
            sock, status, _, _ = _raw_handshake(t.apache_port, t.ws_path)
            opened.append((sock, status))
        for sock, _ in opened:
            _reset(sock)
        return sum(status == 101 for _, status in opened)

    upgraded = await asyncio.to_thread(open_and_reset)
    drained = await _wait_until(lambda: t.echo.open_connections() == 0, 10)
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
    still_open = t.echo.open_connections()
    drain = f"backend drained in {drained:.3f} s" if drained is not None else f"{still_open} still open after 10 s"
    return Check(
        "abrupt-disconnect",
        passed,
        drained,
        "s",
        f"{upgraded}/{RESET_CLIENTS} upgraded then reset; {drain}; "
        f"{good_after}/{AFTER_RESET_HANDSHAKES} handshakes after",
    )


def _refuse_check(name: str, path: str, status: int, backend: Callable[[Target], EchoServer]):
    async def run(t: Target) -> Check:
        def exchange() -> tuple[int, bytes]:
            sock, got, _, _ = _raw_handshake(t.apache_port, path)
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
        return Check(
            name,
            got == status and sessions == 0,
            None,
            "",
            f"client got {got} (expected {status}); backend WebSocket sessions: {sessions}",
        )

    return run


async def check_backend_dies(t: Target) -> Check:
    async with await _client(t.ws("/ws-die")) as ws:
        await ws.send("hello")
        await asyncio.wait_for(ws.recv(), 5)
        start = time.monotonic()
        await ws.send("die")
        try:
            await asyncio.wait_for(ws.recv(), 5)
            return Check("backend-dies", False, None, "", "got a message after the backend died")
        except ConnectionClosed:
            elapsed = time.monotonic() - start
        except asyncio.TimeoutError:
            return Check("backend-dies", False, 5.0, "s", "no close seen within 5 s")
    return Check("backend-dies", elapsed < DIE_LIMIT_SECONDS, elapsed, "s", "client saw the close")


async def check_plain_get(t: Target) -> Check:
    def get() -> str:
        with socket.create_connection(("127.0.0.1", t.apache_port), timeout=PLAIN_GET_TIMEOUT) as sock:
            sock.sendall(f"GET {t.ws_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            return sock.recv(256).split(b"\r\n", 1)[0].decode("latin-1")

    start = time.monotonic()
    try:
        line = await asyncio.to_thread(get)
    except OSError as error:
        return Check("plain-get", False, None, "", f"no answer within {PLAIN_GET_TIMEOUT:.0f} s: {error}")
    return Check("plain-get", line.startswith("HTTP/"), time.monotonic() - start, "s", line or "empty answer")


async def check_error_log(t: Target) -> Check:
    text = t.error_log.read_text(errors="replace") if t.error_log.exists() else ""
    bad = [line for line in text.splitlines() if any(marker in line for marker in CRASH_MARKERS)]
    return Check("error-log-clean", not bad, len(bad), "lines", bad[0][:120] if bad else "no crash lines")


CHECKS: dict[str, Callable[[Target], Awaitable[Check]]] = {
    "handshake": check_handshake,
    "echo-text": _echo_check("echo-text", "hello through Apache"),
    "echo-binary": _echo_check("echo-binary", bytes(range(256)) * 4),
    "echo-empty": _echo_check("echo-empty", b""),
    "echo-1mib": _echo_check("echo-1mib", os.urandom(2**20)),
    "fragmented": check_fragmented,
    "ping-pong": check_ping,
    "close-code": check_close_code,
    f"concurrent-{CONCURRENT_CLIENTS}": check_concurrent,
    "abrupt-disconnect": check_abrupt_disconnect,
    "refuse-200": _refuse_check("refuse-200", "/ws-refuse200", 200, lambda t: t.refuse_200),
    "refuse-403": _refuse_check("refuse-403", "/ws-refuse403", 403, lambda t: t.refuse_403),
    "backend-dies": check_backend_dies,
    "plain-get": check_plain_get,
    "error-log-clean": check_error_log,  # last: it reads what the others left in the log
}


async def run_checks(target: Target, names: Sequence[str], progress: Progress) -> list[Check]:
    results = []
    for name in names:
        progress.step(f"check {name}")
        try:
            results.append(await asyncio.wait_for(CHECKS[name](target), 60))
        except Exception as error:  # a check that blows up is a failed check, not a crashed run
            results.append(Check(name, False, None, "", f"{type(error).__name__}: {error}"))
    return results


# -- configuration -----------------------------------------------------------------------------------------
def proxy_snippets(
    apache: str, preset: str, backends: dict[str, EchoServer], prefer: str | None
) -> tuple[dict[str, str], str, str]:
    """The rendered preset for /ws, plus the routes to the refuse/die backends in the same style."""
    rendering = config.render(
        preset, apache=apache, distro="generic", backends=[backends["echo"].url], path="/ws", prefer=prefer
    )
    upgrade = "proxy_wstunnel" not in rendering.modules
    lines = ["# apachews verify: routes to the misbehaving backends"]
    for path, server in (
        ("/ws-refuse200", backends["refuse-200"]),
        ("/ws-refuse403", backends["refuse-403"]),
        ("/ws-die", backends["die"]),
    ):
        if upgrade:
            lines.append(f"ProxyPass {path} http://127.0.0.1:{server.port}/ upgrade=websocket")
        else:
            lines.append(f"ProxyPass {path} ws://127.0.0.1:{server.port}/")
    files = dict(rendering.files)
    # mod_proxy matches ProxyPass in order; /ws would swallow /ws-die, so these go first.
    files = {"00-verify-routes.conf": "\n".join(lines) + "\n", **files}
    tunnelling = "mod_proxy_http upgrade=websocket" if upgrade else "mod_proxy_wstunnel"
    return files, tunnelling, rendering.websocket_paths[0]


@contextlib.contextmanager
def _backends() -> Iterator[dict[str, EchoServer]]:
    with contextlib.ExitStack() as stack:
        yield {mode: stack.enter_context(EchoServer(mode)) for mode in ("echo", "refuse-200", "refuse-403", "die")}


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
    root: ServerRoot
    tunnelling: str


@contextlib.contextmanager
def running_proxy(
    httpd: Httpd,
    *,
    preset: str = "generic",
    module: Path | None = None,
    prefer: str | None = None,
    progress: Progress | None = None,
) -> Iterator[Proxy]:
    """Start the echo backends and Apache in front of them; stop and remove everything on exit."""
    progress = progress or Progress()
    if module is not None:
        module = Path(module).resolve()
        if not module.is_file():
            raise BadInput(f"no module at {module}")
        prefer = prefer or "wstunnel"  # a given mod_proxy_wstunnel.so must be the one tunnelling
    progress.step("starting the echo backends")
    with _backends() as backends:
        snippets, tunnelling, ws_path = proxy_snippets(str(httpd.version), preset, backends, prefer)
        extra = {"proxy_wstunnel": module} if module else None
        progress.step(f"starting Apache {httpd.version} ({httpd.binary})")
        with ServerRoot(httpd, snippets, extra_modules=extra) as root:
            root.start()
            target = Target(
                root.port,
                backends["echo"],
                backends["refuse-200"],
                backends["refuse-403"],
                backends["die"],
                root.error_log,
                ws_path,
            )
            yield Proxy(target, root, tunnelling)


def run(
    httpd: Httpd,
    *,
    preset: str = "generic",
    module: Path | None = None,
    checks: Sequence[str] | None = None,
    prefer: str | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    progress = progress or Progress()
    names = list(checks or CHECKS)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        raise BadInput(f"unknown check(s): {', '.join(unknown)}", hint="checks: " + ", ".join(CHECKS))
    with running_proxy(httpd, preset=preset, module=module, prefer=prefer, progress=progress) as proxy:
        report = VerifyReport(str(httpd.version), str(httpd.binary), str(module) if module else None, proxy.tunnelling)
        report.checks = asyncio.run(run_checks(proxy.target, names, progress))
        proxy.root.stop()  # flush the error log before it is read and kept
        if not report.ok:
            report.error_log = _keep_log(proxy.root.error_log)
    return report
