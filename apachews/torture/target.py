"""The running torture target: an Apache (`TargetSpec`: which httpd, how it tunnels, which module) in a lab
ServerRoot in front of every misbehaving backend, one route each, plus a TLS front and a strict
mod_reqtimeout listener where the httpd has those modules. `Context` is what a case gets."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from apachews import config
from apachews.catalogue import Tunnelling, Version
from apachews.httpd import Httpd, ServerRoot, free_port
from apachews.lab import routes
from apachews.lab.certs import make_certificate
from apachews.lab.echo import EchoServer
from apachews.lab.holding import HoldingBackend
from apachews.lab.processes import owned, parent_pid
from apachews.lab.raw import BACKENDS, RawBackend, b_refuse_big
from apachews.lab.report import Check, Report
from apachews.progress import Progress

MIB = 2**20
SILENT_TIMEOUT = 2  # ProxyPass timeout= on the route whose backend never answers
REQTIMEOUT_BODY = 2  # RequestReadTimeout body= on the mod_reqtimeout listener


@dataclass
class Settings:
    """How hard the heavy cases push. The defaults keep a run short; `heavy()` is full size."""

    big_body: int = 32 * MIB
    resets: int = 100
    soak_clients: int = 20
    soak_seconds: float = 5.0
    flood_seconds: float = 3.0
    slow_seconds: float = 4.0

    @classmethod
    def heavy(cls) -> Settings:
        return cls(big_body=100 * MIB, resets=1000, soak_clients=200, soak_seconds=60.0, flood_seconds=10.0)


class CaseResult(Check):
    """A case's outcome: a `verify.Check` (pass/fail, figure, detail; `skipped` when the target lacks what
    the case needs, e.g. mod_ssl)."""


def skipped(name: str, why: str) -> CaseResult:
    return CaseResult(name, True, None, "", f"skipped: {why}", skipped=True)


@dataclass
class TargetReport(Report):
    """One target's results; `label` names the column in the side-by-side table."""

    label: str = ""

    @property
    def ok(self) -> bool:
        ran = [check for check in self.checks if not check.skipped]
        return bool(ran) and all(check.passed for check in ran)


@dataclass
class TargetSpec:
    """An Apache and how it tunnels: `style` is Tunnelling.HTTP_UPGRADE (mod_proxy_http) or WSTUNNEL (ws://:
    the stock module, or the apachews one given as `module`)."""

    label: str
    httpd: Httpd
    style: Tunnelling
    module: Path | None = None
    fallback_off: bool = False  # stock 2.4.47+: ProxyWebsocketFallbackToProxyHttp Off
    mpm: str | None = None
    handoff: bool = False  # the apachews module: ProxyWebsocketHandoff On (tunnels in the child's event loop)

    def __post_init__(self) -> None:
        self.style = Tunnelling(self.style)


@dataclass
class Context:
    spec: TargetSpec
    port: int
    tls_port: int | None
    reqtimeout_port: int | None
    echo: EchoServer
    backends: dict[str, RawBackend]
    parent_pid: int
    error_log: Path
    settings: Settings
    holding: HoldingBackend  # never closes on EOF (broadwayd): the orphan cases' backend

    def path(self, backend: str) -> str:
        return f"/t/{backend}"


def route_file(spec: TargetSpec, urls: dict[str, str]) -> str:
    """One route per backend at /t/NAME, in the target's style (the lab's route writer)."""
    lab = [routes.Route(f"/t/{name}", url, SILENT_TIMEOUT if name == "silent" else None) for name, url in urls.items()]
    return routes.write(
        lab,
        spec.style,
        comment="apachews torture: one route per misbehaving backend",
        handoff=spec.handoff,
        fallback_off=spec.fallback_off,
    )


@contextlib.contextmanager
def running_target(spec: TargetSpec, settings: Settings, progress: Progress) -> Iterator[Context]:
    """Backends, a certificate and Apache with every route; everything stopped and removed on exit (the lab
    runner owns the httpd: Ctrl-C and SIGTERM clean up alike)."""
    with contextlib.ExitStack() as stack:
        echo = stack.enter_context(EchoServer("echo"))
        backends = {name: stack.enter_context(RawBackend(name, b)) for name, b in BACKENDS.items()}
        backends["big"] = stack.enter_context(RawBackend("big", b_refuse_big(settings.big_body)))
        holding = stack.enter_context(HoldingBackend())
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="apachews-torture-")))
        has_ssl = spec.httpd.has_module("ssl")
        has_rq = spec.httpd.has_module("reqtimeout")
        tls = make_certificate(scratch) if has_ssl else None
        tls_port, rq_port = free_port(), free_port() if has_rq else None
        # The generic preset at /ws in the same style (a stock mod_proxy_wstunnel for the apachews module's).
        prefer = Tunnelling.HTTP_UPGRADE if spec.style is Tunnelling.HTTP_UPGRADE else Tunnelling.WSTUNNEL
        if spec.httpd.version < Version(2, 4, 47):
            prefer = None  # only one style before 2.4.47
        rendering = config.render(
            "generic", apache=str(spec.httpd.version), backends=[echo.url], path="/ws", prefer=prefer
        )
        urls = {"echo": echo.url, "hold": holding.url, **{name: b.url for name, b in backends.items()}}
        snippets = {
            "00-torture-routes.conf": route_file(spec, urls),
            **rendering.files,
            "99-torture-listeners.conf": routes.listeners(tls, tls_port, rq_port, REQTIMEOUT_BODY),
        }
        extra = {"proxy_wstunnel": spec.module} if spec.module else None
        progress.step(f"starting Apache {spec.httpd.version} for {spec.label}")
        root = stack.enter_context(ServerRoot(spec.httpd, snippets, extra_modules=extra, mpm=spec.mpm))
        assert root.root is not None
        server = stack.enter_context(owned(root.server))  # stopped, and nothing of its tree left running
        server.start()
        yield Context(
            spec,
            root.port,
            tls_port if tls else None,
            rq_port,
            echo,
            backends,
            parent_pid(server, root.root / "run" / "httpd.pid"),
            root.error_log,
            settings,
            holding,
        )
