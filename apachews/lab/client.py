"""The lab's WebSocket client, written once: the raw handshake (for what a library client hides: the accept
value, resets, a FIN without a close frame), frames, a buffered stream over plain TCP or TLS (memory BIOs, so
a case decides how records are cut into TCP pieces), plain GETs, and the `websockets` client the checks use.
verify, torture, bench, live and diagnose all speak through this module."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import socket
import ssl
import struct
import time
from dataclasses import dataclass

from websockets.asyncio.client import connect as ws_connect

MAX_MESSAGE = 16 * 2**20
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
PLAIN_GET_TIMEOUT = 5.0
# What today's browsers offer: no finite-field DHE (Chrome and Firefox dropped it). mod_ssl before ECDHE support
# (2.2 up to 2.2.25) would pick DHE with 1024-bit parameters, which OpenSSL 3 clients refuse; browsers use RSA there.
BROWSER_CIPHERS = "DEFAULT:!kDHE"


def accept_value(key: str) -> str:
    """The Sec-WebSocket-Accept a server answers to `key` (RFC 6455, 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def key_header() -> str:
    return base64.b64encode(secrets.token_bytes(16)).decode()


def tls_client() -> ssl.SSLContext:
    """A browser-like TLS client that does not check the certificate (lab certificates are made at test time)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(BROWSER_CIPHERS)
    return context


def upgrade_request(
    path: str, host: str | int, key: str, method: str = "GET", extra: str = "", origin: str | None = None
) -> bytes:
    """An upgrade request's head; `host`: the Host header, or a port on 127.0.0.1."""
    host = f"127.0.0.1:{host}" if isinstance(host, int) else host
    origin_line = f"Origin: {origin}\r\n" if origin else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{origin_line}"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


# -- frames ---------------------------------------------------------------------------------------------------
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
    return head + key + unmask(payload, key)


def unmask(payload: bytes, key: bytes) -> bytes:
    # XOR with the key repeated: one big-int operation instead of a Python loop per byte.
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


# -- a buffered stream, plain or TLS ----------------------------------------------------------------------
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
        return first & 0x0F, unmask(payload, key) if key else payload

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class TlsStream(Stream):
    """TLS through memory BIOs, so the test decides how the encrypted bytes are cut into TCP pieces."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        # No SNI (an IP literal), as a browser opening https://127.0.0.1/: mod_ssl answers 400 to an SNI name that
        # differs from the Host header.
        self.tls = tls_client().wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
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
        key = key_header()
        stream.send(upgrade_request(path, port, key, method, extra) + tail)
        status, headers, _ = stream.read_head()
    except BaseException:
        sock.close()
        raise
    return stream, status, headers, key


def echo_frame(stream: Stream, payload: bytes) -> bool:
    """One binary frame out, its echo back byte-exact."""
    stream.send(ws_frame(payload))
    opcode, answer = stream.read_frame()
    return opcode == 0x2 and answer == payload


# -- the raw handshake on a real (or ssl-wrapped) socket -------------------------------------------------
@dataclass
class Upgrade:
    """An upgrade request's answer, on the socket it was sent on."""

    sock: socket.socket
    status: int  # 0: no HTTP answer
    reason: str
    headers: dict[str, str]
    key: str
    rest: bytes  # what came after the head (frames the server sent at once)
    received: int  # bytes read in all

    @property
    def accepted(self) -> bool:
        return self.headers.get("sec-websocket-accept") == accept_value(self.key)


def upgrade(sock: socket.socket, path: str, host: str | int, *, origin: str | None = None, extra: str = "") -> Upgrade:
    """Send an upgrade request on a connected socket and read the answer's head (status 0: none came)."""
    key = key_header()
    sock.sendall(upgrade_request(path, host, key, origin=origin, extra=extra))
    stream = Stream(sock)
    try:
        status, headers, first = stream.read_head()
    except ConnectionError:
        return Upgrade(sock, 0, "", {}, key, b"", len(stream.buf))
    parts = first.split(None, 2)
    received = len(first) + len(stream.buf)
    return Upgrade(sock, status, parts[2] if len(parts) > 2 else "", headers, key, stream.buf, received)


def handshake(port: int, path: str, timeout: float = 5.0, tls: ssl.SSLContext | bool | None = None) -> Upgrade:
    """An upgrade request by hand to 127.0.0.1:`port` (over TLS with `tls`: True for the browser-like client,
    or a context)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        context = tls_client() if tls is True else tls
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    return upgrade(sock, path, port)


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST, like a killed browser tab or a cut network."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def leave(port: int, path: str, how: str, tls: ssl.SSLContext | None = None) -> bool:
    """Handshake, send one text frame, and vanish: "fin" closes as a killed browser's kernel does (a FIN, no
    close frame, no TLS close_notify), "rst" with a reset. True when the upgrade succeeded."""
    answer = handshake(port, path, tls=tls)
    if answer.status == 101:
        answer.sock.sendall(ws_frame(b"last words", 0x1))
    if how == "rst":
        reset(answer.sock)
    else:
        os.close(answer.sock.detach())  # the kernel's FIN, as when a browser's process dies (no TLS close_notify)
    return answer.status == 101


# -- plain HTTP ------------------------------------------------------------------------------------------
def status_line(port: int, path: str, timeout: float = PLAIN_GET_TIMEOUT) -> str:
    """A plain GET (no upgrade); the answer's status line ("" when the server closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return sock.recv(256).split(b"\r\n", 1)[0].decode("latin-1")


def http_get(port: int, path: str, cookie: str = "", tls: bool = False) -> tuple[int, list[str]]:
    """GET `path` from 127.0.0.1:`port` (over TLS with `tls`): the status and the response's header lines."""
    extra = f"Cookie: {cookie}\r\n" if cookie else ""
    with socket.create_connection(("127.0.0.1", port), timeout=PLAIN_GET_TIMEOUT) as plain:
        sock = tls_client().wrap_socket(plain, server_hostname="127.0.0.1") if tls else plain
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


# -- the library client ----------------------------------------------------------------------------------
def connect(url: str, **options: object) -> ws_connect:
    """The `websockets` client as the checks use it (wss:// with the browser-like TLS client): await it, or use
    it as an async context manager."""
    settings: dict[str, object] = {
        "ssl": tls_client() if url.startswith("wss:") else None,
        "max_size": MAX_MESSAGE,
        "compression": None,
        "open_timeout": 10,
        "close_timeout": 5,
    }
    return ws_connect(url, **{**settings, **options})  # type: ignore[arg-type]
