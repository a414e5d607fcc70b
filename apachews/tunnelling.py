"""How an Apache release tunnels WebSockets: the one vocabulary config, verify and the catalogue share."""

from __future__ import annotations

from apachews.catalogue import Release, Tunnelling, Version
from apachews.errors import BadInput

# mod_rewrite knows ws:// and wss:// targets from 2.4.7: rewrite-based routing is only rendered from there on.
REWRITE_WS_SINCE = Version(2, 4, 7)
# 2.4.6-2.4.46's stock mod_proxy_wstunnel tunnels whatever the backend answers (CVE-2019-17567).
CVE_2019_17567 = (Version(2, 4, 6), Version(2, 4, 46))
# From 2.4.47 stock upgrades run in mod_proxy's tunnel (ap_proxy_tunnel_run): a FIN is passed on and the tunnel
# then waits for the larger of the client's Timeout and the worker's timeout; before, mod_proxy_wstunnel polled
# without any timeout and ended the tunnel at either side's EOF. From 2.4.52 `SetEnv proxy-nohalfclose 1` makes
# that tunnel end at a FIN at once.
STOCK_TUNNEL_SINCE = Version(2, 4, 47)
NOHALFCLOSE_SINCE = Version(2, 4, 52)
# mod_http2 carries WebSockets over HTTP/2 (RFC 8441 extended CONNECT, H2WebSockets) from 2.4.58.
H2_WEBSOCKETS_SINCE = Version(2, 4, 58)


__all__ = ["Tunnelling", "choose", "default_for", "has_cve_2019_17567", "has_h2_websockets", "why"]


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


def why(release: Release, style: Tunnelling, asked: bool = False) -> str:
    """One sentence: why `style` tunnels WebSockets on `release` (what a rendered file's header says)."""
    version = release.version
    cve = " It also tunnels a refused upgrade (CVE-2019-17567; fixed in 2.4.47)." if has_cve_2019_17567(release) else ""
    if style is Tunnelling.HTTP_UPGRADE:
        said = "mod_proxy_http carries the upgrade itself from 2.4.47 (upgrade=websocket): no other module."
    elif style is Tunnelling.WSTUNNEL and release.proxy_http_upgrade:
        said = "the stock mod_proxy_wstunnel (from 2.4.48 it hands the tunnel to mod_proxy_http)."
    elif style is Tunnelling.WSTUNNEL:
        said = (
            f"the stock mod_proxy_wstunnel works from 2.4.10, and {version} has no upgrade=websocket (2.4.47+): "
            "no module to build." + cve
        )
    elif release.needs_backport:
        said = f"{version} has no mod_proxy_wstunnel (the stock one came in 2.4.5): the apachews module backports it."
    elif not release.stock_wstunnel_usable:
        said = (
            f"{version}'s stock mod_proxy_wstunnel fails under load (fixed in 2.4.10): the apachews module replaces it."
        )
    else:
        said = "the apachews module in place of the stock mod_proxy_wstunnel (its handoff, idle timeout, checks)."
    return f"asked for (--prefer {style.value}): {said}" if asked and style is not default_for(release) else said
