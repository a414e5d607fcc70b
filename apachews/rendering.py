"""`Rendering`: what `config.render` makes of a preset for a release and a layout (its files, modules, notes).

A module of its own, below config and distros: the layouts place a rendering without importing config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apachews.capacity import Sizing
from apachews.tunnelling import Tunnelling


@dataclass
class Rendering:
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

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "preset": self.preset,
            "websocket_paths": self.websocket_paths,
            "apache": self.apache,
            "distro": self.distro,
            "tunnelling": self.tunnelling.value,
            "modules": self.modules,
            "notes": self.notes,
            "files": self.files,
        }
        if self.sizing is not None:
            data["capacity"] = {**self.sizing.to_dict(), "file": self.capacity_file}
        if self.handoff:
            data["handoff"] = True
        if self.h2:
            data["h2"] = True
        if self.app_settings:
            data["app_settings"] = self.app_settings
        if self.heartbeat:
            data["heartbeat"] = {**self.heartbeat, "timeout": self.timeout}
        return data

    def text(self) -> str:
        return "".join(f"# file: {name}\n{body}\n" for name, body in self.files.items())
