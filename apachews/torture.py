"""`apachews torture`: a real Apache in front of misbehaving raw-socket backends, case by case.

Each case drives one protocol corner or abuse pattern through the proxy and returns a `CaseResult` (a
`verify.Check` with a figure): a 101 without `Upgrade`, a wrong `Sec-WebSocket-Accept`, `100 Continue`
before the 101, 120 headers, POST with Upgrade, a 100 MiB refusal, a refusal that never ends read slowly,
a backend that never answers, a flood in one direction, half-close, clients that vanish (FIN or RST) from a
backend that never closes on EOF, TLS records cut in TCP pieces, reset storms, frames pipelined before the
101, slowloris, smuggling with a refused upgrade, mod_reqtimeout after the 101, a soak. The same cases run
against several targets (stock 2.4 in both styles, the apachews module, a built 2.2 httpd) and `side_by_side`
puts them in one table.

Backends are plain threads on 127.0.0.1 speaking just enough HTTP/WebSocket to misbehave on purpose; the
well-behaved echo is `apachews.echo.EchoServer`. Cases are blocking socket code with timeouts everywhere.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from apachews import config, module
from apachews.catalogue import Version
from apachews.dist import Dist
from apachews.echo import EchoServer, HoldingBackend
from apachews.errors import BadInput, JobFailed
from apachews.httpd import Httpd, ServerRoot, free_port
from apachews.progress import Progress
from apachews.verify import (
    BROWSER_CIPHERS,
    CRASH_MARKERS,
    ORPHAN_CLIENTS,
    ORPHAN_SLACK_SECONDS,
    ORPHAN_WAIT_SECONDS,
    Check,
    VerifyReport,
    _raw_handshake,
    _reset,
    expected_accept,
    make_certificate,
    orphans,
)

MIB = 2**20
RSS_BOUND = 32 * MIB  # growth of the children's summed RSS a streaming proxy stays under
FIRST_BYTE_LIMIT = 1.0  # seconds to the first body byte of a refused upgrade
STARVATION_LIMIT = 1.0  # worst delay of the quiet direction during a flood (stock: ~0.3 s)
SILENT_TIMEOUT = 2  # ProxyPass timeout= on the route whose backend never answers
REQTIMEOUT_BODY = 2  # RequestReadTimeout body= on the mod_reqtimeout listener
CASE_TIMEOUT = 180.0
TICK = 0.02  # the ticker backend's period


@dataclass
class Settings:
    """How hard the heavy cases push. The defaults keep a run short; `heavy()` is full size."""

    big_body: int = 32 * MIB
    resets: int = 100
    soak_clients: int = 20
    soak_seconds: float = 5.0
    flood_seconds: float = 3.0
    slow_seconds: float = 4.0

    @classmethod
    def heavy(cls) -> Settings:
        return cls(big_body=100 * MIB, resets=1000, soak_clients=200, soak_seconds=60.0, flood_seconds=10.0)


class CaseResult(Check):
    """A case's outcome: a `verify.Check` (pass/fail, figure, detail; `skipped` when the target lacks what
    the case needs, e.g. mod_ssl)."""


def skipped(name: str, why: str) -> CaseResult:
    return CaseResult(name, True, None, "", f"skipped: {why}", skipped=True)


@dataclass
class TargetReport(VerifyReport):
    """One target's results; `label` names the column in the side-by-side table."""

    label: str = ""

    @property
    def ok(self) -> bool:
        ran = [check for check in self.checks if not check.skipped]
        return bool(ran) and all(check.passed for check in ran)

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, **super().to_dict()}


# -- WebSocket frames and a buffered stream (plain or TLS) ----------------------------------------------
def ws_frame(payload: bytes, opcode: int = 0x2, mask: bool = True) -> bytes:
    """One final frame; masked as a client must, unmasked as a server must."""
    size = len(payload)
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 2**16:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = secrets.token_bytes(4)
    return head + key + _unmask(payload, key)


def _unmask(payload: bytes, key: bytes) -> bytes:
    # XOR with the key repeated: one big-int operation instead of a Python loop per byte.
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def _key_header() -> str:
    return base64.b64encode(secrets.token_bytes(16)).decode()


