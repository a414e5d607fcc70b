"""From the client side: `probe()` tries the WebSocket handshake (loopback only) and `explain()` maps its answer
(400, 403, 404, 502, 1006...) and the log lines it left to causes."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from apachews.diagnose.findings import (
    Finding,
    from_config,
    from_logs,
    reload_command,
    render_fix,
    replaced_lines,
    timeout_seconds,
    upgrade_dropped,
)
from apachews.diagnose.routes import Route, route_for
from apachews.diagnose.signatures import SIGNATURES
from apachews.diagnose.view import LOG_TAIL_BYTES, ServerView
from apachews.errors import BadInput
from apachews.lab import client
from apachews.serial import Serialised

PROBE_TIMEOUT = 10.0


# -- from the client side ------------------------------------------------------------------------------------
@dataclass
class Probe(Serialised):
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
        seconds = timeout_seconds(view)
        params = route.with_params(timeout=str(max(3600, 2 * seconds))) if route else []
        apachews_module = "ProxyWebsocketIdleTimeout" in " ".join(
            Path(f).read_text(errors="replace") for f in {r.file for r in view.routes}
        )
        fix = (
            render_fix(
                "idle-timeout",
                path=route.path,
                url=route.url,
                params=params,
                module_idle=apachews_module,
                seconds=max(3600, 2 * seconds),
                replaces=replaced_lines(route),
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
                [reload_command(view)] if fix else [],
            )
        )
    elif status in (200, 400, 426) and route is not None:
        dropped = upgrade_dropped(view, path, evidence, result.host)
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
            render_fix("origin-check", path=route.path),
            [reload_command(view)],
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
