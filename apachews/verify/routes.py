"""verify's own routes (misbehaving backends, a never-closing one, a wss:// backend) under VERIFY_PREFIX,
written by the lab's route writer, and where they go beside the preset's rendered files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from apachews import catalogue, config, tunnelling
from apachews.catalogue import Tunnelling
from apachews.lab import routes as lab_routes
from apachews.lab.echo import EchoServer
from apachews.lab.holding import HoldingBackend
from apachews.verify.target import VERIFY_PREFIX

ROUTED = ("refuse-200", "refuse-403", "die", "hold", "tls")  # the backends verify routes to, in this order


def verify_routes(
    backends: Mapping[str, EchoServer | HoldingBackend],
    style: Tunnelling,
    tls_ca: Path | None = None,
    nohalfclose: bool = False,
    h2: bool = False,
) -> str:
    """verify's own routes under VERIFY_PREFIX, in `style`; with `nohalfclose` when the preset's WebSocket
    routes have it (what a vanished client meets must be the same); `h2`: with Protocols h2 h2c."""
    routes = [lab_routes.Route(f"{VERIFY_PREFIX}/{name}", backends[name].url) for name in ROUTED if name in backends]
    return lab_routes.write(
        routes,
        style,
        comment="apachews verify: routes to the misbehaving and the TLS backends",
        tls_ca=tls_ca if "tls" in backends else None,
        nohalfclose=nohalfclose,
        h2=h2,
    )


def keep_rewrites_off() -> str:
    return lab_routes.keep_rewrites_off(VERIFY_PREFIX)


def proxy_snippets(
    apache: str, preset: str, backends: dict[str, EchoServer], prefer: str | None
) -> tuple[dict[str, str], str, str]:
    """The rendered preset (generic layout) for the echo backend plus verify's routes, as ServerRoot snippets;
    returns them, the tunnelling style and the preset's WebSocket path. (live-verify uses this too.)"""
    release = catalogue.load().get(apache)
    style = tunnelling.choose(release, prefer)
    rendering = config.render(preset, apache=release, backends=[backends["echo"].url], path="/ws", prefer=style)
    files = with_verify_routes(rendering.files, verify_routes(backends, style), release.family)
    return files, style.value, rendering.websocket_paths[0]


def with_verify_routes(files: dict[str, str], routes: str, family: str) -> dict[str, str]:
    """The rendering's files and verify's routes in the order that lets the routes win where paths nest:
    2.2 takes the first matching ProxyPass (routes first), 2.4 the last <Location> merged (routes last)."""
    if family == "2.2":
        return {"00-verify-routes.conf": routes, **files}
    return {**files, "zz-verify-routes.conf": routes}


def preset_backends(preset: str, members: list[EchoServer]) -> list[str]:
    """The preset's default backend URL(s), pointed at the bundled app backends on 127.0.0.1."""
    spec = config.get_preset(preset)
    default = config.validate_backend(spec.backend)
    scheme = spec.backend.split("://", 1)[0]
    path = spec.path if spec.backend_follows_path else default.path
    count = len(members) if any(r["kind"] in ("balancer", "balanced") for r in spec.routes) else 1
    return [f"{scheme}://127.0.0.1:{member.port}{path}" for member in members[:count]]
