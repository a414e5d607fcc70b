"""The named setups verify runs besides the presets (TLS on one side), and what it refuses before starting."""

from __future__ import annotations

import contextlib
import json
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from apachews import capacity, catalogue, tunnelling
from apachews.catalogue import Tunnelling
from apachews.dist import Dist
from apachews.distros import trees
from apachews.errors import BadInput
from apachews.httpd import Httpd
from apachews.resources import package_data
from apachews.verify.server_setup import ServerSetup


@dataclass(frozen=True)
class Case:
    """A named setup users run, verified as it was written: a preset with TLS on one side."""

    preset: str
    description: str
    backend_tls: bool = False  # the app serves wss:// and https:// itself; its certificate verified (SSLProxyVerify)
    front_tls: bool = False  # the routes inside the layout's own TLS <VirtualHost> (config --vhost tls)
    layout: str | None = None  # the layout whose TLS vhost it uses (None: the server's default layout)
    checks: tuple[str, ...] = ()  # () : every check


def _load_cases() -> dict[str, Case]:
    raw = json.loads(package_data("verify-cases.json").read_text())
    return {
        name: Case(**{**fields, "checks": tuple(fields.get("checks", ()))})
        for name, fields in raw.items()
        if not name.startswith("_")
    }


CASES = _load_cases()  # apachews/data/verify-cases.json: add a named setup there


class CannotRender(BadInput):
    """This release cannot serve the preset in this tunnelling style (config says why and what to do)."""


def check_module_fits(module: Path, httpd: Httpd) -> None:
    """A module built by apachews says which release it was built for (build.json beside it or its
    modules/ dir): refuse another family here, instead of httpd's raw "undefined symbol" later."""
    if httpd.runner is not None:  # another root: its glibc decides first
        httpd.runner.check_module(module)
    built = Dist.of_module(module)
    built_for = built.built_for() if built is not None else None
    if built is not None and built_for is not None and built_for.family != httpd.version.family:
        raise BadInput(
            f"{module} was built for Apache {built_for} ({built.info_file}); {httpd.binary} is {httpd.version}",
            hint=f"build it for this server: apachews build --apache {httpd.version} (or --apxs)",
        )


def resolve_style(httpd: Httpd, setup: ServerSetup) -> Tunnelling:
    """The style under test: the apachews module when one is given, else what was asked for, else the
    release's own, where the httpd can do it (no module given: a stock module is what it has)."""
    release = catalogue.load().get(str(httpd.version))
    if setup.module is not None:
        return Tunnelling.APACHEWS  # a given mod_proxy_wstunnel.so must be the one tunnelling
    if setup.prefer is not None:
        return tunnelling.choose(release, setup.prefer)
    style = tunnelling.default_for(release)
    if style is Tunnelling.APACHEWS and release.stock_wstunnel:
        return Tunnelling.WSTUNNEL
    return style


@contextlib.contextmanager
def raised_open_files(needed: int) -> Iterator[int]:
    """RLIMIT_NOFILE's soft limit raised to the hard one for this process and the Apache it starts (which
    inherits it), put back on exit; refused when even the hard limit is below `needed`. Yields the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BadInput(
            f"this needs {needed} open files in one process (the clients, the echo backend, Apache's children); "
            f"the hard limit here is {hard}",
            hint="raise it (ulimit -Hn as root, LimitNOFILE for a service) or give a smaller --max-websockets",
        )
    limit = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def verify_sizing(httpd: Httpd, layout: str, setup: ServerSetup) -> tuple[capacity.Sizing, capacity.Capacity]:
    """The MPM sizing verify renders for the setup's max_websockets (capacity.size of the layout's stock settings,
    the HTTP reserve its default: the workers the tree has now), and that stock capacity."""
    assert setup.max_websockets is not None
    stock = capacity.compute(trees.stock_settings(layout, httpd, setup.mpm))
    return capacity.size(stock, setup.max_websockets, handoff=setup.handoff), stock


def h2_unavailable(httpd: Httpd, layout: str, style: Tunnelling, mpm: str | None = None) -> str:
    """Why verify's server cannot carry WebSockets over HTTP/2, or "" when it can: mod_http2 2.4.58+ (H2WebSockets),
    a stock tunnel (mod_http2 hands each stream to mod_proxy's tunnel), and an MPM mod_http2 runs under."""
    release = catalogue.load().get(str(httpd.version))
    if not tunnelling.has_h2_websockets(release):
        return f"Apache {httpd.version} has no H2WebSockets (from {tunnelling.H2_WEBSOCKETS_SINCE})"
    if not httpd.has_module("http2"):
        return f"{httpd.binary} has no mod_http2"
    if style is Tunnelling.APACHEWS:
        return "the apachews module tunnels on the client's TCP socket, not on HTTP/2 streams"
    if trees.layout_mpm(layout, httpd, mpm) == "prefork":
        return "mod_http2 does not serve HTTP/2 under the prefork MPM"
    return ""
