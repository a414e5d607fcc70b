"""The notes a rendering carries: what a tunnelling style needs built or installed, what ends a vanished client's
tunnel, the app-side settings, what the options change, what the MPM sizing changes."""

from __future__ import annotations

import ipaddress
import re

from apachews import capacity, distros, tunnelling
from apachews.capacity import Sizing
from apachews.catalogue import Release
from apachews.config.inputs import DEFAULT_PUBLIC_URL, Backend, Public
from apachews.config.presets import IDLE_HEARTBEATS, Preset
from apachews.config.resolve import Resolved
from apachews.tunnelling import Tunnelling

VHOST_REWRITE_NOTE = (
    "The RewriteRule routes WebSocket upgrades only inside the <VirtualHost> that serves this path: "
    "Include the file there, not at server level (conf-enabled)."
)
"""A rewrite-based rendering's note: `apachews install --vhost` includes it there, and drops the note."""


def app_values(r: Resolved) -> dict[str, str]:
    """What the preset's notes and app-side settings may name: {path}, {ws_path}, {url}, {proxy_address}, ..."""
    websocket_paths = r.websocket_paths
    return {
        "path": r.path,
        "backend_path": r.backend.path,
        "ws_path": (websocket_paths[0] if websocket_paths else r.path).lstrip("/"),
        **_public_values(r.public, r.path, r.backend),
    }


def app_settings(r: Resolved, values: dict[str, str]) -> list[dict[str, str]]:
    """The preset's settings on the application's side ({file, setting, value, why}), for these `values`."""
    return [{key: text.format(**values) for key, text in setting.items()} for setting in r.spec.app_settings]


def _public_values(public: Public, path: str, backend: Backend) -> dict[str, str]:
    """What notes and app-side settings may name: where users reach the app, and where Apache connects from."""
    host = backend.netloc.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    base = path.rstrip("/")
    proxy = ("::1" if host == "::1" else "127.0.0.1") if loopback else "this Apache's address"
    return {
        "public_url": public.url,
        "host": public.host,
        "netloc": public.netloc,
        "scheme": public.scheme,
        "ws_scheme": "wss" if public.scheme == "https" else "ws",
        "url": public.url + base,
        "base_path": base,
        "path_slash": base + "/",
        "proxy_address": proxy,
        "proxy_address_regex": re.escape(proxy) if loopback else proxy,
    }


def route_notes(r: Resolved, values: dict[str, str], settings: list[dict[str, str]], rewrites: bool) -> list[str]:
    """The notes on the routes, before the layout's own: the style's, the preset's, the app-side `settings`, and
    what --handoff, --h2 and a RewriteRule (`rewrites`) mean for them."""
    notes = style_notes(r.release, r.style, r.preset) + [note.format(**values) for note in r.spec.notes]
    notes.append(dead_client_note(r.release, r.style, r.spec))
    notes += _settings_notes(r, settings)
    if r.handoff:
        notes.append(
            "ProxyWebsocketHandoff On: once open, a plain tunnel (no TLS on either side) gives its worker back and "
            "lives in its child's event loop (worker, event), or under prefork in the tunnel keeper, one process "
            f"beside the children; a loop holds (the open-files hard limit, at most {capacity.LOOP_MAX_OPEN_FILES}, "
            f"- {capacity.LOOP_RESERVED_FDS}) / 2 tunnels, more keep their worker. TLS tunnels stay with their "
            "worker."
        )
    if r.h2_websockets:
        notes.append(
            "H2WebSockets on: browsers open these WebSockets over HTTP/2 (RFC 8441) on a vhost with Protocols h2 "
            "(TLS) or h2c; mod_http2 hands each to the route above. Other vhosts keep HTTP/1.1 upgrades."
        )
    elif r.deployment.h2:
        notes.append(
            f"--h2: Apache {r.release.version}'s mod_http2 carries no WebSockets (H2WebSockets came in "
            f"{tunnelling.H2_WEBSOCKETS_SINCE}): browsers open them over HTTP/1.1 on a connection of their own, "
            "while the page itself uses HTTP/2. Nothing to configure for that."
        )
    if rewrites:
        notes.append(VHOST_REWRITE_NOTE)
    return notes


