"""`apachews config`: Apache snippets for WebSocket applications, per version, distribution and preset.

Every value that reaches a file is validated first (no directive injection); the templates in
templates/apache/ carry the syntax, this module decides what goes where.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from apachews import __version__, capacity, catalogue, distros, tunnelling
from apachews.capacity import Sizing
from apachews.catalogue import Release
from apachews.errors import BadInput, JobFailed
from apachews.rendering import Rendering
from apachews.resources import template_environment, templates_dir
from apachews.tunnelling import Tunnelling

if TYPE_CHECKING:
    from apachews.doctor import Defaults
    from apachews.httpd import SyntaxResult
    from apachews.transport import Transport

PREFER = tuple(style.value for style in Tunnelling)
# The idle limit rendered for an application with a heartbeat: this many of its intervals without a byte, at
# least IDLE_MIN_SECONDS. Silent that long, the client is gone (a browser that vanished without FIN or reset).
IDLE_HEARTBEATS = 6
IDLE_MIN_SECONDS = 30
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/\[\]-]+")
_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*")
_NETLOC_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]+)?")
# Words mod_authz_host reads as something other than a host: "Allow from all" lets everyone in on 2.2.
_ALLOW_RESERVED = ("all", "env", "none", "local", "granted", "denied")
_FILE_RE = re.compile(r"/[A-Za-z0-9._/-]+")
VHOSTS = ("server", "tls")  # --vhost: the routes at server level (every vhost), or inside the layout's TLS vhost
SSL_PROXY_CHECK_PEER_NAME_SINCE = catalogue.Version(2, 4, 5)  # SSLProxyCheckPeerName (2.2 has only ...PeerCN)
_HOST_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


VHOST_REWRITE_NOTE = (
    "The RewriteRule routes WebSocket upgrades only inside the <VirtualHost> that serves this path: "
    "Include the file there, not at server level (conf-enabled)."
)
"""A rewrite-based rendering's note: `apachews install --vhost` includes it there, and drops the note."""


@dataclass(frozen=True)
class Preset:
    """One application's preset, as declared in templates/apache/presets/<name>.json (README.md there)."""

    name: str
    description: str
    path: str
    backend: str
    routes: tuple[dict[str, str], ...]
    notes: tuple[str, ...]
    backend_follows_path: bool = False
    app: dict[str, tuple[str, ...]] = field(default_factory=dict)  # the app's own requests, for verify
    application: str = ""  # the application's name, for the docs table
    checked: dict[str, str] = field(default_factory=dict)  # version, date, how: what the preset was checked on
    heartbeat: dict[str, object] = field(default_factory=dict)  # figure (text) and seconds: the app's keepalive
    timeout: int | None = None  # seconds: ProxyPass timeout= on every route, derived from the heartbeat
    preserve_host: bool = False  # ProxyPreserveHost On
    request_headers: tuple[tuple[str, str], ...] = ()  # RequestHeader set NAME VALUE (VALUE may name {scheme})
    app_settings: tuple[dict[str, str], ...] = ()  # {file, setting, value, why}: the app's own side
    sticky: bool = False  # a balancer that is always sticky (a session's requests all go to its member)

    @property
    def idle_limit(self) -> int | None:
        """The tightest safe idle limit in seconds, from the heartbeat (None: the app has none)."""
        if not self.heartbeat:
            return None
        return max(IDLE_MIN_SECONDS, IDLE_HEARTBEATS * int(self.heartbeat["seconds"]))  # type: ignore[call-overload]


@functools.lru_cache(maxsize=1)
def _presets() -> dict[str, Preset]:
    """Every preset in templates/apache/presets/, one <name>.json each, in name order."""
    files = sorted((templates_dir() / "apache" / "presets").glob("*.json"))
    data = {file.stem: json.loads(file.read_text()) for file in files}
    return {
        name: Preset(
            name,
            p["description"],
            p["path"],
            p["backend"],
            tuple(p["routes"]),
            tuple(p["notes"]),
            p.get("backend_follows_path", False),
            {kind: tuple(paths) for kind, paths in p.get("app", {}).items()},
            p.get("application", ""),
            p.get("checked", {}),
            p.get("heartbeat") or {},
            p.get("timeout"),
            p.get("preserve_host", False),
            tuple((name, value) for name, value in p.get("request_headers", [])),
            tuple(p.get("app_settings", [])),
            p.get("sticky", False),
        )
        for name, p in data.items()
        if not name.startswith("_")
    }


def list_presets() -> list[Preset]:
    return list(_presets().values())


PRESETS_TABLE_BEGIN = "<!-- presets table: generated by `apachews config --list --markdown`, do not edit -->"
PRESETS_TABLE_END = "<!-- end of presets table -->"


