"""What verify's checks drive: the `Target` (ports, backends, the rendering under test), the running `Proxy`
around it, the report, and the limits the checks share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from apachews import capacity, config
from apachews.httpd import Server, SyntaxResult
from apachews.lab.echo import EchoServer
from apachews.lab.holding import HoldingBackend
from apachews.lab.report import Report

IDLE_BODY_TIMEOUT = 2  # RequestReadTimeout body=N while verifying (shipped: 10): the idle check outwaits it
VERIFY_PREFIX = "/apachews-verify"  # verify's own routes, beside the preset's
CHECK_TIMEOUTS = {"capacity": 240.0, "abrupt-disconnect": 120.0}  # the others: 60 s

Edit = Callable[[dict[str, str]], dict[str, str]]
VerifyReport = Report  # one Apache, one preset: what `verify.run` returns


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
    rendering: config.Rendering | None = None
    members: list[EchoServer] = field(default_factory=list)  # the app backends (balancer: several)
    syntax: SyntaxResult | None = None  # what `httpd -t` said at start
    idle_silence: float = IDLE_BODY_TIMEOUT + 1.0
    tls_echo: EchoServer | None = None  # a wss:// backend (None: this Apache has no mod_ssl)
    tls_port: int | None = None  # Apache's TLS front (None: no mod_ssl)
    tls_ca: Path | None = None
    front_tls: bool = False  # the preset's routes are served on the TLS front only (inside its <VirtualHost>)
    die_path: str = "/ws-die"
    holding: HoldingBackend | None = None  # a backend that never closes on EOF (None: not measured, e.g. live)
    holding_path: str = "/ws-hold"
    refuse_paths: dict[int, str] = field(default_factory=lambda: {200: "/ws-refuse200", 403: "/ws-refuse403"})
    max_websockets: int | None = None  # the capacity check opens this many (None: it is skipped)
    server_capacity: str = ""  # the workers the server under test has, and whether apachews sized it
    # "": WebSockets over HTTP/2 are on (H2WebSockets, Protocols h2 h2c, as running_proxy sets up); else why not
    h2: str = "not set up on this server (H2WebSockets on, Protocols h2c: verify's own server has them)"

    def ws(self, path: str | None = None) -> str:
        if self.front_tls and self.tls_port is not None:
            return f"wss://127.0.0.1:{self.tls_port}{path or self.ws_path}"
        return f"ws://127.0.0.1:{self.apache_port}{path or self.ws_path}"

    @property
    def app_backends(self) -> list[EchoServer]:
        return self.members or [self.echo]

    def backend_connections(self) -> int:
        return sum(backend.open_connections() for backend in self.app_backends)


@dataclass
class Proxy:
    """A running Apache in front of the echo backends."""

    target: Target
    server: Server
    tunnelling: str
    layout: str
    sizing: capacity.Sizing | None = None  # the MPM sizing rendered for --max-websockets

    @property
    def root(self) -> Server:  # the name bench and older callers use
        return self.server
