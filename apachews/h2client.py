"""A WebSocket over HTTP/2 (RFC 8441), from the client side: what a browser does on a vhost with `Protocols h2`.

The HTTP/2 framing is PyPI's `h2` (hyper-h2), the WebSocket framing `websockets`' own frames; this module only
drives them over one socket: the connection preface (h2c with prior knowledge on plain TCP, or TLS with ALPN h2),
the server's SETTINGS_ENABLE_CONNECT_PROTOCOL, an extended CONNECT with `:protocol websocket`, then masked
frames as DATA on that stream and the echoes read back. Used by verify's h2-websocket check.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader


class H2WebSocketError(Exception):
    """The WebSocket over HTTP/2 did not open or did not echo; the message says at which step."""


@dataclass
class H2Exchange:
    status: int  # the CONNECT's :status (200: open)
    echoed: list[bytes] = field(default_factory=list)  # the payloads that came back, in order
    connect_protocol: bool = False  # the server announced SETTINGS_ENABLE_CONNECT_PROTOCOL
    seconds: float = 0.0  # from the CONNECT to the last echo


class _Session:
    def __init__(self, sock: socket.socket | ssl.SSLSocket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(self, stream: int, data: bytes) -> None:
        """DATA on `stream` within HTTP/2 flow control: as much as the windows allow, then wait for more."""
        while data:
            window = min(self.conn.local_flow_control_window(stream), self.conn.max_outbound_frame_size)
            if window <= 0:
                for event in self.events():
                    if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                        raise H2WebSocketError("the stream ended while sending")
                continue
            self.conn.send_data(stream, data[:window])
            self.flush()
            data = data[window:]

    def events(self) -> list[h2.events.Event]:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise H2WebSocketError("timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise H2WebSocketError("timed out") from None
        if not data:
            raise H2WebSocketError("the server closed the connection")
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            raise H2WebSocketError(f"HTTP/2 protocol error: {error}") from None
        self.flush()
        return events


def open_socket(host: str, port: int, tls: ssl.SSLContext | None, timeout: float) -> socket.socket | ssl.SSLSocket:
    """A TCP connection to host:port; with `tls`, wrapped with ALPN h2 (refused when the server picks another)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    if tls is None:
        return sock
    tls.set_alpn_protocols(["h2"])
    wrapped = tls.wrap_socket(sock, server_hostname=host)
    if wrapped.selected_alpn_protocol() != "h2":
        wrapped.close()
        raise H2WebSocketError(
            f"the server chose {wrapped.selected_alpn_protocol() or 'no protocol'} over ALPN, not h2"
        )
    return wrapped


def echo(
    host: str,
    port: int,
    path: str,
    messages: list[bytes],
    *,
    authority: str | None = None,
    origin: str | None = None,
    tls: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> H2Exchange:
    """Open a WebSocket at `path` with an extended CONNECT over one HTTP/2 connection, send each message as a
    binary frame and read its echo. Raises H2WebSocketError saying where it stopped."""
    deadline = time.monotonic() + timeout
    authority = authority or f"{host}:{port}"
    scheme = "https" if tls is not None else "http"
    sock = open_socket(host, port, tls, timeout)
    try:
        session = _Session(sock, deadline)
        session.conn.initiate_connection()
        session.flush()
        # RFC 8441 section 3: no extended CONNECT before the server's SETTINGS allow it.
        settings_seen = False
        while not settings_seen:
            for event in session.events():
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    settings_seen = True
        if not session.conn.remote_settings.enable_connect_protocol:
            raise H2WebSocketError(
                "the server's HTTP/2 SETTINGS do not allow extended CONNECT (no SETTINGS_ENABLE_CONNECT_PROTOCOL): "
                "H2WebSockets is off, or this mod_http2 predates it"
            )
        stream = session.conn.get_next_available_stream_id()
        headers = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", scheme),
            (":path", path),
            (":authority", authority),
            ("sec-websocket-version", "13"),
        ]
        if origin:
            headers.append(("origin", origin))
        started = time.monotonic()
        session.conn.send_headers(stream, headers)
        session.flush()
        exchange = H2Exchange(0, connect_protocol=True)
        while not exchange.status:
            for event in session.events():
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    exchange.status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    raise H2WebSocketError(f"the server reset the CONNECT stream (error {event.error_code})")
        if exchange.status != 200:
            return exchange
        reader = StreamReader()
        for message in messages:
            session.send(stream, Frame(Opcode.BINARY, message).serialize(mask=True, extensions=[]))
            parser = Frame.parse(reader.read_exact, mask=False, extensions=[])
            frame = _next_frame(parser)
            while frame is None or frame.opcode in (Opcode.PING, Opcode.PONG):
                if frame is not None:  # a control frame between the echoes: the next frame is the echo
                    parser = Frame.parse(reader.read_exact, mask=False, extensions=[])
                    frame = _next_frame(parser)
                    continue
                for event in session.events():
                    if isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                        session.conn.acknowledge_received_data(event.flow_controlled_length, stream)
                        reader.feed_data(event.data)
                    elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                        raise H2WebSocketError(f"the stream ended after {len(exchange.echoed)} echoes")
                session.flush()
                frame = _next_frame(parser)
            if frame.opcode is Opcode.CLOSE:
                raise H2WebSocketError(f"the backend closed the WebSocket after {len(exchange.echoed)} echoes")
            exchange.echoed.append(bytes(frame.data))
        exchange.seconds = time.monotonic() - started
        session.send(stream, Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=True, extensions=[]))
        session.conn.close_connection()
        session.flush()
        return exchange
    finally:
        sock.close()


def _next_frame(parser) -> Frame | None:  # noqa: ANN001 - a websockets parser generator
    """The parser's frame once it has the bytes for one, else None (it waits for more)."""
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    return None
