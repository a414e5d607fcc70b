"""The routes of a rendering: one <Location> per preset route, the balancers and RewriteRules some of them need,
and the modules they load; in the shape proxy.conf.j2 writes them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from apachews import tunnelling
from apachews.config.inputs import Backend, join_path, proxy_target
from apachews.config.presets import Preset
from apachews.config.resolve import Resolved
from apachews.tunnelling import Tunnelling


@dataclass(frozen=True)
class Worker:
    """The parameters of the worker (the backend connection) a ProxyPass defines."""

    params: tuple[str, ...] = ()  # the preset's own (flushpackets=on), written as they are
    timeout: int | None = None  # timeout=, from the app's heartbeat


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
    worker: Worker = Worker()  # the parameters of the worker ProxyPass defines


@dataclass
class Routing:
    """What proxy.conf.j2 writes: the <Location>s, the RewriteRules for upgrades, the balancers."""

    routes: list[Route] = field(default_factory=list)
    rewrites: list[dict[str, object]] = field(default_factory=list)
    balancers: list[dict[str, object]] = field(default_factory=list)


def routing(r: Resolved) -> Routing:
    """The routes of `r`'s preset in `r`'s tunnelling style, in the order where the more specific one wins."""
    result = Routing()
    for route in r.spec.routes:
        _KINDS[route["kind"]](r, route, result)
    _end_tunnels(r, result.routes)
    # Which ProxyPass wins where paths nest: on 2.2 the first one in the file (one server-wide list), on 2.4
    # the last <Location> merged. Either way the more specific (WebSocket) route must win.
    result.routes.sort(key=lambda route: len(route.path), reverse=r.release.family == "2.2")
    return result


def modules(r: Resolved, routing: Routing) -> list[str]:
    """The modules the routes need, in load order."""
    kinds = r.kinds
    names = ["proxy", "proxy_http"]
    if r.style.module and kinds & {"ws", "mixed", "balancer", "balanced"}:
        names.append(r.style.module)
    if routing.rewrites:
        names.append("rewrite")
    if r.mixed_upgrade and not r.upgrade and "proxy_wstunnel" in names and kinds <= {"mixed", "balanced"}:
        names.remove("proxy_wstunnel")
    if routing.balancers:
        names.append("proxy_balancer")
        if r.release.family != "2.2":
            names += ["slotmem_shm", "lbmethod_byrequests"]
    if (routing.balancers and r.sticky) or r.spec.request_headers:
        names.append("headers")
    if r.uses_tls:
        names.append("ssl")
    if any(route.nohalfclose for route in routing.routes):
        names.append("env")
    if r.h2_websockets:
        names.append("http2")
    return names


# -- one function per kind of preset route ---------------------------------------------------------------------
def _where(r: Resolved, route: dict[str, str]) -> str:
    return join_path(r.path, route["suffix"])


def _target(r: Resolved, route: dict[str, str], kind: str) -> str:
    """The ProxyPass URL of `route` on the (first) backend, `kind` "http" or "ws"."""
    return proxy_target(_where(r, route), r.backend.url(kind, route["backend_path"]))


def _worker(r: Resolved, route: dict[str, str]) -> Worker:
    return Worker(tuple(route.get("params", ())), r.spec.timeout)


def _http(r: Resolved, route: dict[str, str], out: Routing) -> None:
    out.routes.append(Route(_where(r, route), _target(r, route, "http"), "HTTP", worker=_worker(r, route)))


def _ws(r: Resolved, route: dict[str, str], out: Routing) -> None:
    where, worker = _where(r, route), _worker(r, route)
    covering = _covering_route(r.spec, route) if r.upgrade else None
    if covering is not None:
        # One worker per backend URL prefix (AH01146): the HTTP route carries the upgrade for this path.
        next(other for other in out.routes if other.path == _where(r, covering)).upgrade_option = True
    elif r.upgrade:
        target, comment = _target(r, route, "http"), "WebSocket (mod_proxy_http upgrade)"
        out.routes.append(Route(where, target, comment, upgrade_option=True, worker=worker, websocket=True))
    else:
        target = _target(r, route, "ws")
        out.routes.append(Route(where, target, "WebSocket", handoff=r.handoff, worker=worker, websocket=True))


def _mixed(r: Resolved, route: dict[str, str], out: Routing) -> None:
    """HTTP and WebSocket on one path: upgrade= on mod_proxy_http, the apachews module's ProxyWebsocketUpgrade,
    or (stock 2.4.7-2.4.46) a RewriteRule that sends the upgrades to the ws:// backend."""
    where, target, worker = _where(r, route), _target(r, route, "http"), _worker(r, route)
    if r.mixed_upgrade:
        comment = "HTTP and WebSocket (mod_proxy_http upgrade)"
        out.routes.append(Route(where, target, comment, upgrade_option=True, worker=worker, websocket=True))
    elif r.style is Tunnelling.APACHEWS:
        comment = "HTTP and WebSocket (apachews module)"
        out.routes.append(
            Route(where, target, comment, upgrade_directive=True, handoff=r.handoff, worker=worker, websocket=True)
        )
    else:
        ws_base = r.backend.url("ws", route["backend_path"]).rstrip("/")
        out.rewrites.append(_rewrite(where, ws_base, r.spec.timeout))
        out.routes.append(Route(where, target, "HTTP (non-upgrade)", worker=worker))


