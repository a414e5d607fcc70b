"""The bundled WebSocket backend used by `verify` and `bench`: a `websockets` server on 127.0.0.1.

Modes:
- "echo": every message comes back with its type (text/binary) preserved.
- "refuse-200" / "refuse-403": answers the upgrade with a plain HTTP response; no WebSocket opens.
- "die": echoes, but aborts the TCP connection (no close frame) when it receives the text "die".
"""

from __future__ import annotations

import asyncio
import threading
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from apachews.errors import BadInput

MODES = ("echo", "refuse-200", "refuse-403", "die")
MAX_MESSAGE = 16 * 2**20
_TCP_ESTABLISHED = "01"


def established_connections(port: int) -> int:
    """TCP connections in ESTABLISHED state whose local port is `port` (read from /proc/net/tcp*)."""
    count = 0
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == _TCP_ESTABLISHED:
                count += 1
    return count


class EchoServer:
    """A WebSocket backend running in its own thread and event loop; use as a context manager."""

    def __init__(self, mode: str = "echo") -> None:
        if mode not in MODES:
            raise BadInput(f"unknown echo mode {mode!r}", hint="modes: " + ", ".join(MODES))
        self.mode = mode
        self.port = 0
        self.sessions = 0  # WebSocket connections that reached the handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def open_connections(self) -> int:
        return established_connections(self.port)

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
            raise RuntimeError("the echo backend did not start")

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
        process_request = self._refuse if self.mode.startswith("refuse") else None
        async with serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=process_request,
            max_size=MAX_MESSAGE,
            compression=None,
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _refuse(self, connection: ServerConnection, request: object) -> object:
        if self.mode == "refuse-403":
            return connection.respond(HTTPStatus.FORBIDDEN, "upgrade refused by the backend\n")
        return connection.respond(HTTPStatus.OK, "plain HTTP, no WebSocket here\n")

    async def _handle(self, websocket: ServerConnection) -> None:
        self.sessions += 1
        try:
            async for message in websocket:
                if self.mode == "die" and message == "die":
                    websocket.transport.abort()
                    return
                await websocket.send(message)
        except ConnectionClosed:
            pass  # clients that reset are part of the test, not an error of the backend
