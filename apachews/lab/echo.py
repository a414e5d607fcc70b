"""The bundled app-shaped WebSocket backend used by verify, bench and live: a `websockets` server on 127.0.0.1.

Modes:
- "echo": every message comes back with its type (text/binary) preserved. It also answers plain HTTP requests
  (200, like an application's pages), records every request line it receives (`requests`), and obeys two
  commands: "apachews:whoami" (answers "port N": which balancer member took the session) and
  "apachews:later:S:TEXT" (sends TEXT unprompted after S seconds: a backend that speaks after a silence).
- "refuse-200" / "refuse-403": answers the upgrade with a plain HTTP response; no WebSocket opens.
- "die": echoes, but aborts the TCP connection (no close frame) when it receives the text "die".
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from apachews.errors import BadInput, JobFailed
from apachews.lab.client import MAX_MESSAGE
from apachews.lab.sockets import tcp_sockets

MODES = ("echo", "refuse-200", "refuse-403", "die")


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
