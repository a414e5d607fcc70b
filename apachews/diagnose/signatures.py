"""The known WebSocket failures of an Apache: each `Signature` is how one shows (an error log or `apachectl -t`
line, or a route in the config), what it is, and the template its fix is rendered from."""

from __future__ import annotations

import re
from dataclasses import dataclass

from apachews.catalogue import Version

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
