"""`Rendering`: what `config.render` makes of a preset for a release and a layout (its files, modules, notes).

A module of its own, below config and distros: the layouts place a rendering without importing config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apachews.capacity import Sizing
from apachews.serial import Serialised
from apachews.tunnelling import Tunnelling


@dataclass
class Rendering(Serialised):
    preset: str
    apache: str
    distro: str
    tunnelling: Tunnelling
    files: dict[str, str]
    modules: list[str]
    notes: list[str] = field(default_factory=list)
    websocket_paths: list[str] = field(default_factory=list)  # where clients open WebSockets
    path: str = "/"  # the --path the preset was rendered for
    proxy_conf: str = ""  # the routes alone, without LoadModule lines (for inclusion in a <VirtualHost>)
    backend_path: str = "/"  # the path the (first) backend serves under
    sizing: Sizing | None = None  # the MPM sizing (--max-websockets), rendered as capacity_file
    capacity_file: str | None = None  # its name in `files`
    handoff: bool = False  # ProxyWebsocketHandoff On on the module's routes
    h2: bool = False  # H2WebSockets on: WebSockets over HTTP/2 (2.4.58+, the vhost has Protocols h2)
    header: str = ""  # the comment lines every file starts with (what it is for, why, how to render it again)
    app_settings: list[dict[str, str]] = field(default_factory=list)  # {file, setting, value} on the app's side
    heartbeat: dict[str, object] = field(default_factory=dict)  # the figure the timeout is derived from
    timeout: int | None = None  # ProxyPass timeout=, seconds
    vhost: str = "server"  # "tls": proxy_conf goes inside the layout's TLS <VirtualHost> (tls_include names it)
    tls_include: str | None = None  # with vhost "tls": the file to Include there

    # --json: what was rendered and why; the routes, paths and vhost choice are in `files` already
    _omit = (
        *("path", "proxy_conf", "backend_path", "header", "vhost", "tls_include"),
        *("sizing", "capacity_file", "heartbeat", "timeout"),  # JSON: in `capacity` and `heartbeat`
    )
    _derived = ("capacity", "heartbeat_timeout")
    _renamed = {"heartbeat_timeout": "heartbeat"}
    _omit_unset = ("handoff", "h2", "app_settings", "capacity", "heartbeat_timeout")

    @property
    def capacity(self) -> dict[str, object] | None:
        """The MPM sizing with the name of the file that sets it."""
        return None if self.sizing is None else {**self.sizing.to_dict(), "file": self.capacity_file}

    @property
    def heartbeat_timeout(self) -> dict[str, object]:
        """The heartbeat figure with the timeout derived from it (empty: no heartbeat)."""
        return {**self.heartbeat, "timeout": self.timeout} if self.heartbeat else {}

    def text(self) -> str:
        return "".join(f"# file: {name}\n{body}\n" for name, body in self.files.items())