def _settings_notes(r: Resolved, settings: list[dict[str, str]]) -> list[str]:
    """One note per app-side setting; where the routes' timeout comes from; and that the settings name a
    placeholder URL when --public-url was left out."""
    notes = []
    for setting in settings:
        why = f" ({setting['why']})" if "why" in setting else ""
        notes.append(f"{setting['file']}: {setting['setting']} = {setting['value']}{why}")
    spec = r.spec
    if spec.heartbeat and spec.timeout:
        notes.append(
            f"Timeout {spec.timeout} s on these routes (ProxyPass timeout=), above the {spec.heartbeat['seconds']} s "
            f"of the application's heartbeat: {spec.heartbeat['figure']}."
        )
    if r.deployment.public_url is None and settings:
        notes.append(f"The settings above name {DEFAULT_PUBLIC_URL}: pass --public-url with the URL users open.")
    return notes


def backend_tls_note(r: Resolved) -> str:
    """How a TLS backend's certificate is verified, and what a failure looks like."""
    return (
        f"The backend's certificate is verified (SSLProxyVerify require) against "
        f"{r.backend_ca}. When it does not verify (a self-signed backend, GateOne's own "
        "certificate), the WebSocket handshake fails with 502 (HTTP requests with 500 or 502) and the error log "
        "says 'Certificate Verification: Error (18): self signed certificate' (OpenSSL 3: self-signed) and "
        "'Error during SSL Handshake with remote server': give the backend's certificate (or its CA) with "
        "--backend-ca FILE."
    )


def capacity_notes(sizing: Sizing, layout: distros.Layout) -> list[str]:
    """What the sizing file changes, how to enable it, and the open-files limit it needs."""
    changes = ", ".join(f"{name} {value}" for name, value in sizing.directives())
    if sizing.handoff:
        what = (
            f"{layout.capacity_file(sizing.family)} sizes the {sizing.mpm} MPM for {sizing.websockets} WebSockets "
            f"handed off to {'the children' if sizing.threaded else 'the tunnel keeper'}'s event loop"
            f"{'s' if sizing.threaded else ''}, {sizing.http_reserve} workers for plain HTTP and "
            f"{sizing.handshake_workers} for handshakes: {changes}."
        )
    else:
        unit = "threads" if sizing.threaded else "processes"
        what = (
            f"{layout.capacity_file(sizing.family)} sizes the {sizing.mpm} MPM for {sizing.websockets} open "
            f"WebSockets (each holds one of the {sizing.max_workers} {unit}) and {sizing.http_reserve} left for "
            f"plain HTTP: {changes}."
        )
    if sizing.threaded:
        what += (
            f" ServerLimit is twice the {sizing.processes} children needed: children still holding tunnels after "
            "a graceful restart finish them beside their successors."
        )
    return [what, *layout.capacity_notes(sizing.family), _open_files_note(sizing, layout)]


def _open_files_note(sizing: Sizing, layout: distros.Layout) -> str:
    """The open-files limit the sizing needs, and where the layout raises it."""
    where = f": {layout.open_files_note(sizing.family, sizing.open_files)}" if sizing.open_files_raise else ""
    if sizing.handoff and not sizing.threaded:
        return (
            f"Open files: the tunnel keeper holds (its limit - {capacity.LOOP_RESERVED_FDS}) / 2 tunnels; started "
            f"as root it raises its own limit to {capacity.LOOP_MAX_OPEN_FILES} (else to the hard one): "
            f"{sizing.websockets} need {sizing.open_files}{where}."
        )
    elif sizing.handoff:
        per_child = (sizing.open_files - capacity.LOOP_RESERVED_FDS) // capacity.FDS_PER_TUNNEL
        spread = (
            f"lets one child hold all {sizing.websockets}"
            if per_child >= sizing.websockets
            else f"lets each child hold {per_child}, the rest go to other children or hold workers"
        )
        return (
            f"Open files: a child's event loop holds (its limit - {capacity.LOOP_RESERVED_FDS}) / 2 tunnels (the "
            f"module raises each child's soft limit to the hard one, at most {capacity.LOOP_MAX_OPEN_FILES}); a "
            f"limit of {sizing.open_files} (RLIMIT_NOFILE) {spread}{where}."
        )
    elif sizing.open_files_raise:
        return f"Open files: each Apache process needs a limit of at least {sizing.open_files} (RLIMIT_NOFILE){where}."
    else:
        held = (
            f"a child holds at most {sizing.threads_per_child} tunnels (2 descriptors each"
            if sizing.threaded
            else "a process holds 1 tunnel (2 descriptors"
        )
        return (
            f"Open files: {held}, {sizing.open_files} with the rest): the usual limit of "
            f"{capacity.DEFAULT_OPEN_FILES} is enough."
        )


