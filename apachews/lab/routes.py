"""The lab's Apache snippets, rendered from templates/apache/lab/: the one route writer per tunnelling style,
the extra listeners (a TLS front, a strict mod_reqtimeout) and the rule that keeps a preset's rewrites off the
lab's routes.

verify's routes to its misbehaving and TLS backends, torture's routes to its raw backends and live-verify's
temporary vhost all come from `write`: a <Location> per route whose ProxyPass speaks the style under test
(ws:// for mod_proxy_wstunnel, stock or apachews; http:// with upgrade=websocket for mod_proxy_http).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apachews.catalogue import Tunnelling
from apachews.config import proxy_target
from apachews.resources import template_environment


@dataclass(frozen=True)
class Route:
    """WebSockets at `path` go to the backend at the ws:// or wss:// `url`."""

    path: str
    url: str
    timeout: int | None = None  # ProxyPass timeout= (seconds)

    def target(self, style: Tunnelling) -> str:
        """The ProxyPass URL in `style`, with a trailing slash exactly where the path has one."""
        url = self.url
        if style is Tunnelling.HTTP_UPGRADE:
            url = "http" + url.removeprefix("ws")  # ws:// -> http://, wss:// -> https://
        return proxy_target(self.path, url)


def write(
    routes: Sequence[Route],
    style: Tunnelling,
    *,
    comment: str,
    tls_ca: Path | None = None,
    nohalfclose: bool = False,
    handoff: bool = False,
    fallback_off: bool = False,
    h2: bool = False,
) -> str:
    """The routes as Apache config in `style`. `tls_ca`: SSLProxyEngine on, trusting it (a wss:// backend);
    `nohalfclose`: SetEnv proxy-nohalfclose 1 in each (stock 2.4.52+); `handoff`: ProxyWebsocketHandoff On in
    each (the apachews module); `fallback_off`: ProxyWebsocketFallbackToProxyHttp Off (stock 2.4.47+); `h2`:
    Protocols h2 h2c http/1.1 (h2 over TLS by ALPN, h2c with prior knowledge)."""
    style = Tunnelling(style)
    template = template_environment("apache").get_template("lab/routes.conf.j2")
    return template.render(
        comment=comment,
        routes=[{"path": r.path, "target": r.target(style), "timeout": r.timeout} for r in routes],
        upgrade=style is Tunnelling.HTTP_UPGRADE,
        tls_ca=str(tls_ca) if tls_ca else "",
        nohalfclose=nohalfclose,
        handoff=handoff,
        fallback_off=fallback_off,
        h2=h2,
    )


def keep_rewrites_off(prefix: str) -> str:
    """A preset's RewriteRule at "/" (stock 2.4.7-2.4.46) would proxy the lab's own routes under `prefix` to
    the app: a rule read first that leaves them alone."""
    return template_environment("apache").get_template("lab/keep-rewrites-off.conf.j2").render(prefix=prefix)


def listeners(
    tls: tuple[Path, Path] | None, tls_port: int | None, reqtimeout_port: int | None, reqtimeout_body: int
) -> str:
    """Extra lab listeners on 127.0.0.1: a TLS front (mod_ssl, `tls`: certificate and key) and a listener with a
    strict mod_reqtimeout (off on the main one)."""
    return (
        template_environment("apache")
        .get_template("lab/listeners.conf.j2")
        .render(
            tls_cert=str(tls[0]) if tls else "",
            tls_key=str(tls[1]) if tls else "",
            tls_port=tls_port,
            reqtimeout_port=reqtimeout_port,
            reqtimeout_body=reqtimeout_body,
        )
    )