class Stream:
    """A socket with a read buffer: HTTP heads and WebSocket frames, whatever the TCP pieces."""

    def __init__(self, sock: socket.socket, client: bool = True) -> None:
        self.sock = sock
        self.buf = b""
        self.client = client  # a client answers the backend's pings (websockets pings every 20 s)

    def _recv(self) -> bytes:
        return self.sock.recv(65536)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def fill(self) -> bool:
        chunk = self._recv()
        self.buf += chunk
        return bool(chunk)

    def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            if not self.fill():
                raise ConnectionError(f"peer closed after {len(self.buf)} of {size} bytes")
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def read_head(self) -> tuple[int, dict[str, str], str]:
        """Status (or 0 for a request), headers (lower-case names; repeated ones joined) and first line."""
        while b"\r\n\r\n" not in self.buf:
            if not self.fill():
                raise ConnectionError(f"peer closed before the end of the head ({len(self.buf)} bytes)")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        status = int(parts[1]) if lines[0].startswith("HTTP/") and len(parts) > 1 and parts[1].isdigit() else 0
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
        return status, headers, lines[0]

    def read_frame(self) -> tuple[int, bytes]:
        while True:
            opcode, payload = self._read_one_frame()
            if not self.client or opcode not in (0x9, 0xA):
                return opcode, payload
            if opcode == 0x9:
                self.send(ws_frame(payload, 0xA))

    def _read_one_frame(self) -> tuple[int, bytes]:
        first, second = self.read_exact(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self.read_exact(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self.read_exact(8))[0]
        key = self.read_exact(4) if second & 0x80 else b""
        payload = self.read_exact(size)
        return first & 0x0F, _unmask(payload, key) if key else payload

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class TlsStream(Stream):
    """TLS through memory BIOs, so the test decides how the encrypted bytes are cut into TCP pieces."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the certificate is made at test time
        context.set_ciphers(BROWSER_CIPHERS)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        # No SNI (an IP literal), as a browser opening https://127.0.0.1/: mod_ssl answers 400 to an SNI name that
        # differs from the Host header.
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed during the TLS handshake") from None
                self.incoming.write(data)
        self._flush()

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def send_in_pieces(self, data: bytes, pieces: int, gap: float) -> int:
        """Encrypt `data` (one record up to 16 KiB), then send the ciphertext in `pieces` TCP writes."""
        self.tls.write(data)
        wire = self.outgoing.read()
        step = -(-len(wire) // pieces)
        for offset in range(0, len(wire), step):
            self.sock.sendall(wire[offset : offset + step])
            time.sleep(gap)
        return len(wire)

    def _recv(self) -> bytes:
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                if not data:
                    return b""
                self.incoming.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""


def upgrade_request(path: str, port: int, key: str, method: str = "GET", extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def open_ws(
    port: int,
    path: str,
    *,
    method: str = "GET",
    extra: str = "",
    tail: bytes = b"",
    tls: bool = False,
    timeout: float = 10.0,
) -> tuple[Stream, int, dict[str, str], str]:
    """Connect, send an upgrade request (plus `tail` in the same write), read the answer's head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        stream: Stream = TlsStream(sock) if tls else Stream(sock)
        key = _key_header()
        stream.send(upgrade_request(path, port, key, method, extra) + tail)
        status, headers, _ = stream.read_head()
    except BaseException:
        sock.close()
        raise
    return stream, status, headers, key


def _echo(stream: Stream, payload: bytes) -> bool:
    stream.send(ws_frame(payload))
    opcode, answer = stream.read_frame()
    return opcode == 0x2 and answer == payload


# -- Apache children's memory ------------------------------------------------------------------------------
def children_rss(parent: int) -> int:
    """Summed VmRSS (bytes) of the processes whose parent is `parent` (the httpd children)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s*(\d+)", status, re.MULTILINE)
        rss = re.search(r"^VmRSS:\s*(\d+) kB", status, re.MULTILINE)
        if ppid and rss and int(ppid.group(1)) == parent:
            total += int(rss.group(1)) * 1024
    return total


class RssSampler:
    """Samples children_rss every 50 ms in a thread; `growth` is the peak over the first sample."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.baseline = children_rss(parent)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, children_rss(self.parent))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.peak = max(self.peak, children_rss(self.parent))


# -- misbehaving backends ----------------------------------------------------------------------------------
Behaviour = Callable[["RawBackend", Stream, str, dict[str, str]], None]


class RawBackend:
    """A TCP server on 127.0.0.1 that reads one request head per connection and hands it to `behaviour`.

    It records every request line it saw (`requests`), so cases can tell what the proxy sent.
    """

    def __init__(self, name: str, behaviour: Behaviour) -> None:
        self.name = name
        self.behaviour = behaviour
        self.requests: list[str] = []
        self.notes: list[str] = []  # what a behaviour observed (EOF seen, bytes sent, ...)
        self.stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name=f"backend-{name}", daemon=True)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> RawBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.close()

    def reset(self) -> None:
        """Forget what earlier cases left (requests, notes, the stop flag)."""
        self.requests.clear()
        self.notes.clear()
        self.stop.clear()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(30)
        with self._lock:
            self._open.add(sock)
        stream = Stream(sock, client=False)
        try:
            _, headers, line = stream.read_head()
            self.requests.append(line)
            self.behaviour(self, stream, line, headers)
        except OSError:
            pass  # clients and Apache hang up on purpose in these cases
        finally:
            with self._lock:
                self._open.discard(sock)
            stream.close()


def _switch(stream: Stream, headers: dict[str, str], upgrade: bool = True, accept: str | None = None) -> None:
    answer = "HTTP/1.1 101 Switching Protocols\r\n"
    if upgrade:
        answer += "Upgrade: websocket\r\n"
    accept = accept or expected_accept(headers.get("sec-websocket-key", ""))
    answer += f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    stream.send((answer + "\r\n").encode())


def _frame_echo(backend: RawBackend, stream: Stream) -> None:
    """Echo frames (unmasked back) until a close frame or EOF."""
    while not backend.stop.is_set():
        opcode, payload = stream.read_frame()
        if opcode == 0x8:
            stream.send(ws_frame(payload, 0x8, mask=False))
            return
        stream.send(ws_frame(payload, opcode, mask=False))