def dead_client_note(release: Release, style: Tunnelling, spec: Preset) -> str:
    """What ends the tunnel of a client that vanished, in this style on this release: after a killed browser's
    FIN, a cut network's reset, or neither (a client gone silently)."""
    limit, beat = spec.idle_limit, spec.heartbeat
    why = f" ({IDLE_HEARTBEATS} heartbeats: {beat['figure']})" if beat else ""
    tcp = "or TCP gives up on what is sent to it (about 15 minutes on Linux)"
    stock_fin = (
        "The backend is closed with a FIN: one that never closes on EOF (broadwayd) keeps its socket in CLOSE-WAIT "
        "(the apachews module resets it)."
    )
    if style is Tunnelling.APACHEWS:
        idle = f": ProxyWebsocketIdleTimeout {limit}{why}" if limit else " (ProxyWebsocketIdleTimeout, else timeout=)"
        return (
            "A client that vanishes: after its FIN (a killed browser) the tunnel lives on for at most "
            "ProxyWebsocketFinTimeout (default 5 s), after a reset not at all, and the backend is reset (one that "
            "never closes on EOF, like broadwayd, is freed too). One gone without either is ended once the tunnel "
            f"is silent both ways for the idle limit{idle}, {tcp}."
        )
    safe = f"; for this app Timeout {limit} in the <VirtualHost> serving it is safe{why}" if limit else ""
    wait = "the larger of the server's Timeout and the worker's timeout= (else ProxyTimeout)"
    if release.version >= tunnelling.NOHALFCLOSE_SINCE:
        return (
            "A client that vanishes: `SetEnv proxy-nohalfclose 1` (rendered above) ends the tunnel at its FIN (a "
            "killed browser) or reset; one gone without either holds its worker until the tunnel is silent both "
            f"ways for {wait}{safe}, {tcp}. {stock_fin}"
        )
    if release.version >= tunnelling.STOCK_TUNNEL_SINCE:
        return (
            "A client that vanishes: its FIN (a killed browser) is passed on and the tunnel then holds its worker "
            f"until silent both ways for {wait}, as does one gone without a FIN (proxy-nohalfclose needs 2.4.52)"
            f"{safe}, {tcp}. {stock_fin}"
        )
    return (
        f"A client that vanishes: {release.version}'s mod_proxy_wstunnel ends the tunnel at its FIN or reset, but "
        "nothing bounds one gone without either (it polls without a timeout: Timeout, ProxyTimeout and timeout= do "
        f"not apply) but the backend closing, {tcp}. {stock_fin}"
    )


def style_notes(release: Release, style: Tunnelling, preset: str) -> list[str]:
    version = release.version
    if style is Tunnelling.APACHEWS and release.needs_backport:
        return [
            f"Apache {version} has no mod_proxy_wstunnel: build it with `apachews build --apache {version}` "
            "and install the .so first (apachews install does both)."
        ]
    if style is Tunnelling.APACHEWS and not release.stock_wstunnel_usable:
        return [
            f"Apache {version}'s stock mod_proxy_wstunnel reuses backend connections across handshakes and "
            f"busy-loops on client errors (fixed in 2.4.10), and tunnels refusals (CVE-2019-17567): this config "
            f"uses the apachews module in its place: `apachews build --apache {version} --backport`, then "
            "install its .so (apachews install does both)."
        ]
    if style is Tunnelling.APACHEWS:
        return [
            f"This config needs the apachews module in place of the stock mod_proxy_wstunnel: "
            f"`apachews build --apache {version} --backport`, then install its .so."
        ]
    if tunnelling.has_cve_2019_17567(release):
        return [
            f"Apache {version}'s stock mod_proxy_wstunnel tunnels whatever the backend answers, even a refusal "
            "(CVE-2019-17567), unless your vendor backported the fix (its package changelog names the CVE). This "
            "config uses it: nothing to build. The other choice is the apachews module, which passes a refusal on "
            "as a refusal and, with --handoff, gives each open tunnel's worker back (worker and event MPMs): "
            f"`apachews build --apache {version} --backport`, then `apachews config {preset} --apache {version} "
            "--prefer apachews --handoff`. Apache 2.4.47+ fixes it too."
        ]
    return []
