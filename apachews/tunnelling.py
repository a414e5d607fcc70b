"""How an Apache release tunnels WebSockets: the one vocabulary config, verify and the catalogue share."""

from __future__ import annotations

from apachews.catalogue import Release, Tunnelling, Version
from apachews.errors import BadInput

# mod_rewrite knows ws:// and wss:// targets from 2.4.7: rewrite-based routing is only rendered from there on.
REWRITE_WS_SINCE = Version(2, 4, 7)
# 2.4.6-2.4.46's stock mod_proxy_wstunnel tunnels whatever the backend answers (CVE-2019-17567).
CVE_2019_17567 = (Version(2, 4, 6), Version(2, 4, 46))
# mod_http2 carries WebSockets over HTTP/2 (RFC 8441 extended CONNECT, H2WebSockets) from 2.4.58.
H2_WEBSOCKETS_SINCE = Version(2, 4, 58)


__all__ = ["Tunnelling", "choose", "default_for", "has_cve_2019_17567", "has_h2_websockets"]


def default_for(release: Release) -> Tunnelling:
    return release.tunnelling


def choose(release: Release, prefer: str | Tunnelling | None) -> Tunnelling:
    """The style for `release`: its default, or `prefer` where the release can do it."""
    if prefer is None:
        return default_for(release)
    try:
        style = Tunnelling(prefer)
    except ValueError:
        names = ", ".join(t.value for t in Tunnelling)
        raise BadInput(f"--prefer {prefer!r} is not one of: {names}") from None
    if style is Tunnelling.HTTP_UPGRADE and not release.proxy_http_upgrade:
        raise BadInput(
            f"mod_proxy_http tunnels WebSockets only from 2.4.47 on, not in {release.version}",
            hint="leave --prefer out, or --prefer apachews for the apachews module",
        )
    if style is Tunnelling.WSTUNNEL and not release.stock_wstunnel:
        raise BadInput(
            f"Apache {release.version} has no stock mod_proxy_wstunnel",
            hint=f"leave --prefer out: the apachews module (apachews build --apache {release.version}) tunnels here",
        )
    return style


def has_cve_2019_17567(release: Release) -> bool:
    low, high = CVE_2019_17567
    return release.stock_wstunnel and low <= release.version <= high


def has_h2_websockets(release: Release) -> bool:
    """Whether mod_http2 of `release` opens WebSockets over HTTP/2 (H2WebSockets, RFC 8441)."""
    return release.version >= H2_WEBSOCKETS_SINCE
