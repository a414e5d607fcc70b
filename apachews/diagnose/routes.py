"""The routes in a server's config files (ProxyPass, RewriteRule [P], BalancerMember, upgrade-stripping lines),
with file and line, honouring <IfModule>; `route_for` finds the one a path takes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from apachews.doctor.conffiles import module_present


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
                active = module_present(argument, loaded) if kind == "ifmodule" else True
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