def _balancer_route(r: Resolved, route: dict[str, str], out: Routing) -> None:
    """WebSockets over several backends."""
    where, name = _where(r, route), f"apachews-{r.preset}"
    # mod_proxy_http's upgrade is a worker parameter: it goes on each member.
    scheme = "http" if r.upgrade else "ws"
    out.balancers.append(_balancer(name, r.backends, scheme, route, r.sticky, r.upgrade, r.spec.timeout))
    target = f"balancer://{name}" + ("/" if where.endswith("/") else "")
    # Only the apachews module reads ProxyWebsocketHandoff (handoff is refused in other styles).
    out.routes.append(Route(where, target, "WebSocket, load-balanced", handoff=r.handoff, websocket=True))


def _balanced(r: Resolved, route: dict[str, str], out: Routing) -> None:
    """HTTP and WebSocket on one path over members that keep sessions (Socket.IO's polling): one balancer of
    http:// members where the upgrade rides on them; on stock 2.4.7-2.4.46 a second one of ws:// members the
    RewriteRule sends upgrades to, both sticky on the same route cookie."""
    where, name = _where(r, route), f"apachews-{r.preset}"
    out.balancers.append(_balancer(name, r.backends, "http", route, True, r.mixed_upgrade, r.spec.timeout))
    target = f"balancer://{name}" + ("/" if where.endswith("/") else "")
    if r.mixed_upgrade:
        comment = "HTTP and WebSocket, load-balanced (mod_proxy_http upgrade)"
        out.routes.append(Route(where, target, comment, websocket=True))
    elif r.style is Tunnelling.APACHEWS:
        comment = "HTTP and WebSocket, load-balanced (apachews module)"
        out.routes.append(Route(where, target, comment, upgrade_directive=True, handoff=r.handoff, websocket=True))
    else:
        ws_name = f"{name}-ws"
        out.balancers.append(_balancer(ws_name, r.backends, "ws", route, True, False, r.spec.timeout))
        out.rewrites.append(_rewrite(where, f"balancer://{ws_name}", None))
        out.routes.append(Route(where, target, "HTTP (non-upgrade), load-balanced"))


_KINDS: dict[str, Callable[[Resolved, dict[str, str], Routing], None]] = {
    "http": _http,
    "ws": _ws,
    "mixed": _mixed,
    "balancer": _balancer_route,
    "balanced": _balanced,
}


def _end_tunnels(r: Resolved, routes: list[Route]) -> None:
    """A client that vanishes (a killed browser's FIN): stock 2.4.52+ ends the tunnel at once with
    proxy-nohalfclose; the apachews module ends it within its fin timeout anyway, and gets the app's idle limit."""
    stock_nohalfclose = r.style is not Tunnelling.APACHEWS and r.release.version >= tunnelling.NOHALFCLOSE_SINCE
    for route in routes:
        carries_websockets = route.websocket or route.upgrade_option  # upgrade_option: an HTTP route covering a ws one
        if carries_websockets and stock_nohalfclose:
            route.nohalfclose = True
        if carries_websockets and r.style is Tunnelling.APACHEWS:
            route.idle_timeout = r.spec.idle_limit


def _covering_route(spec: Preset, route: dict[str, str]) -> dict[str, str] | None:
    """The preset's HTTP route whose ProxyPass already maps `route` (a WebSocket route) to the same place."""
    for other in spec.routes:
        if other["kind"] != "http" or not route["suffix"].startswith(other["suffix"]):
            continue
        if route["backend_path"] == other["backend_path"] + route["suffix"][len(other["suffix"]) :]:
            return other
    return None


def _rewrite(where: str, target: str, timeout: int | None) -> dict[str, object]:
    """A RewriteRule that sends WebSocket upgrades under `where` to `target` (stock 2.4.7-2.4.46); a `timeout`
    defines the worker it reaches with that timeout (a balancer's members have theirs)."""
    return {
        "path": where,
        "pattern": where.rstrip("/").replace(".", r"\."),
        "target": target,
        "worker": target if timeout and not target.startswith("balancer:") else "",
        "timeout": timeout,
    }


def _balancer(
    name: str,
    members: Sequence[Backend],
    scheme: str,
    route: dict[str, str],
    sticky: bool,
    upgrade: bool,
    timeout: int | None,
) -> dict[str, object]:
    """A balancer:// of `members` (their `scheme` URLs, `route`'s backend_path) with a route per member when
    `sticky`. Members end without a slash: the balancer appends what follows balancer://NAME, which starts
    with one (a member "http://h:1/" under <Location "/"> would get //socket.io/)."""
    urls = [b.url(scheme, route["backend_path"]) for b in members]
    return {
        "name": name,
        "sticky": sticky,
        "upgrade": upgrade,  # mod_proxy_http's upgrade=websocket on each member
        "timeout": timeout,
        "members": [{"url": url.rstrip("/"), "route": f"m{i}"} for i, url in enumerate(urls, 1)],
    }
