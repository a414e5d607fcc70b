"""torture's targets (the system Apache's own styles, the apachews module, a built httpd with its module) and
the side-by-side table of their reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from apachews import module
from apachews.catalogue import Tunnelling, Version
from apachews.dist import Dist
from apachews.errors import BadInput
from apachews.httpd import Httpd
from apachews.lab import report
from apachews.torture.target import TargetReport, TargetSpec

TARGET_KINDS = ("stock-http", "stock-ws", "stock-ws-nofallback", "apachews")


def stock_targets(httpd: Httpd) -> list[TargetSpec]:
    """The system Apache's own tunnelling, both styles where it has two (2.4.47+)."""
    if httpd.version >= Version(2, 4, 47):
        return [
            TargetSpec(f"stock {httpd.version} http-upgrade", httpd, Tunnelling.HTTP_UPGRADE),
            TargetSpec(f"stock {httpd.version} ws://", httpd, Tunnelling.WSTUNNEL),
        ]
    if httpd.has_module("proxy_wstunnel"):
        return [TargetSpec(f"stock {httpd.version} ws://", httpd, Tunnelling.WSTUNNEL)]
    return []


def module_target(httpd: Httpd, so: Path, label: str | None = None) -> TargetSpec:
    return TargetSpec(label or f"apachews {httpd.version}", httpd, Tunnelling.WSTUNNEL, module=Path(so))


def side_by_side(reports: Sequence[TargetReport]) -> str:
    """Rows: cases; columns: targets; cells: pass/FAIL/n/a with the figure."""
    seen: dict[str, int] = {}
    for one in reports:  # two builds of one release would share a label: number the later ones
        seen[one.label] = seen.get(one.label, 0) + 1
        if seen[one.label] > 1:
            one.label = f"{one.label} #{seen[one.label]}"
    return report.side_by_side([(one.label, one.checks) for one in reports])


def details(reports: Sequence[TargetReport]) -> str:
    lines = []
    for one in reports:
        lines.append(f"== {one.label} ({one.httpd}, {one.tunnelling})")
        lines += [f"  {c.name:<20} {report.cell(c):<22} {c.detail}" for c in one.checks]
    return "\n".join(lines)


def build_module(out_dir: Path, source: str | None = None) -> Path:
    """The apachews module built with apxs: from module/ (`apachews.module`), or from given C text (an
    older revision, to show a case failing on it)."""
    return module.build_with_apxs(out_dir, source=source).so


def targets(httpd: Httpd, kinds: Sequence[str], module_so: Path | None, dist: Path | None = None) -> list[TargetSpec]:
    """The targets to compare: kinds of the system Apache, plus a built httpd dir (`apachews build
    --with-httpd`) with its own module."""
    specs = []
    version = httpd.version
    for kind in kinds:
        if kind not in TARGET_KINDS:
            raise BadInput(f"unknown target {kind!r}", hint="targets: " + ", ".join(TARGET_KINDS))
        if kind == "apachews":
            if module_so is None:
                raise BadInput("the apachews target needs a module", hint="pass --module or let apxs build one")
            specs.append(module_target(httpd, module_so))
        elif kind == "stock-http":
            if version < Version(2, 4, 47):
                raise BadInput(f"Apache {version} has no mod_proxy_http upgrade=websocket (2.4.47+)")
            specs.append(TargetSpec(f"stock {version} http-upgrade", httpd, Tunnelling.HTTP_UPGRADE))
        else:
            if not httpd.has_module("proxy_wstunnel"):
                raise BadInput(f"Apache {version} has no stock mod_proxy_wstunnel")
            off = kind == "stock-ws-nofallback"
            if off and version < Version(2, 4, 47):
                raise BadInput(f"Apache {version} has no ProxyWebsocketFallbackToProxyHttp (2.4.47+)")
            label = f"stock {version} ws://" + (" fallback off" if off else "")
            specs.append(TargetSpec(label, httpd, Tunnelling.WSTUNNEL, fallback_off=off))
    if dist is not None:
        specs.append(dist_target(dist))
    return specs


def dist_target(dist: Path, label: str | None = None) -> TargetSpec:
    """A dir made by `apachews build --with-httpd`: its httpd with the module it built."""
    built = Dist(Path(dist))
    so = built.module
    if not built.has_httpd or so is None:
        raise BadInput(
            f"{dist} is not an `apachews build --with-httpd` output", hint="need httpd/bin/httpd and modules/"
        )
    server = built.httpd()
    mpm = server.installation.info().mpm
    return TargetSpec(label or f"apachews {server.version} {mpm}", server, Tunnelling.WSTUNNEL, module=so)


def with_handoff(specs: Sequence[TargetSpec]) -> list[TargetSpec]:
    """The apachews targets again with ProxyWebsocketHandoff On, each beside its worker-held self."""
    out = []
    for spec in specs:
        out.append(spec)
        if spec.module is not None:
            out.append(dataclasses.replace(spec, label=f"{spec.label} handoff", handoff=True))
    return out
