"""`resolve`: what a `Deployment`'s options come to (its preset, layout, tunnelling style, backends, ...), each value
validated and checked against the others before anything is rendered."""

from __future__ import annotations

from dataclasses import dataclass

from apachews import distros, tunnelling
from apachews.catalogue import Release
from apachews.config.deployment import VHOSTS, Deployment
from apachews.config.inputs import (
    DEFAULT_PUBLIC_URL,
    Allowed,
    Backend,
    Public,
    join_path,
    validate_allow,
    validate_backend,
    validate_ca_file,
    validate_path,
    validate_public_url,
)
from apachews.config.presets import Preset, get_preset
from apachews.errors import BadInput
from apachews.tunnelling import Tunnelling


@dataclass(frozen=True)
class Resolved:
    """A `Deployment` resolved: the values every step of the rendering reads."""

    deployment: Deployment
    spec: Preset
    layout: distros.Layout
    style: Tunnelling
    public: Public
    path: str  # where the routes go (--path, else the preset's)
    backends: tuple[Backend, ...]  # at least one
    allowed: tuple[Allowed, ...]
    sticky: bool  # the balancer's members keep a session's requests
    h2_websockets: bool  # H2WebSockets on: --h2 on a release whose mod_http2 carries WebSockets
    backend_ca: str  # the CA file a TLS backend is verified against

    @property
    def release(self) -> Release:
        return self.deployment.release

    @property
    def preset(self) -> str:
        return self.deployment.preset

    @property
    def handoff(self) -> bool:
        return self.deployment.handoff

    @property
    def backend(self) -> Backend:
        return self.backends[0]

    @property
    def kinds(self) -> set[str]:
        """The kinds of the preset's routes (http, ws, mixed, balancer, balanced)."""
        return {route["kind"] for route in self.spec.routes}

    @property
    def upgrade(self) -> bool:
        """WebSockets ride on mod_proxy_http's upgrade=websocket."""
        return self.style is Tunnelling.HTTP_UPGRADE

    @property
    def mixed_upgrade(self) -> bool:
        """HTTP and WebSocket on one path go through upgrade=: 2.4.47+'s stock mod_proxy_wstunnel hands upgrades to
        mod_proxy_http anyway, and a Location-based ProxyPass is matched before mod_rewrite (pre_translate_name)."""
        return self.upgrade or (self.style is Tunnelling.WSTUNNEL and self.release.proxy_http_upgrade)

    @property
    def uses_tls(self) -> bool:
        return any(b.tls for b in self.backends)

    @property
    def websocket_paths(self) -> list[str]:
        return [join_path(self.path, r["suffix"]) for r in self.spec.routes if r["kind"] != "http"]


def resolve(d: Deployment) -> Resolved:
    """`d`'s values, validated (BadInput names the option at fault); `sizing` (capacity.size for --max-websockets)
    must be for the release's family, `handoff` (ProxyWebsocketHandoff On) needs the apachews module, `h2` says the
    vhost speaks HTTP/2 (WebSockets open over it on 2.4.58+), `public_url` is where users reach the app, `vhost`
    "tls" puts the routes in the layout's TLS <VirtualHost>, and a TLS backend is verified against `backend_ca`
    (default: the distribution's CA bundle)."""
    spec = get_preset(d.preset)
    public = validate_public_url(d.public_url or DEFAULT_PUBLIC_URL)
    layout = distros.get(d.layout)
    style = tunnelling.choose(d.release, d.tunnelling)
    h2_websockets = _check_style(d, style)
    path = validate_path(d.path or spec.path)
    backends = _backends(d, spec, path)
    allowed = tuple(validate_allow(a) for a in d.allow)
    _check_options(d, spec, style, backends)
    backend_ca = validate_ca_file(d.backend_ca) if d.backend_ca else layout.ca_bundle
    sticky = d.sticky or spec.sticky
    return Resolved(d, spec, layout, style, public, path, backends, allowed, sticky, h2_websockets, backend_ca)


def _check_style(d: Deployment, style: Tunnelling) -> bool:
    """Refuse what `style` cannot do (--handoff, --h2, a sizing for another family); whether WebSockets open over
    HTTP/2."""
    release = d.release
    if d.handoff and style is not Tunnelling.APACHEWS:
        raise BadInput(
            f"--handoff is the apachews module's ProxyWebsocketHandoff; this rendering for Apache {release.version} "
            f"tunnels via {style.description}",
            hint=f"add --prefer apachews (the module: apachews build --apache {release.version} --backport), "
            "or leave out --handoff",
        )
    h2_websockets = d.h2 and tunnelling.has_h2_websockets(release)
    if h2_websockets and style is Tunnelling.APACHEWS:
        raise BadInput(
            "--h2: a WebSocket over HTTP/2 is one stream of a shared connection, which mod_http2 hands to "
            "mod_proxy's own tunnel; the apachews module polls the client's TCP socket, which carries every stream",
            hint=f"Apache {release.version} tunnels with its stock modules: leave out --prefer apachews and --handoff",
        )
    if d.sizing is not None and d.sizing.family != release.family:
        raise BadInput(f"the MPM sizing is for Apache {d.sizing.family}, the config for {release.version}")
    return h2_websockets


def _backends(d: Deployment, spec: Preset, path: str) -> tuple[Backend, ...]:
    """The --backend URLs, else the preset's; all TLS with --tls."""
    checked = [validate_backend(b) for b in d.backends]
    if not checked:
        default = validate_backend(spec.backend)
        # Apps that serve under their own prefix (Jupyter's base_url, GateOne's url_prefix) follow --path.
        checked = [Backend(default.tls, default.netloc, path) if spec.backend_follows_path else default]
    return tuple(Backend(True, b.netloc, b.path) if d.tls else b for b in checked)


def _check_options(d: Deployment, spec: Preset, style: Tunnelling, backends: tuple[Backend, ...]) -> None:
    """Refuse options the preset or the release cannot honour together."""
    kinds = {route["kind"] for route in spec.routes}
    balanced = bool(kinds & {"balancer", "balanced"})
    if len(backends) > 1 and not balanced:
        raise BadInput(f"preset {d.preset} takes one --backend; use the balancer preset for several")
    if d.sticky and not balanced:
        raise BadInput("--sticky is for the balancer preset", hint="leave --sticky out for this preset")
    if d.vhost not in VHOSTS:
        raise BadInput(f"--vhost {d.vhost!r}: give one of {', '.join(VHOSTS)}")
    if d.backend_ca is not None and not any(b.tls for b in backends):
        raise BadInput("--backend-ca verifies a TLS backend", hint="give a wss:// or https:// --backend, or --tls")
    version = d.release.version
    if kinds & {"mixed", "balanced"} and style is Tunnelling.WSTUNNEL and version < tunnelling.REWRITE_WS_SINCE:
        raise BadInput(
            f"preset {d.preset} needs HTTP and WebSocket on one path: the stock modules of Apache {version} "
            f"cannot route that (mod_rewrite has no ws:// targets before {tunnelling.REWRITE_WS_SINCE})",
            hint=f"use the apachews module: apachews build --apache {version} --backport, "
            f"then apachews config {d.preset} --apache {version} --prefer apachews",
        )
