"""Misbehaving backends: plain threads on 127.0.0.1 that speak just enough HTTP/WebSocket to misbehave on
purpose (a 101 without Upgrade, a wrong accept, 100 Continue first, 120 headers, a refusal that never ends, a
backend that never answers, a ticker, a half-closer, an HTTP keep-alive that shows smuggled requests). The
well-behaved ones are `apachews.lab.echo.EchoServer` and `apachews.lab.holding.HoldingBackend`."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable

from apachews.lab.client import Stream, accept_value, ws_frame

TICK = 0.02  # the ticker backend's period

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

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

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
    accept = accept or accept_value(headers.get("sec-websocket-key", ""))
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
    _switch(stream, headers, accept=accept_value("not the client's key"))
    _frame_echo(backend, stream)


def b_interim(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    time.sleep(0.05)  # a separate TCP piece, as a real backend would send it
    _switch(stream, headers)
    _frame_echo(backend, stream)


def b_many_headers(backend: RawBackend, stream: Stream, line: str, headers: dict[str, str]) -> None:
    filler = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(120))
    accept = accept_value(headers.get("sec-websocket-key", ""))
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