def b_no_upgrade(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    _switch(stream, headers, upgrade=False)
    _frame_echo(backend, stream)


def b_wrong_accept(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    _switch(stream, headers, accept=expected_accept("not the client's key"))
    _frame_echo(backend, stream)


def b_interim(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    time.sleep(0.05)  # a separate TCP piece, as a real backend would send it
    _switch(stream, headers)
    _frame_echo(backend, stream)


def b_many_headers(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    filler = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(120))
    accept = expected_accept(headers.get("sec-websocket-key", ""))
    stream.send(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{filler}\r\n"
        ).encode()
    )
    _frame_echo(backend, stream)


def b_switch_echo(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    _switch(stream, headers)
    _frame_echo(backend, stream)


def _stream_body(backend: RawBackend, stream: Stream, head: str, size: int | None) -> None:
    stream.send(head.encode())
    chunk = b"\0" * 65536
    sent = 0
    try:
        while (size is None or sent < size) and not backend.stop.is_set():
            piece = chunk if size is None else chunk[: min(len(chunk), size - sent)]
            stream.send(piece)
            sent += len(piece)
    finally:
        backend.notes.append(f"sent {sent}")


def b_refuse_big(size: int) -> Behaviour:
    def run(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
        _stream_body(backend, stream, head, size)

    return run


def b_refuse_forever(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    _stream_body(backend, stream, head, None)


def b_silent(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    stream.sock.settimeout(60)
    while not backend.stop.is_set() and stream.fill():
        pass


def b_ticker(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    """Discard what the client floods in; send a timestamp frame every TICK seconds until EOF."""
    _switch(stream, headers)
    done = threading.Event()

    def drain() -> None:
        received = 0
        with contextlib.suppress(OSError):
            while True:
                chunk = stream.sock.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
        backend.notes.append(f"received {received}")
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    with contextlib.suppress(OSError):
        while not done.wait(TICK) and not backend.stop.is_set():
            stream.send(ws_frame(struct.pack("!d", time.monotonic()), mask=False))


def b_half_close(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    """Read until the client's FIN arrives (or 3 s), then answer: data sent after the client stopped."""
    _switch(stream, headers)
    stream.sock.settimeout(3)
    try:
        while stream.fill():
            pass
        backend.notes.append("eof")
    except TimeoutError:
        backend.notes.append("no eof within 3 s")
    time.sleep(0.2)
    stream.send(ws_frame(b"after-fin", 0x1, mask=False))
    stream.sock.shutdown(socket.SHUT_WR)
    time.sleep(0.5)


def b_http_keepalive(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    """Refuse every upgrade with a short 200, reading each request's body as HTTP/1.1 frames it, so a
    smuggled request hidden in a body shows up in `requests` when the proxy lets it through."""
    stream.sock.settimeout(2)
    while True:
        started = time.monotonic()
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    while b"\r\n" not in stream.buf and stream.fill():
                        pass
                    size_line, _, stream.buf = stream.buf.partition(b"\r\n")
                    size = int(size_line.split(b";")[0] or b"0", 16)
                    stream.read_exact(size + 2 if size else 0)
                    if size == 0:
                        while b"\r\n" not in stream.buf and stream.fill():
                            pass
                        stream.buf = stream.buf.partition(b"\r\n")[2]
                        break
            elif headers.get("content-length"):
                stream.read_exact(int(headers["content-length"]))
        except (TimeoutError, ValueError, ConnectionError) as error:
            backend.notes.append(
                f"body never came whole ({type(error).__name__} after {time.monotonic() - started:.1f} s)"
            )
        stream.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nrefused\n")
        try:
            _, headers, line = stream.read_head()
        except (OSError, ConnectionError):
            return
        backend.requests.append(line)


BACKENDS: dict[str, Behaviour] = {
    "no-upgrade": b_no_upgrade,
    "wrong-accept": b_wrong_accept,
    "interim": b_interim,
    "headers": b_many_headers,
    "switch": b_switch_echo,
    "forever": b_refuse_forever,
    "silent": b_silent,
    "ticker": b_ticker,
    "half-close": b_half_close,
    "smuggle": b_http_keepalive,
}


# -- the running target ------------------------------------------------------------------------------------
@dataclass
class TargetSpec:
    """An Apache and how it tunnels: `style` is "http-upgrade" (mod_proxy_http) or "wstunnel" (ws://)."""

    label: str
    httpd: Httpd
    style: str
    module: Path | None = None
    fallback_off: bool = False  # stock 2.4.47+: ProxyWebsocketFallbackToProxyHttp Off
    mpm: str | None = None
    handoff: bool = False  # the apachews module: ProxyWebsocketHandoff On (tunnels in the child's event loop)


@dataclass
class Context:
    spec: TargetSpec
    port: int
    tls_port: int | None
    reqtimeout_port: int | None
    echo: EchoServer
    backends: dict[str, RawBackend]
    parent_pid: int
    error_log: Path
    settings: Settings
    holding: HoldingBackend  # never closes on EOF (broadwayd): the orphan cases' backend

    def path(self, backend: str) -> str:
        return f"/t/{backend}"


def _routes(spec: TargetSpec, ports: dict[str, int]) -> str:
    lines = ["# apachews torture: one route per misbehaving backend"]
    for name, port in ports.items():
        timeout = f" timeout={SILENT_TIMEOUT}" if name == "silent" else ""
        if spec.style == "http-upgrade":
            lines.append(f"ProxyPass /t/{name} http://127.0.0.1:{port}/ upgrade=websocket{timeout}")
        else:
            lines.append(f"ProxyPass /t/{name} ws://127.0.0.1:{port}/{timeout}")
    if spec.fallback_off:
        lines.append("ProxyWebsocketFallbackToProxyHttp Off")
    if spec.handoff:
        lines.append("ProxyWebsocketHandoff On")
    return "\n".join(lines) + "\n"


def _listeners(tls: tuple[Path, Path] | None, tls_port: int, rq_port: int | None) -> str:
    lines = []
    if tls:
        lines += [
            "<IfModule !mod_ssl.c>",
            "    LoadModule ssl_module modules/mod_ssl.so",
            "</IfModule>",
            f"Listen 127.0.0.1:{tls_port}",
            f"<VirtualHost 127.0.0.1:{tls_port}>",
            "    ServerName 127.0.0.1",
            "    SSLEngine on",
            f'    SSLCertificateFile "{tls[0]}"',
            f'    SSLCertificateKeyFile "{tls[1]}"',
            "</VirtualHost>",
        ]
    if rq_port:
        # Off on the main listener (so floods and soaks are not cut by it), strict on its own listener.
        lines += [
            "<IfModule !mod_reqtimeout.c>",
            "    LoadModule reqtimeout_module modules/mod_reqtimeout.so",
            "</IfModule>",
            "RequestReadTimeout header=0 body=0",
            f"Listen 127.0.0.1:{rq_port}",
            f"<VirtualHost 127.0.0.1:{rq_port}>",
            "    ServerName 127.0.0.1",
            f"    RequestReadTimeout header=5 body={REQTIMEOUT_BODY}",
            "</VirtualHost>",
        ]
    return "\n".join(lines) + "\n"


def _parent_pid(root: ServerRoot) -> int:
    """The httpd parent's pid, from the PidFile the ServerRoot configures (written once it runs)."""
    assert root.root is not None
    pid_file = root.root / "run" / "httpd.pid"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return int(pid_file.read_text().strip())
        time.sleep(0.05)
    raise JobFailed(f"Apache wrote no pid file at {pid_file}")


@contextlib.contextmanager
def running_target(spec: TargetSpec, settings: Settings, progress: Progress) -> Iterator[Context]:
    """Backends, a certificate and Apache with every route; everything stopped and removed on exit."""
    with contextlib.ExitStack() as stack:
        echo = stack.enter_context(EchoServer("echo"))
        backends = {name: stack.enter_context(RawBackend(name, b)) for name, b in BACKENDS.items()}
        backends["big"] = stack.enter_context(RawBackend("big", b_refuse_big(settings.big_body)))
        holding = stack.enter_context(HoldingBackend())
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="apachews-torture-")))
        has_ssl = spec.httpd.has_module("ssl")
        has_rq = spec.httpd.has_module("reqtimeout")
        tls = make_certificate(scratch) if has_ssl else None
        tls_port, rq_port = free_port(), free_port() if has_rq else None
        prefer = "wstunnel" if spec.style == "wstunnel" else "http-upgrade"
        if spec.httpd.version < Version(2, 4, 47):
            prefer = None  # only one style before 2.4.47
        rendering = config.render(
            "generic", apache=str(spec.httpd.version), backends=[echo.url], path="/ws", prefer=prefer
        )
        ports = {"echo": echo.port, "hold": holding.port, **{name: b.port for name, b in backends.items()}}
        snippets = {
            "00-torture-routes.conf": _routes(spec, ports),
            **rendering.files,
            "99-torture-listeners.conf": _listeners(tls, tls_port, rq_port),
        }
        extra = {"proxy_wstunnel": spec.module} if spec.module else None
        progress.step(f"starting Apache {spec.httpd.version} for {spec.label}")
        root = stack.enter_context(ServerRoot(spec.httpd, snippets, extra_modules=extra, mpm=spec.mpm))
        root.start()
        parent = _parent_pid(root)
        yield Context(
            spec,
            root.port,
            tls_port if tls else None,
            rq_port,
            echo,
            backends,
            parent,
            root.error_log,
            settings,
            holding,
        )


# -- the cases -----------------------------------------------------------------------------------------------
def _status_case(name: str, backend: str, want: Callable[[int, dict[str, str], str], tuple[bool, str]]):
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
                echoed = _echo(stream, b"through the tunnel")
                passed, detail = echoed, f"{detail}; echo {'ok' if echoed else 'WRONG'}"
        except (OSError, ConnectionError) as error:
            passed, detail = False, f"status {status}, then {type(error).__name__}: {error}"
        finally:
            stream.close()
        return CaseResult(name, passed, elapsed, "s", detail)

    return run


def _want_502(status: int, headers: dict[str, str], key: str) -> tuple[bool, str]:
    return status == 502, f"client got {status} (want 502: the backend's 101 lacks Upgrade: websocket)"


def _want_no_false_accept(status: int, headers: dict[str, str], key: str) -> tuple[bool, str]:
    accept = headers.get("sec-websocket-accept", "")
    if status == 502:
        return True, "client got 502 (proxy validated the accept)"
    if status == 101 and accept != expected_accept(key):
        return True, "client got 101 with the backend's wrong accept unchanged (the client rejects it)"
    return False, f"client got {status} with accept {'correct' if accept == expected_accept(key) else accept!r}"


def _want_real_101(status: int, headers: dict[str, str], key: str) -> tuple[bool, str]:
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
            stream.send(upgrade_request(ctx.path("big"), ctx.port, _key_header()))
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
            stream.send(upgrade_request(ctx.path("forever"), ctx.port, _key_header()))
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
        _reset(stream.sock)
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


def _orphan_case(name: str, how: str):
    """ORPHAN_CLIENTS clients handshake to the backend that never closes on EOF, send a frame and vanish (`how`:
    "fin" as a killed browser, "rst" as a cut network). Every backend-side socket (the backend's and Apache's,
    in any state but TIME-WAIT) must be gone within the module's fin timeout; the figure is the seconds it took
    (verify.ORPHAN_WAIT_SECONDS when some never went), the detail what was left and how many Apache processes
    still held it."""

    def run(ctx: Context) -> CaseResult:
        eofs = ctx.holding.eofs
        found = asyncio.run(orphans(ctx.port, ctx.path("hold"), ctx.holding, how))
        limit = module.DEFAULT_FIN_TIMEOUT + ORPHAN_SLACK_SECONDS
        passed = found.upgraded == ORPHAN_CLIENTS and found.gone_after is not None and found.gone_after <= limit
        return CaseResult(
            name,
            passed,
            ORPHAN_WAIT_SECONDS if found.gone_after is None else found.gone_after,
            "s",
            f"{found.text()}; {ctx.holding.eofs - eofs} EOFs reached the backend (limit {limit:.1f} s)",
        )

    return run


def _tls_case(name: str, size: int, pieces: int, gap: float):
    def run(ctx: Context) -> CaseResult:
        if ctx.tls_port is None:
            return skipped(name, "no mod_ssl in this httpd")
        payload = os.urandom(size)
        stream, status, _, _ = open_ws(ctx.tls_port, ctx.path("echo"), tls=True)
        try:
            if status != 101:
                return CaseResult(name, False, None, "", f"client got {status}")
            assert isinstance(stream, TlsStream)
            started = time.monotonic()
            stream.sock.settimeout(10)
            try:
                wire = stream.send_in_pieces(ws_frame(payload), pieces, gap)
                opcode, answer = stream.read_frame()
            except (OSError, ConnectionError) as error:
                return CaseResult(name, False, None, "", f"tunnel closed: {type(error).__name__}: {error}")
            same = opcode == 0x2 and answer == payload
            return CaseResult(
                name,
                same,
                time.monotonic() - started,
                "s",
                f"{size} B ({wire} B of TLS records on the wire) cut in {pieces} TCP pieces {gap * 1000:.0f} ms apart; "
                + ("echoed byte-exact" if same else f"got opcode {opcode} with {len(answer)} B: {answer[:40]!r}"),
            )
        finally:
            stream.close()

    return run


def _drain(ctx: Context, timeout: float = 5, baseline: int = 0) -> float | None:
    """Seconds until the echo backend has no more than `baseline` sockets open, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if ctx.echo.open_connections() <= baseline:
            return time.monotonic() - started
        time.sleep(0.01)
    return None


def _reset_case(name: str, mid_stream: bool, tls: bool = False):
    """Clients that vanish (RST) after the 101 or mid-stream; with `tls` on the TLS front (no close_notify)."""

    def run(ctx: Context) -> CaseResult:
        if tls and ctx.tls_port is None:
            return skipped(name, "no mod_ssl in this httpd")
        port = ctx.tls_port if tls and ctx.tls_port else ctx.port
        count = ctx.settings.resets
        # Sockets an earlier case left open are that case's finding; this one counts from there.
        before = 0 if _drain(ctx, 2) is not None else ctx.echo.open_connections()

        def one(_: int) -> bool:
            if not mid_stream:
                sock, status, _, _ = _raw_handshake(port, ctx.path("echo"), tls=tls)
                _reset(sock)
                return status == 101
            stream, status, _, _ = open_ws(port, ctx.path("echo"), tls=tls)
            ok = status == 101 and _echo(stream, b"mid-stream")
            stream.send(ws_frame(os.urandom(4096)))  # in flight when the reset hits
            _reset(stream.sock)
            return ok

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            outcomes = list(pool.map(lambda i: _safe(one, i), range(count)))
        drained = _drain(ctx, baseline=before)
        after = 0
        for _ in range(20):
            if _safe(lambda _: _echo_once(ctx), 0):
                after += 1
        good = sum(outcomes)
        passed = good == count and drained is not None and drained < 1.0 and after == 20
        left = ctx.echo.open_connections() - before
        drain = (
            f"backend drained in {drained:.3f} s" if drained is not None else f"{left} backend sockets left after 5 s"
        )
        if before:
            drain += f" ({before} left open by earlier cases)"
        return CaseResult(
            name,
            passed,
            drained,
            "s",
            f"{good}/{count} reset {'mid-stream' if mid_stream else 'after the 101'}; {drain}; {after}/20 echoes after",
        )

    return run


def _safe(fn: Callable[[int], bool], arg: int) -> bool:
    try:
        return fn(arg)
    except (OSError, ConnectionError):
        return False


def _echo_once(ctx: Context, port: int | None = None) -> bool:
    stream, status, _, _ = open_ws(port or ctx.port, ctx.path("echo"))
    try:
        return status == 101 and _echo(stream, b"hello")
    finally:
        stream.close()


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
            if _safe(lambda _: _echo_once(ctx), 0):
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


_SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _smuggle_case(name: str, framing: str, body: bytes):
    def run(ctx: Context) -> CaseResult:
        backend = ctx.backends["smuggle"]
        backend.reset()
        sock = socket.create_connection(("127.0.0.1", ctx.port), timeout=10)
        started = time.monotonic()
        try:
            sock.sendall(upgrade_request(ctx.path("smuggle"), ctx.port, _key_header(), extra=framing) + body)
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


def case_reqtimeout(ctx: Context) -> CaseResult:
    if ctx.reqtimeout_port is None:
        return skipped("reqtimeout-idle", "no mod_reqtimeout in this httpd")
    idle = REQTIMEOUT_BODY + 1.5
    stream, status, _, _ = open_ws(ctx.reqtimeout_port, ctx.path("echo"))
    try:
        if status != 101 or not _echo(stream, b"before the pause"):
            return CaseResult("reqtimeout-idle", False, None, "", f"client got {status}")
        time.sleep(idle)
        try:
            ok = _echo(stream, b"after the pause")
        except (OSError, ConnectionError) as error:
            ok, error_text = False, f"{type(error).__name__}"
        else:
            error_text = ""
        return CaseResult(
            "reqtimeout-idle",
            ok,
            idle,
            "s idle",
            f"RequestReadTimeout body={REQTIMEOUT_BODY}: echo after {idle} s idle "
            + ("ok" if ok else f"FAILED, tunnel cut by mod_reqtimeout ({error_text})"),
        )
    finally:
        stream.close()


def case_soak(ctx: Context) -> CaseResult:
    """Clients send sequence-numbered payloads, four in flight, and check every echo byte-exact in order."""
    clients, seconds = ctx.settings.soak_clients, ctx.settings.soak_seconds
    deadline = time.monotonic() + seconds
    counts: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        done = 0
        try:
            stream, status, _, _ = open_ws(ctx.port, ctx.path("echo"), timeout=30)
        except (OSError, ConnectionError) as error:
            with lock:
                errors.append(f"client {index}: {error}")
            return
        try:
            if status != 101:
                raise ConnectionError(f"status {status}")
            seq = 0
            while time.monotonic() < deadline:
                sent = []
                for _ in range(4):
                    payload = f"{index}:{seq}:".encode() + os.urandom(seq % 2048)
                    stream.send(ws_frame(payload))
                    sent.append(payload)
                    seq += 1
                for payload in sent:
                    _, answer = stream.read_frame()
                    if answer != payload:
                        raise ValueError(f"message {answer[:16]!r} where {payload[:16]!r} was due")
                    done += 1
            stream.send(ws_frame(b"", 0x8))
        except (OSError, ConnectionError, ValueError) as error:
            with lock:
                errors.append(f"client {index}: {type(error).__name__}: {error}")
        finally:
            stream.close()
            with lock:
                counts.append(done)

    with RssSampler(ctx.parent_pid) as rss:
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 60)
    total = sum(counts)
    return CaseResult(
        f"soak-{clients}x{seconds:.0f}s",
        not errors and total > 0,
        total / seconds,
        "msg/s",
        f"{total} messages byte-exact and in order; {len(errors)} errors"
        + (f" (first: {errors[0]})" if errors else "")
        + f"; RSS peak +{rss.growth / MIB:.1f} MiB over {rss.baseline / MIB:.0f} MiB",
    )


def case_error_log(ctx: Context) -> CaseResult:
    text = ctx.error_log.read_text(errors="replace") if ctx.error_log.exists() else ""
    bad = [line for line in text.splitlines() if any(marker in line for marker in CRASH_MARKERS)]
    return CaseResult("error-log-clean", not bad, len(bad), "lines", bad[0][:120] if bad else "no crash lines")


# Which issue-18 defect each case proves (tests/test_torture.py has one test per defect).
CASES: dict[str, Callable[[Context], CaseResult]] = {
    "no-upgrade-101": _status_case("no-upgrade-101", "no-upgrade", _want_502),
    "wrong-accept": _status_case("wrong-accept", "wrong-accept", _want_no_false_accept),
    "interim-100": _status_case("interim-100", "interim", _want_real_101),
    "headers-120": _status_case("headers-120", "headers", _want_real_101),
    "post-upgrade": case_post_upgrade,
    "refused-big": case_refused_big,
    "slow-reader-forever": case_slow_reader_forever,
    "never-answers": case_never_answers,
    "flood-starvation": case_flood,
    "half-close": case_half_close,
    "orphans-fin": _orphan_case("orphans-fin", "fin"),
    "orphans-rst": _orphan_case("orphans-rst", "rst"),
    "tls-12k-12-pieces": _tls_case("tls-12k-12-pieces", 12 * 1024, 12, 0.001),
    "tls-3k-4-pieces": _tls_case("tls-3k-4-pieces", 3 * 1024, 4, 0.2),
    # Four pieces do not always give the issue-18 module its three empty reads in a row; eight do.
    "tls-3k-8-pieces": _tls_case("tls-3k-8-pieces", 3 * 1024, 8, 0.2),
    "tls-1mib-echo": _tls_case("tls-1mib-echo", 2**20, 16, 0.0),
    "reset-after-101": _reset_case("reset-after-101", mid_stream=False),
    "reset-mid-stream": _reset_case("reset-mid-stream", mid_stream=True),
    "tls-reset-after-101": _reset_case("tls-reset-after-101", mid_stream=False, tls=True),
    "tls-reset-mid-stream": _reset_case("tls-reset-mid-stream", mid_stream=True, tls=True),
    "pipelined-frame": case_pipelined,
    "slowloris": case_slowloris,
    "smuggle-cl": _smuggle_case("smuggle-cl", f"Content-Length: {len(_SMUGGLED)}\r\n", _SMUGGLED),
    "smuggle-te": _smuggle_case("smuggle-te", "Transfer-Encoding: chunked\r\n", b"0\r\n\r\n" + _SMUGGLED),
    "smuggle-cl-te": _smuggle_case(
        "smuggle-cl-te", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + _SMUGGLED
    ),
    "reqtimeout-idle": case_reqtimeout,
    "soak": case_soak,
    "error-log-clean": case_error_log,  # last: it reads what the others left in the log
}
DEFAULT_CASES = [name for name in CASES if name != "soak"]


def _crash_lines(ctx: Context, since: int) -> list[str]:
    """Crash lines the error log gained after byte offset `since`."""
    try:
        with ctx.error_log.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if any(marker in line for marker in CRASH_MARKERS)]


def _log_size(ctx: Context) -> int:
    try:
        return ctx.error_log.stat().st_size
    except OSError:
        return 0


def run_cases(ctx: Context, names: Sequence[str], progress: Progress) -> list[CaseResult]:
    results: list[CaseResult] = []
    for name in names:
        progress.step(f"{ctx.spec.label}: {name}")
        for backend in ctx.backends.values():
            backend.reset()
        log_from = _log_size(ctx)
        pool = concurrent.futures.ThreadPoolExecutor(1)
        try:
            results.append(pool.submit(CASES[name], ctx).result(CASE_TIMEOUT))
        except concurrent.futures.TimeoutError:
            results.append(CaseResult(name, False, None, "", f"no result within {CASE_TIMEOUT:.0f} s"))
        except Exception as error:  # a case that blows up is a failed case, not a crashed run
            results.append(CaseResult(name, False, None, "", f"{type(error).__name__}: {error}"))
        finally:
            pool.shutdown(wait=False)
            for backend in ctx.backends.values():
                backend.stop.set()  # endless backends of this case stop pushing
        crashes = _crash_lines(ctx, log_from) if name != "error-log-clean" else []
        if crashes:  # name the case during which a child died: error-log-clean alone cannot tell
            results[-1].passed = False
            results[-1].detail += f"; CRASH during this case: {crashes[0][:100]}"
    return results


def run_target(
    spec: TargetSpec,
    cases: Sequence[str] | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> TargetReport:
    progress = progress or Progress()
    names = list(cases or DEFAULT_CASES)
    unknown = [name for name in names if name not in CASES]
    if unknown:
        raise BadInput(f"unknown case(s): {', '.join(unknown)}", hint="cases: " + ", ".join(CASES))
    tunnelling = "mod_proxy_http upgrade=websocket" if spec.style == "http-upgrade" else "mod_proxy_wstunnel"
    report = TargetReport(
        str(spec.httpd.version),
        str(spec.httpd.binary),
        str(spec.module) if spec.module else None,
        tunnelling,
        label=spec.label,
    )
    with running_target(spec, settings or Settings(), progress) as ctx:
        report.checks = list(run_cases(ctx, names, progress))
    return report


# -- targets and the side-by-side table ------------------------------------------------------------------------
def stock_targets(httpd: Httpd) -> list[TargetSpec]:
    """The system Apache's own tunnelling, both styles where it has two (2.4.47+)."""
    if httpd.version >= Version(2, 4, 47):
        return [
            TargetSpec(f"stock {httpd.version} http-upgrade", httpd, "http-upgrade"),
            TargetSpec(f"stock {httpd.version} ws://", httpd, "wstunnel"),
        ]
    if httpd.has_module("proxy_wstunnel"):
        return [TargetSpec(f"stock {httpd.version} ws://", httpd, "wstunnel")]
    return []


def module_target(httpd: Httpd, so: Path, label: str | None = None) -> TargetSpec:
    return TargetSpec(label or f"apachews {httpd.version}", httpd, "wstunnel", module=Path(so))


def side_by_side(reports: Sequence[TargetReport]) -> str:
    """Rows: cases; columns: targets; cells: pass/FAIL/n/a with the figure."""
    seen: dict[str, int] = {}
    for report in reports:  # two builds of one release would share a label: number the later ones
        seen[report.label] = seen.get(report.label, 0) + 1
        if seen[report.label] > 1:
            report.label = f"{report.label} #{seen[report.label]}"
    names: list[str] = []
    for report in reports:
        names += [check.name for check in report.checks if check.name not in names]
    cells = {(r.label, c.name): _cell(c) for r in reports for c in r.checks}
    widths = [max(len(r.label), *(len(cells.get((r.label, n), "")) for n in names)) for r in reports]
    first = max(len("case"), *(len(n) for n in names))
    lines = ["case".ljust(first) + " | " + " | ".join(r.label.ljust(w) for r, w in zip(reports, widths))]
    lines.append("-" * first + "-|-" + "-|-".join("-" * w for w in widths))
    for name in names:
        lines.append(
            name.ljust(first)
            + " | "
            + " | ".join(cells.get((r.label, name), "").ljust(w) for r, w in zip(reports, widths))
        )
    return "\n".join(lines)


def _cell(check: Check) -> str:
    if check.skipped:
        return "n/a"
    result = "pass" if check.passed else "FAIL"
    if check.figure is None:
        return result
    figure = check.figure
    text = f"{figure:.0f}" if abs(figure) >= 100 else f"{figure:.3g}"
    return f"{result} {text} {check.unit}".rstrip()


def details(reports: Sequence[TargetReport]) -> str:
    lines = []
    for report in reports:
        lines.append(f"== {report.label} ({report.httpd}, {report.tunnelling})")
        lines += [f"  {c.name:<20} {_cell(c):<22} {c.detail}" for c in report.checks]
    return "\n".join(lines)


TARGET_KINDS = ("stock-http", "stock-ws", "stock-ws-nofallback", "apachews")


def build_module(out_dir: Path, source: str | None = None) -> Path:
    """The apachews module built with apxs: from module/ (`apachews.module`), or from given C text (an
    older revision, to show a case failing on it)."""
    if source is None:
        return module.build_with_apxs(out_dir).so
    if shutil.which("apxs") is None:
        raise BadInput("apxs not found", hint="apt-get install apache2-dev (or yum install httpd-devel)")
    scratch = Path(tempfile.mkdtemp(prefix="apachews-apxs-", dir=out_dir))
    (scratch / module.SOURCE_NAME).write_text(source)
    result = subprocess.run(
        ["apxs", "-c", module.SOURCE_NAME], cwd=scratch, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise JobFailed("apxs could not compile that module source", hint=(result.stdout + result.stderr)[-4000:])
    return scratch / ".libs" / "mod_proxy_wstunnel.so"


def targets(httpd: Httpd, kinds: Sequence[str], module_so: Path | None, dist: Path | None = None) -> list[TargetSpec]:
    """The targets to compare: kinds of the system Apache, plus a built httpd dir (`apachews build
    --with-httpd`) with its own module."""
    specs = []
    version = httpd.version
    for kind in kinds:
        if kind not in TARGET_KINDS:
            raise BadInput(f"unknown target {kind!r}", hint="targets: " + ", ".join(TARGET_KINDS))
        if kind == "apachews":
            if module_so is None:
                raise BadInput("the apachews target needs a module", hint="pass --module or let apxs build one")
            specs.append(module_target(httpd, module_so))
        elif kind == "stock-http":
            if version < Version(2, 4, 47):
                raise BadInput(f"Apache {version} has no mod_proxy_http upgrade=websocket (2.4.47+)")
            specs.append(TargetSpec(f"stock {version} http-upgrade", httpd, "http-upgrade"))
        else:
            if not httpd.has_module("proxy_wstunnel"):
                raise BadInput(f"Apache {version} has no stock mod_proxy_wstunnel")
            off = kind == "stock-ws-nofallback"
            if off and version < Version(2, 4, 47):
                raise BadInput(f"Apache {version} has no ProxyWebsocketFallbackToProxyHttp (2.4.47+)")
            label = f"stock {version} ws://" + (" fallback off" if off else "")
            specs.append(TargetSpec(label, httpd, "wstunnel", fallback_off=off))
    if dist is not None:
        specs.append(dist_target(dist))
    return specs


def dist_target(dist: Path, label: str | None = None) -> TargetSpec:
    """A dir made by `apachews build --with-httpd`: its httpd with the module it built."""
    built = Dist(Path(dist))
    so = built.module
    if not built.has_httpd or so is None:
        raise BadInput(
            f"{dist} is not an `apachews build --with-httpd` output", hint="need httpd/bin/httpd and modules/"
        )
    server = built.httpd()
    mpm = server.installation.info().mpm
    return TargetSpec(label or f"apachews {server.version} {mpm}", server, "wstunnel", module=so)


def with_handoff(specs: Sequence[TargetSpec]) -> list[TargetSpec]:
    """The apachews targets again with ProxyWebsocketHandoff On, each beside its worker-held self."""
    out = []
    for spec in specs:
        out.append(spec)
        if spec.module is not None:
            out.append(dataclasses.replace(spec, label=f"{spec.label} handoff", handoff=True))
    return out


def run(
    specs: Sequence[TargetSpec], cases: Sequence[str] | None, settings: Settings, progress: Progress
) -> list[TargetReport]:
    return [run_target(spec, cases, settings, progress) for spec in specs]