def presets_table() -> str:
    """README's table of the presets, from the preset files themselves (a test keeps README current)."""
    rows = [
        "| preset | application | its WebSocket and HTTP paths | timeout, from the app's heartbeat | app-side settings "
        "| checked against |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in list_presets():
        urls = ", ".join(f"`{join_path(p.path, rel) or '/'}`" for rel in p.app.get("ws", ())) or "-"
        plain = ", ".join(f"`{join_path(p.path, rel) or '/'}`" for rel in p.app.get("http", ()))
        figure = str(p.heartbeat["figure"]) if p.heartbeat else "-"
        timeout = f"{p.timeout} s: {figure}" if p.timeout else figure
        settings = "; ".join(f"{s['file']}: {s['setting']}" for s in p.app_settings) or "-"
        checked = f"{p.checked['version']}, {p.checked['date']} ({p.checked['how']})" if p.checked else "-"
        paths = f"WS {urls}" + (f"; HTTP {plain}" if plain else "")
        rows.append(f"| {p.name} | {p.application or p.description} | {paths} | {timeout} | {settings} | {checked} |")
    return "\n".join([PRESETS_TABLE_BEGIN, *rows, PRESETS_TABLE_END]) + "\n"


def get_preset(name: str) -> Preset:
    presets = _presets()
    if name not in presets:
        raise BadInput(f"unknown preset {name!r}", hint="presets: " + ", ".join(presets))
    return presets[name]


# -- validation: every value is checked before it can reach a file ----------------------------------------
@dataclass(frozen=True)
class Backend:
    tls: bool
    netloc: str  # host:port, IPv6 in brackets
    path: str

    def url(self, kind: str, path_suffix: str = "") -> str:
        scheme = {"ws": "ws", "http": "http"}[kind] + ("s" if self.tls else "")
        return f"{scheme}://{self.netloc}{join_path(self.path, path_suffix) if path_suffix else self.path}"


def validate_backend(value: str, option: str = "--backend") -> Backend:
    if not _URL_CHARS.fullmatch(value or ""):
        raise BadInput(
            f"{option} {value!r} has characters that are not allowed in a backend URL",
            hint="use scheme://host:port/path with letters, digits and . _ ~ : / - only",
        )
    try:
        parts = urlsplit(value)
    except ValueError as error:  # e.g. "ws://[zz]/": brackets around something that is no IPv6 address
        raise BadInput(f"{option} {value!r} is not a valid URL: {error}") from None
    if parts.scheme not in ("ws", "wss", "http", "https"):
        raise BadInput(f"{option} {value!r}: the scheme must be ws, wss, http or https")
    if not _NETLOC_RE.fullmatch(parts.netloc):
        raise BadInput(
            f"{option} {value!r}: {parts.netloc!r} is not host[:port]",
            hint="e.g. ws://127.0.0.1:8080/ or ws://[::1]:8080/",
        )
    try:
        port = parts.port
    except ValueError:
        raise BadInput(f"{option} {value!r}: the port must be a number from 1 to 65535") from None
    host = parts.hostname or ""
    if port is not None and not 1 <= port <= 65535 or parts.port == 0:
        raise BadInput(f"{option} {value!r}: the port must be a number from 1 to 65535")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BadInput(f"{option} {value!r}: no user, query or fragment in a backend URL")
    try:
        address = ipaddress.ip_address(host)
        netloc_host = f"[{host}]" if address.version == 6 else host
    except ValueError:
        if not _HOST_RE.fullmatch(host):
            raise BadInput(f"{option} {value!r}: {host!r} is not a valid host name") from None
        netloc_host = host
    tls = parts.scheme in ("wss", "https")
    default_port = 443 if tls else 80
    path = parts.path or "/"
    validate_path(path, option)
    return Backend(tls, f"{netloc_host}:{port or default_port}", path)


@dataclass(frozen=True)
class Public:
    """Where users reach this server (--public-url): written into the app-side settings, never into Apache's files
    except the scheme (RequestHeader X-Forwarded-Proto)."""

    scheme: str
    netloc: str  # host[:port], the port only when it is not the scheme's default

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def host(self) -> str:
        return self.netloc.rsplit(":", 1)[0] if not self.netloc.endswith("]") else self.netloc


DEFAULT_PUBLIC_URL = "https://www.example.org"


def validate_public_url(value: str) -> Public:
    parts = urlsplit(value or "") if _URL_CHARS.fullmatch(value or "") else None
    if parts is None or parts.scheme not in ("http", "https") or not _NETLOC_RE.fullmatch(parts.netloc):
        raise BadInput(
            f"--public-url {value!r} is not scheme://host[:port]",
            hint="the URL users open, e.g. https://apps.example.org or http://10.0.0.5:8080 (http or https)",
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise BadInput(f"--public-url {value!r}: give scheme://host[:port] only", hint="the path is --path")
    default = {"http": ":80", "https": ":443"}[parts.scheme]
    netloc = parts.netloc[: -len(default)] if parts.netloc.endswith(default) else parts.netloc
    return Public(parts.scheme, netloc.lower())


def validate_path(value: str, option: str = "--path") -> str:
    if not _PATH_RE.fullmatch(value or "") or "//" in value or "/../" in f"{value}/" or "/./" in f"{value}/":
        raise BadInput(
            f"{option} {value!r} is not a safe URL path",
            hint="start with / and use letters, digits and . _ ~ / - only (no //, no ..)",
        )
    return value


@dataclass(frozen=True)
class Allowed:
    value: str
    is_ip: bool

    def __str__(self) -> str:
        return self.value


def validate_allow(value: str) -> Allowed:
    if (value or "").lower() in _ALLOW_RESERVED or (value or "").lower().startswith("env="):
        raise BadInput(
            f"--allow {value!r} is a keyword to Apache, not a client",
            hint="leave --allow out to let every client in; give IP addresses, CIDR ranges or host names",
        )
    try:
        return Allowed(str(ipaddress.ip_network(value, strict=False)), True)
    except ValueError:
        pass
    if _HOST_RE.fullmatch(value or ""):
        return Allowed(value, False)
    raise BadInput(f"--allow {value!r} is neither an IP address, a CIDR range nor a host name")


def validate_ca_file(value: str, option: str = "--backend-ca") -> str:
    """An absolute path to a PEM file of CA certificates (SSLProxyCACertificateFile)."""
    if not _FILE_RE.fullmatch(value or "") or "/../" in f"{value}/" or "//" in value:
        raise BadInput(
            f"{option} {value!r} is not an absolute file path apachews can write into a config",
            hint="give the absolute path of the PEM file (letters, digits and . _ / - only)",
        )
    return value


def join_path(base: str, suffix: str) -> str:
    if not suffix:
        return base
    return base.rstrip("/") + suffix


# -- rendering ----------------------------------------------------------------------------------------------
@dataclass
class Route:
    """One <Location> with its ProxyPass."""

    path: str
    target: str
    comment: str
    upgrade_option: bool = False  # mod_proxy_http: ProxyPass ... upgrade=websocket (2.4.47+)
    upgrade_directive: bool = False  # apachews module: ProxyWebsocketUpgrade On
    handoff: bool = False  # apachews module: ProxyWebsocketHandoff On
    websocket: bool = False  # WebSocket upgrades come through this route (ws, mixed, balancer)
    nohalfclose: bool = False  # stock 2.4.52+: SetEnv proxy-nohalfclose 1 (a FIN ends the tunnel)
    idle_timeout: int | None = None  # apachews module: ProxyWebsocketIdleTimeout (from the app's heartbeat)
    params: str = ""  # worker parameters from the preset (flushpackets=on, timeout=N)

    def to_template(self) -> dict[str, str | bool | int | None]:
        options = (" upgrade=websocket" if self.upgrade_option else "") + self.params
        return {
            "path": self.path,
            "target": self.target,
            "reverse": self.target,
            "options": options,
            "comment": self.comment,
            "upgrade_directive": self.upgrade_directive,
            "handoff": self.handoff,
            "nohalfclose": self.nohalfclose,
            "idle_timeout": self.idle_timeout,
        }


def proxy_target(location: str, url: str) -> str:
    """The ProxyPass URL for `location`, with a trailing slash exactly where the location has one: mod_proxy
    swaps the one prefix for the other, so a mismatch turns /vnc/vnc.html into //vnc.html (or drops a /)."""
    scheme, rest = url.split("://", 1)
    netloc, slash, path = rest.partition("/")
    path = "/" + path if slash else ""
    if location.endswith("/"):
        path = path if path.endswith("/") else path + "/"
    else:
        path = path.rstrip("/")
    return f"{scheme}://{netloc}{path}"


def _covering_route(spec: Preset, route: dict[str, str]) -> dict[str, str] | None:
    """The preset's HTTP route whose ProxyPass already maps `route` (a WebSocket route) to the same place."""
    for other in spec.routes:
        if other["kind"] != "http" or not route["suffix"].startswith(other["suffix"]):
            continue
        if route["backend_path"] == other["backend_path"] + route["suffix"][len(other["suffix"]) :]:
            return other
    return None


@dataclass(frozen=True)
class Deployment:
    """What one `config` (or `install`) deploys, built once from the options and passed through render:
    the preset, the release, the layout it goes into, the backends, the tunnelling asked for (None: the
    release's own), the MPM sizing (--max-websockets), ProxyWebsocketHandoff, and the route's other options."""

    preset: str
    release: Release
    layout: str = "generic"
    backends: tuple[str, ...] = ()
    tunnelling: str | Tunnelling | None = None  # --prefer
    sizing: Sizing | None = None
    handoff: bool = False
    path: str | None = None
    allow: tuple[str, ...] = ()
    tls: bool = False
    sticky: bool = False
    h2: bool = False
    public_url: str | None = None
    vhost: str = "server"
    backend_ca: str | None = None

    @classmethod
    def of(
        cls,
        preset: str,
        *,
        apache: str | Release,
        distro: str = "generic",
        backends: Sequence[str] = (),
        prefer: str | Tunnelling | None = None,
        allow: Sequence[str] = (),
        **options: Any,
    ) -> Deployment:
        """From the options as the commands name them (--apache, --distro, --prefer, ...)."""
        release = catalogue.as_release(apache)
        return cls(preset, release, distro, tuple(backends), prefer, allow=tuple(allow), **options)


def render(deployment: Deployment | str, **options: Any) -> Rendering:
    """The files of a `Deployment`; or of a preset with the options `Deployment.of` takes (apache=, ...)."""
    if isinstance(deployment, Deployment):
        if options:
            raise TypeError("give a Deployment or a preset with options, not both")
        return _render(deployment)
    return _render(Deployment.of(deployment, **options))


def _render(deployment: Deployment) -> Rendering:
    """`sizing` (capacity.size for --max-websockets) adds the MPM sizing file; `handoff` puts
    `ProxyWebsocketHandoff On` on the routes the apachews module tunnels (refused in other styles); `h2` says
    the vhost speaks HTTP/2 (Protocols h2): on 2.4.58+ WebSockets then open over it too (H2WebSockets on),
    before that a note says browsers open them over HTTP/1.1; `public_url` (scheme://host[:port] users open)
    goes into the app-side settings and notes. `vhost` "tls": the routes go in a file to Include inside the
    layout's TLS <VirtualHost> (its `tls_vhost` names it). A TLS backend's
    certificate is verified against `backend_ca` (a PEM file; default: the distribution's CA bundle)."""
    d = deployment
    preset, release, prefer, sizing, handoff, h2 = d.preset, d.release, d.tunnelling, d.sizing, d.handoff, d.h2
    spec = get_preset(preset)
    public = validate_public_url(d.public_url or DEFAULT_PUBLIC_URL)
    layout = distros.get(d.layout)
    style = tunnelling.choose(release, prefer)
    if handoff and style is not Tunnelling.APACHEWS:
        raise BadInput(
            f"--handoff is the apachews module's ProxyWebsocketHandoff; this rendering for Apache {release.version} "
            f"tunnels via {style.description}",
            hint=f"add --prefer apachews (the module: apachews build --apache {release.version} --backport), "
            "or leave out --handoff",
        )
    h2_websockets = h2 and tunnelling.has_h2_websockets(release)
    if h2_websockets and style is Tunnelling.APACHEWS:
        raise BadInput(
            "--h2: a WebSocket over HTTP/2 is one stream of a shared connection, which mod_http2 hands to "
            "mod_proxy's own tunnel; the apachews module polls the client's TCP socket, which carries every stream",
            hint=f"Apache {release.version} tunnels with its stock modules: leave out --prefer apachews and --handoff",
        )
    if sizing is not None and sizing.family != release.family:
        raise BadInput(f"the MPM sizing is for Apache {sizing.family}, the config for {release.version}")
    path = validate_path(d.path or spec.path)
    checked = [validate_backend(b) for b in d.backends]
    if not checked:
        default = validate_backend(spec.backend)
        # Apps that serve under their own prefix (Jupyter's base_url, GateOne's url_prefix) follow --path.
        checked = [Backend(default.tls, default.netloc, path) if spec.backend_follows_path else default]
    allowed = [validate_allow(a) for a in d.allow]
    kinds = {route["kind"] for route in spec.routes}
    balanced = bool(kinds & {"balancer", "balanced"})
    if len(checked) > 1 and not balanced:
        raise BadInput(f"preset {preset} takes one --backend; use the balancer preset for several")
    if d.sticky and not balanced:
        raise BadInput("--sticky is for the balancer preset", hint="leave --sticky out for this preset")
    sticky = d.sticky or spec.sticky
    if d.tls:
        checked = [Backend(True, b.netloc, b.path) for b in checked]
    uses_tls = any(b.tls for b in checked)
    vhost, backend_ca = d.vhost, d.backend_ca
    if vhost not in VHOSTS:
        raise BadInput(f"--vhost {vhost!r}: give one of {', '.join(VHOSTS)}")
    if backend_ca is not None and not uses_tls:
        raise BadInput("--backend-ca verifies a TLS backend", hint="give a wss:// or https:// --backend, or --tls")
    upgrade = style is Tunnelling.HTTP_UPGRADE
    # 2.4.47+: the stock mod_proxy_wstunnel hands upgrades to mod_proxy_http anyway, and a Location-based
    # ProxyPass is matched before mod_rewrite (pre_translate_name): one path for both goes through upgrade=.
    mixed_upgrade = upgrade or (style is Tunnelling.WSTUNNEL and release.proxy_http_upgrade)
    if kinds & {"mixed", "balanced"} and style is Tunnelling.WSTUNNEL and release.version < tunnelling.REWRITE_WS_SINCE:
        raise BadInput(
            f"preset {preset} needs HTTP and WebSocket on one path: the stock modules of Apache {release.version} "
            f"cannot route that (mod_rewrite has no ws:// targets before {tunnelling.REWRITE_WS_SINCE})",
            hint=f"use the apachews module: apachews build --apache {release.version} --backport, "
            f"then apachews config {preset} --apache {release.version} --prefer apachews",
        )

    routes: list[Route] = []
    rewrites: list[dict[str, str]] = []
    balancers: list[dict[str, object]] = []
    backend = checked[0]
    timeout = f" timeout={spec.timeout}" if spec.timeout else ""
    for route in spec.routes:
        kind, where = route["kind"], join_path(path, route["suffix"])
        http_target = proxy_target(where, backend.url("http", route["backend_path"]))
        params = "".join(f" {param}" for param in route.get("params", ())) + timeout
        if kind == "http":
            routes.append(Route(where, http_target, "HTTP", params=params))
        elif kind == "ws" and upgrade and _covering_route(spec, route) is not None:
            # One worker per backend URL prefix (AH01146): the HTTP route carries the upgrade for this path.
            covering = join_path(path, _covering_route(spec, route)["suffix"])  # type: ignore[index]
            next(r for r in routes if r.path == covering).upgrade_option = True
        elif kind == "ws" and upgrade:
            comment = "WebSocket (mod_proxy_http upgrade)"
            routes.append(Route(where, http_target, comment, upgrade_option=True, params=params, websocket=True))
        elif kind == "ws":
            target = proxy_target(where, backend.url("ws", route["backend_path"]))
            routes.append(Route(where, target, "WebSocket", handoff=handoff, params=params, websocket=True))
        elif kind == "mixed" and mixed_upgrade:
            comment = "HTTP and WebSocket (mod_proxy_http upgrade)"
            routes.append(Route(where, http_target, comment, upgrade_option=True, params=params, websocket=True))
        elif kind == "mixed" and style is Tunnelling.APACHEWS:
            comment = "HTTP and WebSocket (apachews module)"
            routes.append(
                Route(
                    where, http_target, comment, upgrade_directive=True, handoff=handoff, params=params, websocket=True
                )
            )
        elif kind == "mixed":
            ws_base = backend.url("ws", route["backend_path"]).rstrip("/")
            rewrites.append(_rewrite(where, ws_base, timeout))
            routes.append(Route(where, http_target, "HTTP (non-upgrade)", params=params))
        elif kind == "balancer":
            name = f"apachews-{preset}"
            # mod_proxy_http's upgrade is a worker parameter: it goes on each member.
            scheme = "http" if upgrade else "ws"
            balancers.append(_balancer(name, checked, scheme, route, sticky, upgrade, timeout))
            target = f"balancer://{name}" + ("/" if where.endswith("/") else "")
            # Only the apachews module reads ProxyWebsocketHandoff (handoff is refused in other styles).
            routes.append(Route(where, target, "WebSocket, load-balanced", handoff=handoff, websocket=True))
        elif kind == "balanced":
            # HTTP and WebSocket on one path over members that keep sessions (Socket.IO's polling): one balancer
            # of http:// members where the upgrade rides on them; on stock 2.4.7-2.4.46 a second one of ws://
            # members the RewriteRule sends upgrades to, both sticky on the same route cookie.
            name = f"apachews-{preset}"
            balancers.append(_balancer(name, checked, "http", route, True, mixed_upgrade, timeout))
            target = f"balancer://{name}" + ("/" if where.endswith("/") else "")
            if mixed_upgrade:
                routes.append(
                    Route(where, target, "HTTP and WebSocket, load-balanced (mod_proxy_http upgrade)", websocket=True)
                )
            elif style is Tunnelling.APACHEWS:
                comment = "HTTP and WebSocket, load-balanced (apachews module)"
                routes.append(Route(where, target, comment, upgrade_directive=True, handoff=handoff, websocket=True))
            else:
                ws_name = f"{name}-ws"
                balancers.append(_balancer(ws_name, checked, "ws", route, True, False, timeout))
                rewrites.append(_rewrite(where, f"balancer://{ws_name}", ""))
                routes.append(Route(where, target, "HTTP (non-upgrade), load-balanced"))
    # A client that vanishes (a killed browser's FIN): stock 2.4.52+ ends the tunnel at once with
    # proxy-nohalfclose; the apachews module ends it within its fin timeout anyway, and gets the app's idle limit.
    stock_nohalfclose = style is not Tunnelling.APACHEWS and release.version >= tunnelling.NOHALFCLOSE_SINCE
    for r in routes:
        carries_websockets = r.websocket or r.upgrade_option  # upgrade_option: an HTTP route covering a ws one
        if carries_websockets and stock_nohalfclose:
            r.nohalfclose = True
        if carries_websockets and style is Tunnelling.APACHEWS:
            r.idle_timeout = spec.idle_limit
    # Which ProxyPass wins where paths nest: on 2.2 the first one in the file (one server-wide list), on 2.4
    # the last <Location> merged. Either way the more specific (WebSocket) route must win.
    routes.sort(key=lambda r: len(r.path), reverse=release.family == "2.2")

    modules = ["proxy", "proxy_http"]
    if style.module and kinds & {"ws", "mixed", "balancer", "balanced"}:
        modules.append(style.module)
    if rewrites:
        modules.append("rewrite")
    if mixed_upgrade and not upgrade and "proxy_wstunnel" in modules and kinds <= {"mixed", "balanced"}:
        modules.remove("proxy_wstunnel")
    if balancers:
        modules.append("proxy_balancer")
        if release.family != "2.2":
            modules += ["slotmem_shm", "lbmethod_byrequests"]
    if (balancers and sticky) or spec.request_headers:
        modules.append("headers")
    if uses_tls:
        modules.append("ssl")
    if any(r.nohalfclose for r in routes):
        modules.append("env")
    if h2_websockets:
        modules.append("http2")

    header = (
        template_environment("apache")
        .get_template("header.j2")
        .render(
            apachews_version=__version__,
            preset=preset,
            apache=str(release.version),
            layout=layout.name,
            tunnelling=style.description,
            why=tunnelling.why(release, style, asked=prefer is not None),
            command=reproduce_command(
                dataclasses.replace(
                    d,
                    layout=layout.name,
                    path=path if path != spec.path else None,
                    tunnelling=style if prefer is not None else None,
                    sticky=sticky,
                )
            ),
        )
    )
    proxy_conf = (
        template_environment("apache")
        .get_template("proxy.conf.j2")
        .render(
            header=header.rstrip("\n"),
            preset=preset,
            apache=str(release.version),
            preserve_host=spec.preserve_host,
            request_headers=[(name, value.format(scheme=public.scheme)) for name, value in spec.request_headers],
            tls=uses_tls,
            balancers=balancers,
            cookie_path=path,
            backend_ca=validate_ca_file(backend_ca) if backend_ca else layout.ca_bundle,
            check_peer_name=release.version >= SSL_PROXY_CHECK_PEER_NAME_SINCE,
            rewrites=rewrites,
            locations=[r.to_template() for r in routes],
            family=release.family,
            allow=allowed,
            h2=h2_websockets,
        )
    )
    parts = distros.Parts(
        preset, release.family, style is Tunnelling.APACHEWS and release.needs_backport, tuple(modules), proxy_conf
    )
    websocket_paths = [join_path(path, r["suffix"]) for r in spec.routes if r["kind"] != "http"]
    values = {
        "path": path,
        "backend_path": backend.path,
        "ws_path": (websocket_paths[0] if websocket_paths else path).lstrip("/"),
        **_public_values(public, path, backend),
    }
    notes = _style_notes(release, style, preset) + [note.format(**values) for note in spec.notes]
    notes.append(dead_client_note(release, style, spec))
    app_settings = [{key: text.format(**values) for key, text in setting.items()} for setting in spec.app_settings]
    for setting in app_settings:
        why = f" ({setting['why']})" if "why" in setting else ""
        notes.append(f"{setting['file']}: {setting['setting']} = {setting['value']}{why}")
    if spec.heartbeat and spec.timeout:
        notes.append(
            f"Timeout {spec.timeout} s on these routes (ProxyPass timeout=), above the {spec.heartbeat['seconds']} s "
            f"of the application's heartbeat: {spec.heartbeat['figure']}."
        )
    if d.public_url is None and app_settings:
        notes.append(f"The settings above name {DEFAULT_PUBLIC_URL}: pass --public-url with the URL users open.")
    if handoff:
        notes.append(
            "ProxyWebsocketHandoff On: once open, a plain tunnel (no TLS on either side) gives its worker back and "
            "lives in its child's event loop (worker, event), or under prefork in the tunnel keeper, one process "
            f"beside the children; a loop holds (the open-files hard limit, at most {capacity.LOOP_MAX_OPEN_FILES}, "
            f"- {capacity.LOOP_RESERVED_FDS}) / 2 tunnels, more keep their worker. TLS tunnels stay with their "
            "worker."
        )
    if h2_websockets:
        notes.append(
            "H2WebSockets on: browsers open these WebSockets over HTTP/2 (RFC 8441) on a vhost with Protocols h2 "
            "(TLS) or h2c; mod_http2 hands each to the route above. Other vhosts keep HTTP/1.1 upgrades."
        )
    elif h2:
        notes.append(
            f"--h2: Apache {release.version}'s mod_http2 carries no WebSockets (H2WebSockets came in "
            f"{tunnelling.H2_WEBSOCKETS_SINCE}): browsers open them over HTTP/1.1 on a connection of their own, "
            "while the page itself uses HTTP/2. Nothing to configure for that."
        )
    if rewrites:
        notes.append(VHOST_REWRITE_NOTE)
    tls_include = None
    if vhost == "tls":
        files, tls_include = layout.tls_vhost_files(parts)
        notes += layout.tls_vhost_notes(parts, tls_include)
        if "ssl" not in modules:
            modules.append("ssl")
    else:
        files = layout.files(parts)
        notes += layout.notes(parts)
    if uses_tls:
        notes.append(
            f"The backend's certificate is verified (SSLProxyVerify require) against "
            f"{backend_ca or layout.ca_bundle}. When it does not verify (a self-signed backend, GateOne's own "
            "certificate), the WebSocket handshake fails with 502 (HTTP requests with 500 or 502) and the error log "
            "says 'Certificate Verification: Error (18): self signed certificate' (OpenSSL 3: self-signed) and "
            "'Error during SSL Handshake with remote server': give the backend's certificate (or its CA) with "
            "--backend-ca FILE."
        )
    capacity_file = None
    if sizing is not None:
        capacity_file = layout.capacity_file(release.family)
        files[capacity_file] = capacity.render(sizing, __version__, str(release.version))
        notes += capacity_notes(sizing, layout)
    files = {name: with_header(text, header) for name, text in files.items()}
    return Rendering(
        preset=preset,
        apache=str(release.version),
        distro=layout.name,
        tunnelling=style,
        files=files,
        modules=modules,
        notes=notes,
        websocket_paths=websocket_paths,
        path=path,
        proxy_conf=proxy_conf,
        backend_path=backend.path,
        sizing=sizing,
        capacity_file=capacity_file,
        handoff=handoff,
        h2=h2_websockets,
        header=header,
        app_settings=app_settings,
        heartbeat=dict(spec.heartbeat),
        timeout=spec.timeout,
        vhost=vhost,
        tls_include=tls_include,
    )


def _rewrite(where: str, target: str, timeout: str) -> dict[str, str]:
    """A RewriteRule that sends WebSocket upgrades under `where` to `target` (stock 2.4.7-2.4.46); `timeout`
    (" timeout=N") defines the worker it reaches with that timeout."""
    return {
        "path": where,
        "pattern": where.rstrip("/").replace(".", r"\."),
        "target": target,
        "worker": target if timeout and not target.startswith("balancer:") else "",
        "worker_params": timeout.strip(),
    }


def _balancer(
    name: str,
    members: Sequence[Backend],
    scheme: str,
    route: dict[str, str],
    sticky: bool,
    upgrade: bool,
    timeout: str,
) -> dict[str, object]:
    """A balancer:// of `members` (their `scheme` URLs, `route`'s backend_path) with a route per member when
    `sticky`. Members end without a slash: the balancer appends what follows balancer://NAME, which starts
    with one (a member "http://h:1/" under <Location "/"> would get //socket.io/)."""
    urls = [b.url(scheme, route["backend_path"]) for b in members]
    return {
        "name": name,
        "sticky": sticky,
        "member_options": (" upgrade=websocket" if upgrade else "") + timeout,
        "members": [{"url": url.rstrip("/"), "route": f"m{i}"} for i, url in enumerate(urls, 1)],
    }


def _public_values(public: Public, path: str, backend: Backend) -> dict[str, str]:
    """What notes and app-side settings may name: where users reach the app, and where Apache connects from."""
    host = backend.netloc.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    base = path.rstrip("/")
    proxy = ("::1" if host == "::1" else "127.0.0.1") if loopback else "this Apache's address"
    return {
        "public_url": public.url,
        "host": public.host,
        "netloc": public.netloc,
        "scheme": public.scheme,
        "ws_scheme": "wss" if public.scheme == "https" else "ws",
        "url": public.url + base,
        "base_path": base,
        "path_slash": base + "/",
        "proxy_address": proxy,
        "proxy_address_regex": re.escape(proxy) if loopback else proxy,
    }


def with_header(text: str, header: str) -> str:
    """`text` starting with the rendering's header (once, wherever a layout put the rendered routes); a capacity
    file keeps its marker line first (doctor reads it back)."""
    lines = set(header.splitlines())
    body = "".join(line for line in text.splitlines(keepends=True) if line.strip() not in lines)
    if body.startswith(capacity.MARKER):
        marker, _, rest = body.partition("\n")
        return f"{marker}\n{header}\n{rest.lstrip(chr(10))}"
    return f"{header}\n{body.lstrip(chr(10))}"


def reproduce_command(d: Deployment) -> str:
    """The `apachews config` command line that renders the same files (values are validated already)."""
    words = ["apachews", "config", d.preset, "--apache", str(d.release.version), "--distro", d.layout]
    words += [item for backend in d.backends for item in ("--backend", backend)]
    words += ["--path", d.path] if d.path else []
    words += [item for client in d.allow for item in ("--allow", client)]
    prefer = d.tunnelling
    words += ["--prefer", prefer.value if isinstance(prefer, Tunnelling) else prefer] if prefer is not None else []
    words += ["--public-url", d.public_url] if d.public_url else []
    if d.sizing is not None:
        words += ["--max-websockets", str(d.sizing.websockets), "--http-reserve", str(d.sizing.http_reserve)]
        words += ["--mpm", d.sizing.mpm]
    flags = {"--tls": d.tls, "--sticky": d.sticky, "--handoff": d.handoff, "--h2": d.h2}
    words += [flag for flag, given in flags.items() if given]
    return " ".join(shlex.quote(word) for word in words)


def mpm_sizing(
    release: Release,
    found: Defaults | None,
    max_websockets: str,
    http_reserve: str | None,
    mpm: str | None,
    handoff: bool,
    host: Transport | None = None,
) -> tuple[capacity.Sizing, str]:
    """The MPM sizing for --max-websockets, from the server found here (its own settings), else httpd's
    defaults for the family and MPM; and a note saying which."""
    from apachews import doctor
    from apachews.transport import LOCAL

    wanted = capacity.validate_websockets(max_websockets)
    reserve = capacity.validate_reserve(http_reserve) if http_reserve is not None else None
    family = release.family
    here = found is not None and found.source != "assumed" and mpm in (None, found.mpm)
    if here:
        settings = doctor.server_settings(found.control or found.source, host=host or LOCAL)  # type: ignore[union-attr]
        source = f"sized from the settings of the server at {found.source}"  # type: ignore[union-attr]
    else:
        mpm = mpm or ("prefork" if family == "2.2" else "event")
        settings = capacity.defaults(family, mpm)
        source = (
            f"sized from httpd's defaults for the {family} {mpm} MPM (pass --mpm; run config on the server itself, "
            "without --apache, to size from its own settings)"
        )
    current = capacity.compute(settings)
    sizing = capacity.size(current, wanted, reserve, handoff=handoff)
    return sizing, f"{source}: {current.summary()} now."


def capacity_notes(sizing: Sizing, layout: distros.Layout) -> list[str]:
    """What the sizing file changes, how to enable it, and the open-files limit it needs."""
    changes = ", ".join(f"{name} {value}" for name, value in sizing.directives())
    if sizing.handoff:
        what = (
            f"{layout.capacity_file(sizing.family)} sizes the {sizing.mpm} MPM for {sizing.websockets} WebSockets "
            f"handed off to {'the children' if sizing.threaded else 'the tunnel keeper'}'s event loop"
            f"{'s' if sizing.threaded else ''}, {sizing.http_reserve} workers for plain HTTP and "
            f"{sizing.handshake_workers} for handshakes: {changes}."
        )
    else:
        unit = "threads" if sizing.threaded else "processes"
        what = (
            f"{layout.capacity_file(sizing.family)} sizes the {sizing.mpm} MPM for {sizing.websockets} open "
            f"WebSockets (each holds one of the {sizing.max_workers} {unit}) and {sizing.http_reserve} left for "
            f"plain HTTP: {changes}."
        )
    where = f": {layout.open_files_note(sizing.family, sizing.open_files)}" if sizing.open_files_raise else ""
    if sizing.handoff and not sizing.threaded:
        files = (
            f"Open files: the tunnel keeper holds (its limit - {capacity.LOOP_RESERVED_FDS}) / 2 tunnels; started "
            f"as root it raises its own limit to {capacity.LOOP_MAX_OPEN_FILES} (else to the hard one): "
            f"{sizing.websockets} need {sizing.open_files}{where}."
        )
    elif sizing.handoff:
        per_child = (sizing.open_files - capacity.LOOP_RESERVED_FDS) // capacity.FDS_PER_TUNNEL
        spread = (
            f"lets one child hold all {sizing.websockets}"
            if per_child >= sizing.websockets
            else f"lets each child hold {per_child}, the rest go to other children or hold workers"
        )
        files = (
            f"Open files: a child's event loop holds (its limit - {capacity.LOOP_RESERVED_FDS}) / 2 tunnels (the "
            f"module raises each child's soft limit to the hard one, at most {capacity.LOOP_MAX_OPEN_FILES}); a "
            f"limit of {sizing.open_files} (RLIMIT_NOFILE) {spread}{where}."
        )
    elif sizing.open_files_raise:
        files = f"Open files: each Apache process needs a limit of at least {sizing.open_files} (RLIMIT_NOFILE){where}."
    else:
        held = (
            f"a child holds at most {sizing.threads_per_child} tunnels (2 descriptors each"
            if sizing.threaded
            else "a process holds 1 tunnel (2 descriptors"
        )
        files = (
            f"Open files: {held}, {sizing.open_files} with the rest): the usual limit of "
            f"{capacity.DEFAULT_OPEN_FILES} is enough."
        )
    if sizing.threaded:
        what += (
            f" ServerLimit is twice the {sizing.processes} children needed: children still holding tunnels after "
            "a graceful restart finish them beside their successors."
        )
    return [what, *layout.capacity_notes(sizing.family), files]


def dead_client_note(release: Release, style: Tunnelling, spec: Preset) -> str:
    """What ends the tunnel of a client that vanished, in this style on this release: after a killed browser's
    FIN, a cut network's reset, or neither (a client gone silently)."""
    limit, beat = spec.idle_limit, spec.heartbeat
    why = f" ({IDLE_HEARTBEATS} heartbeats: {beat['figure']})" if beat else ""
    tcp = "or TCP gives up on what is sent to it (about 15 minutes on Linux)"
    stock_fin = (
        "The backend is closed with a FIN: one that never closes on EOF (broadwayd) keeps its socket in CLOSE-WAIT "
        "(the apachews module resets it)."
    )
    if style is Tunnelling.APACHEWS:
        idle = f": ProxyWebsocketIdleTimeout {limit}{why}" if limit else " (ProxyWebsocketIdleTimeout, else timeout=)"
        return (
            "A client that vanishes: after its FIN (a killed browser) the tunnel lives on for at most "
            "ProxyWebsocketFinTimeout (default 5 s), after a reset not at all, and the backend is reset (one that "
            "never closes on EOF, like broadwayd, is freed too). One gone without either is ended once the tunnel "
            f"is silent both ways for the idle limit{idle}, {tcp}."
        )
    safe = f"; for this app Timeout {limit} in the <VirtualHost> serving it is safe{why}" if limit else ""
    wait = "the larger of the server's Timeout and the worker's timeout= (else ProxyTimeout)"
    if release.version >= tunnelling.NOHALFCLOSE_SINCE:
        return (
            "A client that vanishes: `SetEnv proxy-nohalfclose 1` (rendered above) ends the tunnel at its FIN (a "
            "killed browser) or reset; one gone without either holds its worker until the tunnel is silent both "
            f"ways for {wait}{safe}, {tcp}. {stock_fin}"
        )
    if release.version >= tunnelling.STOCK_TUNNEL_SINCE:
        return (
            "A client that vanishes: its FIN (a killed browser) is passed on and the tunnel then holds its worker "
            f"until silent both ways for {wait}, as does one gone without a FIN (proxy-nohalfclose needs 2.4.52)"
            f"{safe}, {tcp}. {stock_fin}"
        )
    return (
        f"A client that vanishes: {release.version}'s mod_proxy_wstunnel ends the tunnel at its FIN or reset, but "
        "nothing bounds one gone without either (it polls without a timeout: Timeout, ProxyTimeout and timeout= do "
        f"not apply) but the backend closing, {tcp}. {stock_fin}"
    )


def _style_notes(release: Release, style: Tunnelling, preset: str) -> list[str]:
    version = release.version
    if style is Tunnelling.APACHEWS and release.needs_backport:
        return [
            f"Apache {version} has no mod_proxy_wstunnel: build it with `apachews build --apache {version}` "
            "and install the .so first (apachews install does both)."
        ]
    if style is Tunnelling.APACHEWS and not release.stock_wstunnel_usable:
        return [
            f"Apache {version}'s stock mod_proxy_wstunnel reuses backend connections across handshakes and "
            f"busy-loops on client errors (fixed in 2.4.10), and tunnels refusals (CVE-2019-17567): this config "
            f"uses the apachews module in its place: `apachews build --apache {version} --backport`, then "
            "install its .so (apachews install does both)."
        ]
    if style is Tunnelling.APACHEWS:
        return [
            f"This config needs the apachews module in place of the stock mod_proxy_wstunnel: "
            f"`apachews build --apache {version} --backport`, then install its .so."
        ]
    if tunnelling.has_cve_2019_17567(release):
        return [
            f"Apache {version}'s stock mod_proxy_wstunnel tunnels whatever the backend answers, even a refusal "
            "(CVE-2019-17567), unless your vendor backported the fix (its package changelog names the CVE). This "
            "config uses it: nothing to build. The other choice is the apachews module, which passes a refusal on "
            "as a refusal and, with --handoff, gives each open tunnel's worker back (worker and event MPMs): "
            f"`apachews build --apache {version} --backport`, then `apachews config {preset} --apache {version} "
            "--prefer apachews --handoff`. Apache 2.4.47+ fixes it too."
        ]
    return []


# -- writing and checking -------------------------------------------------------------------------------------
def write(rendering: Rendering, out_dir: Path, force: bool = False) -> list[Path]:
    """Write every file or none: stage beside the target, refuse to overwrite unless `force`."""
    out_dir = Path(out_dir)
    targets = [out_dir / name for name in rendering.files]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise BadInput(f"would overwrite {', '.join(existing)}", hint="pass --force to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".apachews-config-", dir=out_dir))
    try:
        for name, text in rendering.files.items():
            staged = stage / name
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_text(text)
        for name in rendering.files:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / name, out_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return targets


def check(rendering: Rendering, binary: Path | None = None) -> SyntaxResult:
    """`httpd -t` of the rendering in a throwaway ServerRoot; modules a distro enables by other means
    (a2enmod) are loaded from the Apache's own modules directory."""
    from apachews import httpd

    server = httpd.locate(binary=binary)
    if server.version.family != catalogue.Version.parse(rendering.apache).family:
        raise BadInput(
            f"the config is for Apache {rendering.apache} but {server.binary} is {server.version}",
            hint="pass --httpd with an Apache of the same family (e.g. one from `apachews build --with-httpd`)",
        )
    missing = [m for m in rendering.modules if not (server.modules_dir / f"mod_{m}.so").exists()]
    if missing and not server.compiled_in() >= set(missing):
        raise BadInput(
            f"{server.binary} has no module(s) {', '.join(missing)} to check this config with",
            hint="check with an httpd that has them (apachews build --with-httpd), or leave out --check",
        )
    # Load every module first, in dependency order (proxy before its sub-modules), as a server that ran
    # a2enmod would; a .load file the distro layout ships is used as written.
    load_files = {Path(name).stem: text for name, text in rendering.files.items() if name.endswith(".load")}
    loads = [load_files.get(m) or distros.load_module_lines([m], server.modules_dir) for m in rendering.modules]
    snippets = {"00-modules.conf": "".join(loads)}
    snippets.update({Path(n).name: t for n, t in rendering.files.items() if not n.endswith(".load")})
    # A layout that wraps its files in <IfDefine>: define what its init script does, or the check would skip them.
    defines = distros.get(rendering.distro).defines
    mpm = rendering.sizing.mpm if rendering.sizing is not None else None  # the MPM a sizing file is for
    with httpd.ServerRoot(server, snippets, mpm=mpm, defines=defines) as root:
        return root.syntax_check()


def check_clean(rendering: Rendering, binary: Path | None = None) -> SyntaxResult:
    """`check`, refusing (JobFailed, with the check) a config httpd rejects, or accepts with warnings: a warning
    there (AH01146: a ProxyPass parameter dropped) is a directive that will not do what it says."""
    result = check(rendering, binary)
    if not result.ok:
        where = f"{result.file}, line {result.line}: " if result.line else ""
        raise JobFailed(f"httpd -t rejected the config: {where}{result.error}", check=result.to_dict())
    if result.warnings:
        raise JobFailed(
            "httpd -t accepted the config with warnings: " + "; ".join(result.warnings),
            hint="a warning here means a directive is ignored; report it if the rendering is apachews' own",
            check=result.to_dict(),
        )
    return result
