"""`render`: the files of a `Deployment`; the templates in templates/apache/ carry the syntax, this module
decides what goes where."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from apachews import __version__, capacity, catalogue, distros, tunnelling
from apachews.config.deployment import VHOSTS, Deployment, reproduce_command
from apachews.config.inputs import (
    DEFAULT_PUBLIC_URL,
    Backend,
    Public,
    join_path,
    proxy_target,
    validate_allow,
    validate_backend,
    validate_ca_file,
    validate_path,
    validate_public_url,
)
from apachews.config.notes import VHOST_REWRITE_NOTE, capacity_notes, dead_client_note, style_notes
from apachews.config.presets import Preset, get_preset
from apachews.errors import BadInput
from apachews.rendering import Rendering
from apachews.resources import template_environment
from apachews.tunnelling import Tunnelling

SSL_PROXY_CHECK_PEER_NAME_SINCE = catalogue.Version(2, 4, 5)  # SSLProxyCheckPeerName (2.2 has only ...PeerCN)


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


def _covering_route(spec: Preset, route: dict[str, str]) -> dict[str, str] | None:
    """The preset's HTTP route whose ProxyPass already maps `route` (a WebSocket route) to the same place."""
    for other in spec.routes:
        if other["kind"] != "http" or not route["suffix"].startswith(other["suffix"]):
            continue
        if route["backend_path"] == other["backend_path"] + route["suffix"][len(other["suffix"]) :]:
            return other
    return None


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
    notes = style_notes(release, style, preset) + [note.format(**values) for note in spec.notes]
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
