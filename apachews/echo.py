"""The lab's backends under their old name (kept so that code written against `apachews.echo` still runs):
they live in apachews.lab (echo.py, holding.py, sockets.py)."""

from __future__ import annotations

from apachews.lab.client import MAX_MESSAGE, WS_GUID, accept_value
from apachews.lab.echo import MODES, EchoServer, RequestLine
from apachews.lab.holding import HoldingBackend
from apachews.lab.sockets import NOT_HELD, TCP_STATES, TcpSocket, socket_holders, tcp_sockets

__all__ = [
    "MAX_MESSAGE",
    "MODES",
    "NOT_HELD",
    "TCP_STATES",
    "WS_GUID",
    "EchoServer",
    "HoldingBackend",
    "RequestLine",
    "TcpSocket",
    "accept_value",
    "socket_holders",
    "tcp_sockets",
]
