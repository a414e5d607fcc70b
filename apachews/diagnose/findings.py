"""Findings from what a server shows: its error log (`from_logs`), its config (`from_config`) and the files
apachews rendered into it (`from_rendered`); each with its cause and its fix in Apache syntax."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from apachews import distros
from apachews.diagnose.routes import Route, route_for
from apachews.diagnose.signatures import (
    _RETURNED_BY,
    _STOPPED,
    FALLBACK_SINCE,
    SCHEME_MODULES,
    SIGNATURES,
    UPGRADE_PARAM_SINCE,
)
from apachews.diagnose.view import ServerView, log_tail
from apachews.resources import template_environment
from apachews.serial import Serialised


# -- findings -------------------------------------------------------------------------------------------------
@dataclass
class Finding(Serialised):
    signature: str
    codes: list[str]
    title: str
    cause: str
    evidence: list[str]
    fix: str = ""  # Apache config lines
    commands: list[str] = field(default_factory=list)  # to run besides (enabling a module, reload)
    count: int = 1  # matching log lines

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


def render_fix(signature: str, **values: object) -> str:
    """The fix of `signature` (its template in templates/apache/fixes/) for these values."""
    values.setdefault("replaces", [])
    template = SIGNATURES[signature].fix
    return template_environment("apache").get_template(f"fixes/{template}.j2").render(**values)


def replaced_lines(route: Route | None) -> list[str]:
    """The line a fix's route takes the place of, and where it is."""
    return [f"{route.text}  ({route.where()})"] if route is not None else []


def reload_command(view: ServerView) -> str:
    return f"{view.control} -t && {view.control} -k graceful"


def _load_fix(view: ServerView, scheme: str, evidence: list[str], count: int) -> Finding:
    module = SCHEME_MODULES.get(scheme, f"proxy_{scheme}")
    if scheme in ("ws", "wss") and view.release >= UPGRADE_PARAM_SINCE:
        module = "proxy_http" if not view.has("proxy_http") else "proxy_wstunnel"
    needed = [m for m in ("proxy", module) if not view.has(m)] or [module]
    lines = distros.load_module_lines(needed, view.modules_dir or "modules", guarded=False)
    commands = distros.get(view.distro).enable_commands(needed)
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
        render_fix("no-protocol-handler", scheme=scheme, load_lines=lines.rstrip("\n")),
        [*commands, reload_command(view)],
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
        fix = render_fix(
            "worker-sharing",
            worker=worker,
            owner_path=owner.path,
            owner_url=owner.url,
            params=owner.with_params(**{key.lower(): value}),
            remove=[f"{r.text}  ({r.where()})" for r in others],
            replaces=replaced_lines(owner),
        )
    return Finding(
        "worker-sharing",
        ["AH01146"],
        SIGNATURES["worker-sharing"].title,
        cause,
        evidence,
        fix,
        [reload_command(view)],
        count,
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
        render_fix("reqtimeout"),
        [reload_command(view)],
        count,
    )


def timeout_seconds(view: ServerView) -> int:
    value = view.timeout.get("ProxyTimeout") or view.timeout.get("Timeout", "60")
    digits = re.match(r"\d+", value)
    return int(digits.group(0)) if digits else 60


def _backend_read(view: ServerView, match: re.Match[str], uri: str | None, evidence: list[str], count: int) -> Finding:
    route = _backend_route(view, uri, match["host"], match["port"])
    backend = f"{match['host']}:{match['port']}"
    timed_out = match["errno"] == "70007" or "timeout" in (match["reason"] or "").lower()
    current = timeout_seconds(view)
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
        fix = render_fix(
            "backend-read",
            current=current,
            path=route.path,
            url=route.url,
            params=route.with_params(timeout=str(max(60, 2 * current))),
            replaces=replaced_lines(route),
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
        [reload_command(view)] if fix else [],
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
        fix = render_fix(
            "backend-down",
            backend=addr,
            path=route.path,
            url=route.url,
            params=route.with_params(retry="0"),
            replaces=replaced_lines(route),
        )
    return Finding(
        "backend-down",
        ["AH00957", "AH01114"],
        SIGNATURES["backend-down"].title,
        cause,
        evidence,
        fix,
        [reload_command(view)] if fix else [],
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
                render_fix("keepalive-rewrite", kind=route.kind, replaces=replaced_lines(route)),
                [reload_command(view)],
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
                    render_fix(
                        "fallback-to-proxy-http",
                        path=route.path,
                        http_url=http_url,
                        params=route.with_params(upgrade="websocket"),
                        replaces=replaced_lines(route),
                    ),
                    [reload_command(view)],
                )
            )
    for path in websocket_paths:
        finding = upgrade_dropped(view, path, [])
        if finding is not None:
            findings.append(finding)
    return findings


def upgrade_dropped(view: ServerView, path: str, evidence: list[str], host: str | None = None) -> Finding | None:
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
    fix = render_fix(
        "upgrade-dropped",
        upgrade_param=upgrade_param,
        path=route.path if upgrade_param else path,
        url=route.url,
        params=route.with_params(upgrade="websocket"),
        apache=view.version,
        family=release.family,
        ws_url=ws_url,
        replaces=replaced_lines(route) if upgrade_param else [],
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
        [reload_command(view)],
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
                commands=[" ".join(words), reload_command(view)],
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
