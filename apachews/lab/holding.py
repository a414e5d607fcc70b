"""A backend that never closes a connection on EOF, as broadwayd does."""

from __future__ import annotations

import contextlib
import socket
import threading

from apachews.lab.client import Stream, accept_value
from apachews.lab.sockets import TcpSocket, tcp_sockets


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
        try:
            stream = Stream(sock, client=False)
            try:
                _, headers, _ = stream.read_head()
            except ConnectionError:
                return
            sock.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept_value(headers.get('sec-websocket-key', ''))}\r\n\r\n"
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
