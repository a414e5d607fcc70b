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


__all__ = ["Tunnelling", "choose", "default_for", "has_cve_2019_17567"]


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
