"""`apachews diagnose`: the known WebSocket failures of a running Apache, each with its cause and its fix.

It reads what doctor reads (apachectl -V / -M / DUMP_INCLUDES: version, layout, loaded modules, config files,
error log), plus `apachectl -t`'s warnings, the routes in the config files (ProxyPass, RewriteRule [P],
BalancerMember, with file and line) and the end of the error log. Each known failure is a `Signature` below:
what it looks like (an error log line, or a route in the config), and the template in templates/apache/fixes/
its fix is rendered from, in Apache syntax, with this server's paths and routes. `probe()` tries the handshake
from the client side (loopback only) and `explain()` maps its answer (400, 403, 404, 502, 1006...) to causes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from apachews import distros, doctor
from apachews.catalogue import Version
from apachews.errors import BadInput
from apachews.lab import client
from apachews.resources import template_environment

LOG_TAIL_BYTES = 4 * 2**20  # the end of each error log is read, not all of it
PROBE_TIMEOUT = 10.0
FALLBACK_SINCE = Version(2, 4, 48)  # ProxyWebsocketFallbackToProxyHttp: mod_proxy_http takes ws:// routes
UPGRADE_PARAM_SINCE = Version(2, 4, 47)  # ProxyPass ... upgrade=websocket
# The module each proxy URL scheme needs (mod_proxy_http also takes ws:// and wss:// from 2.4.47 on).
SCHEME_MODULES = {
    "ws": "proxy_wstunnel",
    "wss": "proxy_wstunnel",
    "http": "proxy_http",
    "https": "proxy_http",
    "balancer": "proxy_balancer",
    "h2": "proxy_http2",
    "h2c": "proxy_http2",
}
_ERRNO = r"(?:\((?P<errno>-?\d+)\)(?P<reason>[^:]*): )?(?:\[(?:client|remote) [^\]]*\] )*"


@dataclass(frozen=True)
class Signature:
    """One known failure: how it shows (`log`, a pattern of an error log or `apachectl -t` line; None where
    the config shows it), what it is, and the fix template (templates/apache/fixes/<fix>.j2)."""

    name: str
    codes: tuple[str, ...]  # the AH numbers it shows as
    title: str
    log: re.Pattern[str] | None
    fix: str


SIGNATURES: dict[str, Signature] = {
    s.name: s
    for s in (
        Signature(
            "no-protocol-handler",
            ("AH01144",),
            "no module handles the route's URL scheme",
            re.compile(
                # 2.2 says "proxy: " where 2.4 has the AH number, and names no scheme
                r"(?:AH01144: |proxy: )No protocol handler was valid for the URL (?P<uri>\S+?)"
                r"(?: \(scheme '(?P<scheme>[^']+)'\)|\.(?:\s|$))"
            ),
            "load-module",
        ),
        Signature(
            "worker-sharing",
            ("AH01146",),
            "a ProxyPass parameter (upgrade=) is ignored: two routes share one backend worker",
            re.compile(
                r"AH01146: Ignoring parameter '(?P<key>[^=']+)=(?P<value>[^']*)' for worker '(?P<worker>[^']+)' "
                r"because of worker sharing"
            ),
            "worker-sharing",
        ),
        Signature(
            "reqtimeout",
            ("AH01382",),
            "mod_reqtimeout ends open tunnels",
            re.compile(r"(?:AH01382: |\] )Request (?P<stage>\w+) read timeout"),
            "reqtimeout",
        ),
        Signature(
            "backend-read",
            ("AH01102", "AH00898"),
            "the backend did not answer the handshake",
            re.compile(
                _ERRNO + r"(?:AH01102: |proxy: )error reading status line from remote server "
                r"(?P<host>[^\s:]+):(?P<port>\d+)"
            ),
            "backend-timeout",
        ),
        Signature(
            "backend-down",
            ("AH00957", "AH01114", "AH02452", "AH10101"),
            "the backend refuses connections",
            re.compile(
                _ERRNO + r"(?:AH00957: |proxy: )(?P<scheme>\w+): attempt to connect to (?P<addr>\S+) "
                r"\((?P<host>[^)]*)\) failed"
            ),
            "backend-down",
        ),
        Signature(
            "fallback-to-proxy-http",
            (),
            "mod_proxy_http, not mod_proxy_wstunnel, tunnels a ws:// route (ProxyWebsocketFallbackToProxyHttp)",
            None,
            "fallback",
        ),
        Signature(
            "upgrade-dropped",
            (),
            "the upgrade reaches the backend as plain keep-alive HTTP (Connection: Upgrade rewritten)",
            None,
            "upgrade-dropped",
        ),
        Signature(
            "keepalive-rewrite",
            (),
            "a keep-alive workaround strips the upgrade (force-proxy-request-1.0, RequestHeader unset Upgrade)",
            None,
            "keepalive",
        ),
        Signature("idle-timeout", (), "an idle WebSocket is closed without a close frame (1006)", None, "idle-timeout"),
        Signature("origin-check", (), "the application refuses the handshake's Origin", None, "preserve-host"),
        Signature("wrong-path", (), "no route, or the backend has nothing, at the WebSocket's path", None, ""),
    )
}
# The server stopped or restarted: what the log said before is history. (Not the "resuming normal operations"
# line of the start: children may serve, and log, before the parent writes it.)
_STOPPED = re.compile(
    r"caught SIGTERM, shutting down|caught SIGWINCH|SIGUSR1 received|SIGHUP received|Graceful restart requested"
)
# AH00898 follows AH01102 for the same request ("Error reading from remote server returned by /ws"): the URI.
_RETURNED_BY = re.compile(r"(?:AH00898: |proxy: )(?P<message>.+?) returned by (?P<uri>\S+)")


# -- the server's routes -----------------------------------------------------------------------------------
@dataclass
class Route:
    """A ProxyPass (or RewriteRule [P], BalancerMember, or a line that strips upgrades) with where it is."""

    file: str
    line: int
    kind: str  # ProxyPass, RewriteRule, BalancerMember; force10, unset-upgrade (keep-alive workarounds)
    path: str  # the URL path (or the rule's pattern) it serves
    url: str  # the backend URL
    params: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""  # the line as written
    fallback_off: bool = False  # ProxyWebsocketFallbackToProxyHttp Off applies to it
    preserve_host: bool = False  # ProxyPreserveHost On applies to it
    vhost: tuple[str, ...] = ()  # the ServerName and ServerAliases of its <VirtualHost>; () at server level

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower() if "://" in self.url else ""

    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def param(self, key: str) -> str | None:
        return next((v for k, v in self.params if k.lower() == key.lower()), None)

    def with_params(self, **changes: str) -> list[tuple[str, str]]:
        """The route's parameters with `changes` set (replacing the same key, else added)."""
        params = [(k, changes.pop(k.lower(), v)) for k, v in self.params]
        return params + list(changes.items())


