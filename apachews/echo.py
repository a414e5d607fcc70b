"""The bundled WebSocket backend used by `verify` and `bench`: a `websockets` server on 127.0.0.1.

Modes:
- "echo": every message comes back with its type (text/binary) preserved. It also answers plain HTTP requests
  (200, like an application's pages), records every request line it receives (`requests`), and obeys two
  commands: "apachews:whoami" (answers "port N": which balancer member took the session) and
  "apachews:later:S:TEXT" (sends TEXT unprompted after S seconds: a backend that speaks after a silence).
- "refuse-200" / "refuse-403": answers the upgrade with a plain HTTP response; no WebSocket opens.
- "die": echoes, but aborts the TCP connection (no close frame) when it receives the text "die".

`HoldingBackend` is the other shape: a backend that never closes a connection on EOF (as broadwayd does), so
that what the proxy does after a client's FIN decides whether its socket is ever released. `tcp_sockets`
counts what a port has open in every state a connection can hang in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from apachews.errors import BadInput, JobFailed

MODES = ("echo", "refuse-200", "refuse-403", "die")
MAX_MESSAGE = 16 * 2**20
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
# /proc/net/tcp's state codes (include/net/tcp_states.h), named as `ss` names them.
TCP_STATES = {
    "01": "ESTAB",
    "02": "SYN-SENT",
    "03": "SYN-RECV",
    "04": "FIN-WAIT-1",
    "05": "FIN-WAIT-2",
    "06": "TIME-WAIT",
    "07": "CLOSE",
    "08": "CLOSE-WAIT",
    "09": "LAST-ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}
NOT_HELD = ("LISTEN", "TIME-WAIT")  # a listener, and a connection both sides have closed: nothing hangs on them


@dataclass(frozen=True)
class TcpSocket:
    state: str  # as `ss` names it: ESTAB, CLOSE-WAIT, FIN-WAIT-2, ...
    local_port: int
    remote_port: int
    inode: int  # 0 for a socket no process holds any more (an orphan the kernel finishes alone)


def tcp_sockets(port: int) -> list[TcpSocket]:
    """Every TCP socket on this machine with `port` at either end, except LISTEN and TIME-WAIT ones: a server's
    accepted sockets (local port `port`) and its clients' (remote port `port`, e.g. Apache's to a backend), in
    every state a connection can hang in, ESTAB and the half-closed ones (CLOSE-WAIT, FIN-WAIT-1/2, LAST-ACK,
    CLOSING) alike. Read from /proc/net/tcp and tcp6."""
    found = []
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            state = TCP_STATES.get(fields[3], fields[3])
            if port in (local_port, remote_port) and state not in NOT_HELD:
                found.append(TcpSocket(state, local_port, remote_port, int(fields[9])))
    return found


def socket_holders(inodes: set[int]) -> set[int]:
    """The pids of the processes holding any of these socket inodes (from /proc/PID/fd, where readable)."""
    wanted = {f"socket:[{inode}]" for inode in inodes if inode}
    holders = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not wanted:
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        holders.add(int(entry.name))
                        break
    return holders


def accept_value(key: str) -> str:
    """The Sec-WebSocket-Accept a server answers to `key` (RFC 6455, 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


@dataclass(frozen=True)
class RequestLine:
    """What the backend received: method and path, and whether it asked for a WebSocket upgrade."""

    path: str
    upgrade: bool

    def __str__(self) -> str:
        return f"GET {self.path}" + (" (Upgrade: websocket)" if self.upgrade else " (plain HTTP)")


class EchoServer:
    """A WebSocket backend running in its own thread and event loop; use as a context manager.

    `tls`: an ssl.SSLContext to serve wss:// (and https://) instead of ws://.
    """

    def __init__(self, mode: str = "echo", tls: ssl.SSLContext | None = None) -> None:
        if mode not in MODES:
            raise BadInput(f"unknown echo mode {mode!r}", hint="modes: " + ", ".join(MODES))
        self.mode = mode
        self.tls = tls
        self.port = 0
        self.sessions = 0  # WebSocket connections that reached the handler
        self.requests: list[RequestLine] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/"

    def open_connections(self) -> int:
        """This backend's sockets still open, in any state but LISTEN and TIME-WAIT, at either end."""
        return len(tcp_sockets(self.port))

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"echo-{self.mode}", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        if not self.port:
            raise JobFailed("the bundled echo backend did not start on 127.0.0.1 within 10 s")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to start(); the thread must not die silently
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            max_size=MAX_MESSAGE,
            compression=None,
            ssl=self.tls,
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        self.requests.append(RequestLine(request.path, upgrade))
        if self.mode == "refuse-403":
            return self._answer(connection, HTTPStatus.FORBIDDEN, "upgrade refused by the backend\n")
        if self.mode == "refuse-200" or not upgrade:
            return self._answer(connection, HTTPStatus.OK, f"plain HTTP for {request.path}, no WebSocket here\n")
        return None  # go on with the WebSocket handshake

    @staticmethod
    def _answer(connection: ServerConnection, status: HTTPStatus, text: str) -> Response:
        response = connection.respond(status, text)
        response.headers["Connection"] = "close"  # websockets closes after it: the proxy must not reuse it
        return response

    async def _handle(self, websocket: ServerConnection) -> None:
        self.sessions += 1
        try:
            async for message in websocket:
                if self.mode == "die" and message == "die":
                    websocket.transport.abort()
                    return
                if isinstance(message, str) and message.startswith("apachews:"):
                    await self._command(websocket, message)
                    continue
                await websocket.send(message)
        except ConnectionClosed:
            pass  # clients that reset are part of the test, not an error of the backend

    async def _command(self, websocket: ServerConnection, message: str) -> None:
        _, command, *rest = message.split(":", 3)
        if command == "whoami":
            await websocket.send(f"port {self.port}")
        elif command == "later" and len(rest) == 2:
            await asyncio.sleep(float(rest[0]))
            await websocket.send(rest[1])
        else:
            await websocket.send(message)


class HoldingBackend:
    """A WebSocket backend that never closes a connection on EOF, as broadwayd does; use as a context manager.

    It answers the upgrade (101 with the right Sec-WebSocket-Accept), reads and drops what comes, and when EOF
    arrives keeps its socket open until `stop()`. Only a reset, or the proxy's idle limit, then frees it: a proxy
    that closes its side with a FIN leaves this socket in CLOSE-WAIT. `sockets()` is what is still open (both
    ends: this backend's and the proxy's), `eofs` how many connections have seen EOF."""

    def __init__(self) -> None:
        self.sessions = 0
        self.eofs = 0
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="holding-backend", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def sockets(self) -> list[TcpSocket]:
        return tcp_sockets(self.port)

    def open_connections(self) -> int:
        return len(self.sockets())

    def __enter__(self) -> HoldingBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.add(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                head += chunk
            key = ""
            for line in head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "sec-websocket-key":
                    key = value.strip()
            sock.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept_value(key)}\r\n\r\n"
                ).encode()
            )
            self.sessions += 1
            while sock.recv(65536):
                pass
            self.eofs += 1
            self._stop.wait()  # EOF: broadwayd does nothing about it; the socket stays open
        except OSError:
            pass  # a reset: the kernel has taken the socket away already
        finally:
            with self._lock:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()
