"""`apachews verify`: prove a real Apache proxies WebSockets, and keeps doing so under abuse."""

from __future__ import annotations

import json
from pathlib import Path

import click

from apachews import build, httpd, verify
from apachews.cli import main
from apachews.cli._common import Result, Session, command, source_options
from apachews.errors import BadInput
from apachews.sources import SourceOptions


def resolve_httpd(binary: Path | None, dist: Path | None) -> tuple[httpd.Httpd, Path | None]:
    """The Apache to test and, for a build's dist dir, the module it built."""
    if binary and dist:
        raise BadInput("give --httpd or --dist, not both")
    if dist is None:
        return httpd.locate(binary=binary), None
    dist = Path(dist)
    if not (dist / "build.json").exists():
        raise BadInput(f"{dist} is not an `apachews build` output (no build.json)")
    if not (dist / "httpd" / "bin" / "httpd").exists():
        raise BadInput(
            f"{dist} has no httpd install", hint="rebuild with `apachews build --with-httpd`, or pass --httpd"
        )
    build = json.loads((dist / "build.json").read_text())
    module = dist / "modules" / "mod_proxy_wstunnel.so"
    return httpd.locate(prefix=dist / "httpd"), module if build.get("backport") else None


@command(main, "verify")
@click.option("--httpd", "binary", type=click.Path(path_type=Path), help="Apache binary (default: system's).")
@click.option("--dist", type=click.Path(path_type=Path), help="A dir made by `apachews build --with-httpd`.")
@click.option("--module", type=click.Path(path_type=Path), help="Load this mod_proxy_wstunnel.so instead.")
@click.option("--preset", default="generic", show_default=True, help="Config preset under test.")
@click.option("--prefer", type=click.Choice(["wstunnel", "http-upgrade"]), help="Tunnelling style (2.4.47+).")
@click.option("--check", "checks", multiple=True, help="Run only this check (repeatable).")
@click.option("--apache", "version", metavar="V", help="Build (or reuse from -o) this release, then verify it.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("dist"), show_default=True)
@source_options
def verify_command(
    session: Session,
    binary: Path | None,
    dist: Path | None,
    module: Path | None,
    preset: str,
    prefer: str | None,
    checks: tuple[str, ...],
    version: str | None,
    output: Path,
    sources: SourceOptions,
) -> Result:
    """Start a real Apache in front of the bundled echo backend and run the WebSocket suite."""
    if version:
        if binary or dist:
            raise BadInput("--apache builds its own httpd: leave out --httpd and --dist")
        dist = output / f"httpd-{version}"
        if not (dist / "httpd" / "bin" / "httpd").exists():
            dist = build.build(
                version, source=sources, with_httpd=True, out_dir=output, progress=session.progress()
            ).dist
    server, built_module = resolve_httpd(binary, dist)
    report = verify.run(
        server,
        preset=preset,
        module=module or built_module,
        checks=checks or None,
        prefer=prefer,
        progress=session.progress(),
    )
    text = f"Apache {report.apache} ({report.httpd}), tunnelling via {report.tunnelling}\n{report.table()}"
    if report.error_log:
        text += f"\nApache error log: {report.error_log}"
    return Result(data=report.to_dict(), text=text, ok=report.ok)