_SECTION = re.compile(r"<(/?)(\w+)\s*([^>]*)>", re.IGNORECASE)


def _words(text: str) -> list[str]:
    return [a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', text)]


def scan_routes(files: Iterable[str], loaded: dict[str, str]) -> list[Route]:
    """The proxy routes in `files` (in reading order), honouring <IfModule>; Location context is kept."""
    routes: list[Route] = []
    flags: dict[tuple[str, str | None], bool] = {}  # (directive, <Location> or None: server/vhost) -> on
    for name in files:
        try:
            raw = Path(name).read_text(errors="replace").replace("\\\n", " ")
        except OSError:
            continue
        stack: list[tuple[str, str, bool]] = []  # (section, argument, active)
        vhost_start, vhost_names = -1, []  # index of the vhost's first route; its names
        for number, line in enumerate(raw.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            section = _SECTION.fullmatch(stripped)
            if section:
                closing, kind, argument = section.group(1), section.group(2).lower(), section.group(3).strip()
                if closing:
                    if stack:
                        stack.pop()
                    if kind == "virtualhost" and vhost_start >= 0:
                        for route in routes[vhost_start:]:
                            route.vhost = tuple(vhost_names)
                        vhost_start, vhost_names = -1, []
                    continue
                if kind == "virtualhost":
                    vhost_start, vhost_names = len(routes), []
                active = doctor._module_present(argument, loaded) if kind == "ifmodule" else True
                stack.append((kind, argument.strip('"'), active))
                continue
            if not all(active for _, _, active in stack):
                continue
            location = next((arg for kind, arg, _ in reversed(stack) if kind.startswith("location")), None)
            words = _words(stripped)
            directive = words[0].lower()
            if directive in ("servername", "serveralias") and vhost_start >= 0:
                vhost_names += [_host_name(w) for w in words[1:]]
            elif directive == "proxywebsocketfallbacktoproxyhttp" and len(words) > 1:
                flags["fallback-off", location] = words[1].lower() == "off"
            elif directive == "proxypreservehost" and len(words) > 1:
                flags["preserve-host", location] = words[1].lower() == "on"
            elif directive == "proxypass" and len(words) >= 2:
                args = words[1:]
                path = location if location is not None else args.pop(0)
                if not args or args[0] == "!":
                    continue
                params = [tuple(a.split("=", 1)) for a in args[1:] if "=" in a]
                routes.append(Route(name, number, "ProxyPass", path or "/", args[0], params, stripped))  # type: ignore[arg-type]
            elif directive == "rewriterule" and len(words) >= 4 and re.search(r"\bP\b", words[3].upper()):
                routes.append(Route(name, number, "RewriteRule", words[1], words[2], [], stripped))
            elif directive in ("setenv", "setenvif", "setenvifnocase", "browsermatch") and any(
                w.lower().lstrip("!").startswith("force-proxy-request-1.0") and not w.startswith("!") for w in words[1:]
            ):
                routes.append(Route(name, number, "force10", location or "", "", [], stripped))
            elif directive == "requestheader" and len(words) >= 3 and words[1].lower() == "unset":
                if words[2].lower() == "upgrade" and not any(w.startswith("expr=") for w in words[3:]):
                    routes.append(Route(name, number, "unset-upgrade", location or "", "", [], stripped))
            elif directive == "balancermember" and len(words) >= 2:
                params = [tuple(a.split("=", 1)) for a in words[2:] if "=" in a]
                routes.append(Route(name, number, "BalancerMember", "", words[1], params, stripped))  # type: ignore[arg-type]
    for route in routes:  # a <Location>'s own setting, else the server's (vhosts are not told apart)
        route.fallback_off = flags.get(("fallback-off", route.path), flags.get(("fallback-off", None), False))
        route.preserve_host = flags.get(("preserve-host", route.path), flags.get(("preserve-host", None), False))
    return routes


def _host_name(value: str) -> str:
    """A ServerName or Host header without scheme and port, lower-case."""
    value = value.split("://", 1)[-1].lower()
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def route_for(routes: Sequence[Route], path: str, host: str | None = None) -> Route | None:
    """The ProxyPass serving `path` (for the Host `host`: that <VirtualHost>'s routes and the server-level
    ones, when a vhost has that name): the longest path prefix (2.4 <Location>s merge; the longest wins)."""
    candidates = [r for r in routes if r.kind == "ProxyPass" and _under(path, r.path)]
    if host is not None and any(_host_name(host) in r.vhost for r in candidates):
        candidates = [r for r in candidates if not r.vhost or _host_name(host) in r.vhost]
    return max(candidates, key=lambda r: len(r.path), default=None)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/") or prefix == "/"


# -- what diagnose reads -------------------------------------------------------------------------------------
@dataclass
class ServerView:
    control: str
    version: str
    distro: str
    modules_dir: str | None
    loaded: dict[str, str]
    config_files: list[str]
    error_logs: list[str]
    routes: list[Route]
    syntax: str  # what `apachectl -t` said
    timeout: dict[str, str]
    reqtimeout: list[str]
    log_level: str

    @property
    def release(self) -> Version:
        return Version.parse(self.version)

    def has(self, module: str) -> bool:
        return f"{module}_module" in self.loaded


def read_server(
    apachectl: str | Path | None = None, config_file: str | Path | None = None, logs: Sequence[Path] = ()
) -> ServerView:
    """doctor's view of the server, its routes, `apachectl -t`, and which error logs to read."""
    report = doctor.examine(apachectl, config_file=config_file)
    syntax = doctor.run_control(Path(report.control), "-t")
    level = doctor.scan_directives(report.config_files, ["LogLevel"], report.loaded_modules)["LogLevel"]
    error_logs = [str(p) for p in logs] or ([report.error_log] if report.error_log else [])
    return ServerView(
        control=report.control,
        version=report.version,
        distro=report.distro,
        modules_dir=report.modules_dir,
        loaded=report.loaded_modules,
        config_files=report.config_files,
        error_logs=error_logs,
        routes=scan_routes(report.config_files, report.loaded_modules),
        syntax=(syntax.stdout + syntax.stderr).strip(),
        timeout=report.timeout,
        reqtimeout=report.reqtimeout,
        log_level=level[-1] if level else "warn",
    )


def log_tail(path: str | Path, size: int = LOG_TAIL_BYTES) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


# -- findings -------------------------------------------------------------------------------------------------
@dataclass
class Finding:
    signature: str
    codes: list[str]
    title: str
    cause: str
    evidence: list[str]
    fix: str = ""  # Apache config lines
    commands: list[str] = field(default_factory=list)  # to run besides (a2enmod, reload)
    count: int = 1  # matching log lines

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def text(self) -> str:
        codes = f" ({', '.join(self.codes)})" if self.codes else ""
        lines = [f"{self.title}{codes}", f"  cause: {self.cause}"]
        seen = f" ({self.count} lines, the last:)" if self.count > 1 else ""
        lines += [f"  seen{seen}: {line}" for line in self.evidence[:3]]
        if self.fix:
            lines.append("  fix:")
            lines += [f"    {line}" if line else "" for line in self.fix.rstrip("\n").splitlines()]
        lines += [f"  run: {command}" for command in self.commands]
        return "\n".join(lines)


def _render(signature: str, **values: object) -> str:
    """The fix of `signature` (its template in templates/apache/fixes/) for these values."""
    values.setdefault("replaces", [])
    template = SIGNATURES[signature].fix
    return template_environment("apache").get_template(f"fixes/{template}.j2").render(**values)


def _replaces(route: Route | None) -> list[str]:
    """The line a fix's route takes the place of, and where it is."""
    return [f"{route.text}  ({route.where()})"] if route is not None else []


def _reload(view: ServerView) -> str:
    return f"{view.control} -t && {view.control} -k graceful"


def _load_fix(view: ServerView, scheme: str, evidence: list[str], count: int) -> Finding:
    module = SCHEME_MODULES.get(scheme, f"proxy_{scheme}")
    if scheme in ("ws", "wss") and view.release >= UPGRADE_PARAM_SINCE:
        module = "proxy_http" if not view.has("proxy_http") else "proxy_wstunnel"
    needed = [m for m in ("proxy", module) if not view.has(m)] or [module]
    lines = distros.load_module_lines(needed, view.modules_dir or "modules", guarded=False)
    commands = [f"a2enmod {' '.join(needed)}"] if view.distro == "debian" else []
    also = (
        f" (from {UPGRADE_PARAM_SINCE} mod_proxy_http also tunnels ws:// routes)"
        if scheme in ("ws", "wss") and view.release >= UPGRADE_PARAM_SINCE
        else ""
    )
    return Finding(
        "no-protocol-handler",
        ["AH01144"],
        SIGNATURES["no-protocol-handler"].title,
        f"a route proxies to {scheme}:// but mod_{module} is not loaded{also}: mod_proxy answers 500",
        evidence,
        _render("no-protocol-handler", scheme=scheme, load_lines=lines.rstrip("\n")),
        [*commands, _reload(view)],
        count,
    )


def _worker_fix(view: ServerView, match: re.Match[str], evidence: list[str], count: int) -> Finding:
    worker, key, value = match["worker"], match["key"], match["value"]
    sharing = [r for r in view.routes if r.kind == "ProxyPass" and r.url.rstrip("/").startswith(worker.rstrip("/"))]
    owner = min(sharing, key=lambda r: (len(r.url), r.line), default=None)
    others = [r for r in sharing if r is not owner]
    cause = (
        f"{len(sharing) or 'two or more'} ProxyPass point into the backend URL {worker}: httpd makes one worker "
        f"of them and keeps the first one's parameters, so {key}={value} of the other is dropped"
    )
    if key.lower() == "upgrade":
        cause += " and the WebSocket handshake reaches the backend as plain HTTP"
    fix = ""
    if owner is not None:
        fix = _render(
            "worker-sharing",
            worker=worker,
            owner_path=owner.path,
            owner_url=owner.url,
            params=owner.with_params(**{key.lower(): value}),
            remove=[f"{r.text}  ({r.where()})" for r in others],
            replaces=_replaces(owner),
        )
    return Finding(
        "worker-sharing", ["AH01146"], SIGNATURES["worker-sharing"].title, cause, evidence, fix, [_reload(view)], count
    )


def _backend_route(view: ServerView, uri: str | None, host: str, port: str) -> Route | None:
    if uri:
        route = route_for(view.routes, uri)
        if route is not None:
            return route
    netloc = f"{host}:{port}"
    return next((r for r in view.routes if r.kind == "ProxyPass" and netloc in r.url), None)


def from_logs(view: ServerView, lines: Sequence[str]) -> list[Finding]:
    """Findings from error log (and `apachectl -t`) lines: one per signature and subject, with the last line."""
    groups: dict[tuple[str, ...], list[tuple[re.Match[str], str]]] = {}
    returned_by: dict[str, str] = {}
    for index, line in enumerate(lines):
        for signature in SIGNATURES.values():
            match = signature.log.search(line) if signature.log else None
            if match is None:
                continue
            subject = {
                "no-protocol-handler": ("scheme",),
                "worker-sharing": ("worker", "key"),
                "reqtimeout": ("stage",),
                "backend-read": ("host", "port", "errno"),
                "backend-down": ("addr",),
            }[signature.name]
            groups.setdefault((signature.name, *(match[g] or "" for g in subject)), []).append((match, line))
            if signature.name == "backend-read":  # the request's URI is on the next AH00898 line
                after = next((m for n in lines[index + 1 : index + 4] if (m := _RETURNED_BY.search(n))), None)
                if after:
                    returned_by[line] = after["uri"]
    findings = []
    for key, hits in groups.items():
        name = key[0]
        match, last = hits[-1]
        evidence = [last.strip()]
        if name == "no-protocol-handler":
            route = route_for(view.routes, match["uri"])  # 2.2 names no scheme: the route's says it
            scheme = match["scheme"] or (route.scheme if route is not None else "ws")
            findings.append(_load_fix(view, scheme.lower(), evidence, len(hits)))
        elif name == "worker-sharing":
            findings.append(_worker_fix(view, match, evidence, len(hits)))
        elif name == "reqtimeout":
            findings.append(_reqtimeout(view, match["stage"], evidence, len(hits)))
        elif name == "backend-read":
            findings.append(_backend_read(view, match, returned_by.get(last), evidence, len(hits)))
        elif name == "backend-down":
            findings.append(_backend_down(view, match, evidence, len(hits)))
    return findings


def _reqtimeout(view: ServerView, stage: str, evidence: list[str], count: int) -> Finding:
    shipped = "; ".join(view.reqtimeout) or "its built-in defaults (body 20 s on 2.4)"
    cause = (
        f"mod_reqtimeout timed out a {stage} read ({shipped}). Where the {stage} is an open WebSocket, the "
        "tunnelling module left mod_reqtimeout's filter on the client connection, and every tunnel silent for "
        "longer is cut (the browser sees 1006)"
    )
    return Finding(
        "reqtimeout",
        ["AH01382"],
        SIGNATURES["reqtimeout"].title,
        cause,
        evidence,
        _render("reqtimeout"),
        [_reload(view)],
        count,
    )


def _seconds(view: ServerView) -> int:
    value = view.timeout.get("ProxyTimeout") or view.timeout.get("Timeout", "60")
    digits = re.match(r"\d+", value)
    return int(digits.group(0)) if digits else 60


def _backend_read(view: ServerView, match: re.Match[str], uri: str | None, evidence: list[str], count: int) -> Finding:
    route = _backend_route(view, uri, match["host"], match["port"])
    backend = f"{match['host']}:{match['port']}"
    timed_out = match["errno"] == "70007" or "timeout" in (match["reason"] or "").lower()
    current = _seconds(view)
    if timed_out:
        cause = (
            f"the backend {backend} took the connection but did not answer the handshake within {current} s "
            "(ProxyTimeout, else Timeout): Apache answered 502 or 504. The app is overloaded or stuck, or that port is "
            "not the WebSocket server"
        )
    else:
        cause = (
            f"the backend {backend} closed the connection without an answer ({match['reason'] or 'no reason'}): "
            "Apache answered 502. The app crashed or refused the handshake, or it speaks another protocol there "
            "(TLS on a ws:// route: use wss://)"
        )
    fix = ""
    if route is not None and route.kind == "ProxyPass" and timed_out:
        fix = _render(
            "backend-read",
            current=current,
            path=route.path,
            url=route.url,
            params=route.with_params(timeout=str(max(60, 2 * current))),
            replaces=_replaces(route),
        )
    if uri:
        evidence.append(f"request: {uri}")
    return Finding(
        "backend-read",
        ["AH01102", "AH00898"],
        SIGNATURES["backend-read"].title,
        cause,
        evidence,
        fix,
        [_reload(view)] if fix else [],
        count,
    )


def _backend_down(view: ServerView, match: re.Match[str], evidence: list[str], count: int) -> Finding:
    addr = match["addr"]
    route = next((r for r in view.routes if r.kind == "ProxyPass" and addr in r.url), None)
    cause = (
        f"nothing accepts connections at {addr} ({match['reason'] or 'connect failed'}): Apache answers 503 and "
        "keeps the route in its error state for 60 s (retry) even after the backend is back"
    )
    fix = ""
    if route is not None:
        fix = _render(
            "backend-down",
            backend=addr,
            path=route.path,
            url=route.url,
            params=route.with_params(retry="0"),
            replaces=_replaces(route),
        )
    return Finding(
        "backend-down",
        ["AH00957", "AH01114"],
        SIGNATURES["backend-down"].title,
        cause,
        evidence,
        fix,
        [_reload(view)] if fix else [],
        count,
    )


def from_config(view: ServerView, websocket_paths: Sequence[str] = ()) -> list[Finding]:
    """Findings the config shows by itself: keep-alive workarounds that strip the upgrade, ws:// routes
    mod_proxy_http takes (2.4.48+), and http:// routes that carry a WebSocket path without passing it on."""
    findings = []
    for route in view.routes:
        if route.kind not in ("force10", "unset-upgrade"):
            continue
        where = f"in <Location {route.path}>" if route.path else "at server or vhost level"
        what = (
            "sends every proxied request as HTTP/1.0 with Connection: close (force-proxy-request-1.0)"
            if route.kind == "force10"
            else "drops the client's Upgrade header before mod_proxy sees it"
        )
        findings.append(
            Finding(
                "keepalive-rewrite",
                [],
                SIGNATURES["keepalive-rewrite"].title,
                f"this line, {where}, {what}: mod_proxy_http then sends no Upgrade and no Connection: Upgrade, "
                "the backend answers the handshake as a plain GET (200, 400 or 426), never 101",
                [f"{route.text}  ({route.where()})"],
                _render("keepalive-rewrite", kind=route.kind, replaces=_replaces(route)),
                [_reload(view)],
            )
        )
    if view.release >= FALLBACK_SINCE and view.has("proxy_http") and view.has("proxy_wstunnel"):
        taken = [r for r in view.routes if r.kind == "ProxyPass" and r.scheme in ("ws", "wss") and not r.fallback_off]
        for route in taken:
            http_url = "http" + route.url[2:]
            findings.append(
                Finding(
                    "fallback-to-proxy-http",
                    [],
                    SIGNATURES["fallback-to-proxy-http"].title,
                    f"on {view.version}, mod_proxy_wstunnel hands {route.scheme}:// routes to mod_proxy_http "
                    "(ProxyWebsocketFallbackToProxyHttp is On by default): mod_proxy_http does the handshake and "
                    "the tunnel with its own timeouts (ProxyTimeout, else Timeout), and plain HTTP requests on "
                    "this path reach the WebSocket backend",
                    [f"{route.text}  ({route.where()})"],
                    _render(
                        "fallback-to-proxy-http",
                        path=route.path,
                        http_url=http_url,
                        params=route.with_params(upgrade="websocket"),
                        replaces=_replaces(route),
                    ),
                    [_reload(view)],
                )
            )
    for path in websocket_paths:
        finding = _upgrade_dropped(view, path, [])
        if finding is not None:
            findings.append(finding)
    return findings


def _upgrade_dropped(view: ServerView, path: str, evidence: list[str], host: str | None = None) -> Finding | None:
    route = route_for(view.routes, path, host)
    if route is None or route.scheme not in ("http", "https") or route.param("upgrade"):
        return None
    if any(r.kind == "RewriteRule" and r.url.lower().startswith("ws") for r in view.routes):
        return None  # a RewriteRule [P] to ws:// takes the upgrades first (stock 2.4.7-2.4.46 renderings)
    if "ProxyWebsocketUpgrade" in Path(route.file).read_text(errors="replace"):
        return None  # the apachews module's directive carries them on this http:// route
    release = view.release
    upgrade_param = release >= UPGRADE_PARAM_SINCE
    ws_url = ("wss" if route.scheme == "https" else "ws") + route.url[len(route.scheme) :]
    fix = _render(
        "upgrade-dropped",
        upgrade_param=upgrade_param,
        path=route.path if upgrade_param else path,
        url=route.url,
        params=route.with_params(upgrade="websocket"),
        apache=view.version,
        family=release.family,
        ws_url=ws_url,
        replaces=_replaces(route) if upgrade_param else [],
    )
    return Finding(
        "upgrade-dropped",
        [],
        SIGNATURES["upgrade-dropped"].title,
        f"{path} is served by an {route.scheme}:// ProxyPass without upgrade=: mod_proxy_http drops the hop-by-hop "
        "Upgrade header and sends Connection: Keep-Alive (or close) in place of Connection: Upgrade, so the "
        "backend sees a plain GET and answers it as one (200, 400 or 426), never 101",
        [*evidence, f"{route.text}  ({route.where()})"],
        fix,
        [_reload(view)],
    )


def since_start(lines: Sequence[str]) -> list[str]:
    """The log lines since the server last stopped or restarted (AH00491, AH00493, AH00494...): what an earlier
    config or an earlier backend did is not this server's problem any more."""
    stops = [i for i, line in enumerate(lines) if _STOPPED.search(line)]
    return list(lines[stops[-1] + 1 :] if stops else lines)


@dataclass
class Rendered:
    """A file apachews rendered, among the server's config files: what its header says it is for."""

    file: str
    preset: str
    apache: str
    layout: str
    tunnelling: str
    command: str


_HEADER = re.compile(
    r"^# Generated by apachews \S+: preset (?P<preset>\S+) for Apache (?P<apache>[\d.]+), (?P<layout>\w+) layout, "
    r"tunnelling: (?P<tunnelling>.+)\.\n# Why: .*\n# Reproduce: (?P<command>.+)$",
    re.MULTILINE,
)


def rendered_files(files: Iterable[str]) -> list[Rendered]:
    """The config files apachews rendered (their header), in reading order."""
    found = []
    for name in files:
        try:
            with open(name, errors="replace") as handle:
                head = handle.read(2048)
        except OSError:
            continue
        match = _HEADER.search(head)
        if match:
            found.append(Rendered(name, **match.groupdict()))
    return found


def from_rendered(view: ServerView) -> list[Finding]:
    """apachews files rendered for another release or layout than the server's: the command for this one."""
    findings = []
    for rendered in rendered_files(view.config_files):
        if (rendered.apache, rendered.layout) == (view.version, view.distro):
            continue
        words = rendered.command.split()
        for option, value in (("--apache", view.version), ("--distro", view.distro)):
            if option in words:
                words[words.index(option) + 1] = value
        findings.append(
            Finding(
                "rendered-for-another-server",
                [],
                "a config apachews rendered for another release or layout",
                f"{rendered.file} was rendered for Apache {rendered.apache} ({rendered.layout} layout, tunnelling: "
                f"{rendered.tunnelling}); this server is {view.version} ({view.distro} layout), whose tunnelling "
                "style and directives may differ: render it for this server and compare",
                [f"{rendered.file}: # Reproduce: {rendered.command}"],
                commands=[" ".join(words), _reload(view)],
            )
        )
    return findings


def examine(view: ServerView, websocket_paths: Sequence[str] = ()) -> list[Finding]:
    """Every finding for the server: `apachectl -t` and its error logs since it started, then its config and
    the files apachews rendered into it."""
    lines = view.syntax.splitlines()
    for log in view.error_logs:
        lines += since_start(log_tail(log))
    return from_logs(view, lines) + from_config(view, websocket_paths) + from_rendered(view)


def blind_spots(view: ServerView) -> list[str]:
    """What diagnose could not see, and what would show it."""
    said = []
    if not view.error_logs or not any(Path(log).is_file() for log in view.error_logs):
        said.append("no error log found to read: pass --log FILE (the ErrorLog of the vhost serving WebSockets)")
    if view.has("reqtimeout") and not re.search(r"reqtimeout:(info|debug|trace)|^(info|debug|trace)", view.log_level):
        said.append(
            "mod_reqtimeout logs the tunnels it ends (AH01382) only at LogLevel info: add `LogLevel warn "
            "reqtimeout:info` to see them"
        )
    return said


# -- from the client side ------------------------------------------------------------------------------------
@dataclass
class Probe:
    url: str
    host: str  # the Host header sent
    origin: str
    status: int = 0  # 101, or the refusal; 0: no HTTP answer
    reason: str = ""
    accepted: bool = False  # Sec-WebSocket-Accept right
    close_code: int | None = None  # 1006: closed without a close frame
    idle: float = 0.0
    echoed: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def text(self) -> str:
        if self.error and not self.status:
            return f"{self.url}: {self.error}"
        said = f"{self.url} (Host {self.host}, Origin {self.origin}): {self.status} {self.reason}".rstrip()
        if self.status == 101:
            said += ", accept " + ("right" if self.accepted else "WRONG")
            if self.idle:
                after = f"after {self.idle:g} s idle"
                said += f"; {after}: " + ("echoed" if self.echoed else f"closed {self.close_code or ''}".rstrip())
        return said


_HEADER_VALUE = re.compile(r"[!-~]{1,255}")  # printable ASCII, no spaces or line breaks


def loopback_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path?query) of a ws:// or wss:// URL on this machine; anything else is refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise BadInput(f"--url {url!r} is not a URL: {error}") from None
    if parts.scheme not in ("ws", "wss"):
        raise BadInput(f"--url {url!r}: give a ws:// or wss:// URL", hint="e.g. --url ws://127.0.0.1/ws")
    host = parts.hostname or ""
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if not local:
        raise BadInput(
            f"--url {url!r}: diagnose only talks to this machine (127.0.0.1, ::1, localhost)",
            hint="give the loopback address, and the site's name as --host: --url ws://127.0.0.1/ws --host example.org",
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port or (443 if parts.scheme == "wss" else 80), path


def probe(url: str, host: str | None = None, origin: str | None = None, idle: float = 0.0) -> Probe:
    """A browser's handshake to `url` (loopback), with a realistic Host and Origin; with `idle`, the open
    WebSocket then stays silent that long and a message is sent: echoed, or how it was closed."""
    scheme, address, port, path = loopback_url(url)
    for option, value in (("--host", host), ("--origin", origin)):
        if value is not None and not _HEADER_VALUE.fullmatch(value):
            raise BadInput(f"{option} {value!r} is not a header value", hint="e.g. --host example.org:443")
    default_port = 443 if scheme == "wss" else 80
    host = host or (address if port == default_port else f"{address}:{port}")
    origin = origin or f"{'https' if scheme == 'wss' else 'http'}://{host}"
    result = Probe(url, host, origin, idle=idle)
    try:
        sock: socket.socket = socket.create_connection((address, port), timeout=PROBE_TIMEOUT)
    except OSError as error:
        result.error = f"cannot connect to {address}:{port}: {error.strerror or error}"
        return result
    try:
        if scheme == "wss":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # loopback: the name is not ours
            sock = context.wrap_socket(sock, server_hostname=host.split(":")[0])
        answer = client.upgrade(sock, path, host, origin=origin, extra="User-Agent: apachews-diagnose\r\n")
        if not answer.status:
            result.error = f"no HTTP answer ({answer.received} bytes)"
            return result
        result.status, result.reason, result.accepted = answer.status, answer.reason, answer.accepted
        if result.status == 101 and idle > 0:
            _idle_then_echo(sock, answer.rest, idle, result)
    except OSError as error:
        result.error = str(error)
    finally:
        sock.close()
    return result


def _idle_then_echo(sock: socket.socket, pending: bytes, idle: float, result: Probe) -> None:
    """Silent for `idle` seconds, then one message: its echo, a close frame (its code), or 1006 (no frame)."""
    reader = StreamReader()
    reader.feed_data(pending)
    time.sleep(idle)  # the silence is the test: the server's timeouts act in it
    message = b"apachews diagnose"
    try:
        sock.sendall(Frame(Opcode.TEXT, message).serialize(mask=True, extensions=[]))
    except OSError:
        result.close_code = 1006
        return
    sock.settimeout(PROBE_TIMEOUT)
    while True:
        parser = Frame.parse(reader.read_exact, mask=False, extensions=[])
        try:
            next(parser)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    result.close_code = 1006
                    return
                reader.feed_data(chunk)
                next(parser)
        except StopIteration as done:
            frame: Frame = done.value
        except OSError:
            result.close_code = 1006
            return
        if frame.opcode is Opcode.CLOSE:
            result.close_code = Close.parse(frame.data).code if frame.data else 1005
            return
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            result.echoed = True
            return


def explain(view: ServerView, result: Probe, log_before: dict[str, int] | None = None) -> list[Finding]:
    """The likely causes of what the probe met, from the server's routes and what its logs said meanwhile."""
    path = urlsplit(result.url).path or "/"
    route = route_for(view.routes, path, result.host)
    fresh = _new_log_lines(view, log_before or {})
    evidence = [f"probe: {result.text()}"]
    findings = from_logs(view, fresh)
    for finding in findings:
        finding.evidence.insert(0, evidence[0])
    status = result.status
    if result.error and not status:
        return findings or [Finding("no-answer", [], "no HTTP answer", result.error, evidence)]
    if status == 101 and result.close_code == 1006:
        seconds = _seconds(view)
        params = route.with_params(timeout=str(max(3600, 2 * seconds))) if route else []
        apachews_module = "ProxyWebsocketIdleTimeout" in " ".join(
            Path(f).read_text(errors="replace") for f in {r.file for r in view.routes}
        )
        fix = (
            _render(
                "idle-timeout",
                path=route.path,
                url=route.url,
                params=params,
                module_idle=apachews_module,
                seconds=max(3600, 2 * seconds),
                replaces=_replaces(route),
            )
            if route
            else ""
        )
        findings.append(
            Finding(
                "idle-timeout",
                [],
                SIGNATURES["idle-timeout"].title,
                f"the WebSocket opened, then after {result.idle:g} s of silence the connection was cut without a "
                f"close frame: a timeout of the tunnel (ProxyTimeout / Timeout: {seconds} s, a timeout= on the "
                "route, or mod_reqtimeout where the module leaves it on)",
                evidence,
                fix,
                [_reload(view)] if fix else [],
            )
        )
    elif status in (200, 400, 426) and route is not None:
        dropped = _upgrade_dropped(view, path, evidence, result.host)
        stripped = [f for f in from_config(view) if f.signature == "keepalive-rewrite"]
        if dropped is not None:
            findings.append(dropped)
        elif stripped:
            findings += [dataclasses.replace(f, evidence=[*evidence, *f.evidence]) for f in stripped]
        elif status == 400:
            findings.append(_host_origin(view, route, path, evidence, status))
    elif status == 403:
        denied = [line for line in fresh if "AH01630" in line or "AH01797" in line]
        if denied:
            findings.append(
                Finding(
                    "access-denied",
                    ["AH01630"],
                    "Apache's own access control refuses the client",
                    f"a Require (or Allow/Deny) rule for {path} does not let this client in",
                    [*evidence, denied[-1]],
                )
            )
        elif route is not None:
            findings.append(_host_origin(view, route, path, evidence, status))
    elif status == 404:
        routes = ", ".join(f"{r.path} -> {r.url}" for r in view.routes if r.kind == "ProxyPass") or "none"
        cause = (
            f"no route serves {path}: Apache answered itself (its routes: {routes})"
            if route is None
            else f"{path} goes to {route.url} ({route.where()}), where the application has nothing: the path it "
            "serves under differs (a prefix the app does not know, a trailing slash on one side only)"
        )
        findings.append(Finding("wrong-path", [], SIGNATURES["wrong-path"].title, cause, evidence))
    elif status in (502, 503, 504) and not findings:
        findings.append(
            Finding(
                "backend-down",
                [],
                "the backend did not serve the handshake",
                f"Apache answered {status} for {path}: the backend "
                + (f"{route.url} " if route else "")
                + "is not running, not listening there, or crashed; its error log says which",
                evidence,
            )
        )
    return findings


def _host_origin(view: ServerView, route: Route, path: str, evidence: list[str], status: int) -> Finding:
    if not route.preserve_host:
        return Finding(
            "origin-check",
            [],
            SIGNATURES["origin-check"].title,
            f"the application answered {status} to the handshake. It compares the Origin header with the Host "
            f"it receives, and without ProxyPreserveHost it receives the backend's ({route.url}), not the "
            "browser's",
            evidence,
            _render("origin-check", path=route.path),
            [_reload(view)],
        )
    return Finding(
        "origin-check",
        [],
        SIGNATURES["origin-check"].title,
        f"the application answered {status} to the handshake although it gets the browser's Host "
        "(ProxyPreserveHost On): its own Origin check refuses this origin; allow the site's origin in the "
        "application's settings (e.g. Jupyter's allow_origin, GateOne's origins)",
        evidence,
    )


def log_marks(view: ServerView) -> dict[str, int]:
    """Each error log's size now, to read only what a probe adds."""
    return {log: Path(log).stat().st_size if Path(log).is_file() else 0 for log in view.error_logs}


def _new_log_lines(view: ServerView, marks: dict[str, int]) -> list[str]:
    lines: list[str] = []
    for log in view.error_logs:
        try:
            with open(log, "rb") as handle:
                handle.seek(marks.get(log, 0))
                lines += handle.read(LOG_TAIL_BYTES).decode("utf-8", "replace").splitlines()
        except OSError:
            continue
    return lines
