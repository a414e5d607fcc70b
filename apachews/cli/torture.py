"""`apachews torture`: misbehaving backends and abusive clients through a real Apache, side by side."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import click

from apachews import httpd, torture
from apachews.catalogue import Version
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main


@command(main, "torture")
@click.option("--httpd", "binary", type=click.Path(path_type=Path), help="Apache binary (default: system's).")
@click.option(
    "--target",
    "kinds",
    multiple=True,
    type=click.Choice(torture.TARGET_KINDS),
    help="Tunnelling to test on that Apache (repeatable; default: stock-http, stock-ws, apachews).",
)
@click.option("--module", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="apachews .so to test.")
@click.option("--dist", type=click.Path(path_type=Path), help="Also a dir made by `apachews build --with-httpd`.")
@click.option("--case", "cases", multiple=True, help="Run only this case (repeatable).")
@click.option("--heavy", is_flag=True, help="Full-size cases: 100 MiB, 1000 resets, 200 clients x 60 s soak.")
@click.option("--soak", is_flag=True, help="Add the soak case (left out by default).")
@click.option("--handoff", is_flag=True, help="Also each apachews target with ProxyWebsocketHandoff On.")
@click.option(
    "--mpm",
    type=click.Choice(["prefork", "worker", "event"]),
    help="The MPM the system Apache (--httpd) loads (default: event; a --dist runs the one it was built with).",
)
def torture_command(
    session: Session,
    binary: Path | None,
    kinds: tuple[str, ...],
    module: Path | None,
    dist: Path | None,
    cases: tuple[str, ...],
    heavy: bool,
    soak: bool,
    handoff: bool,
    mpm: str | None,
) -> Result:
    """Run the torture cases (misbehaving backends, abusive clients) against each target: one table, case x target."""
    server = httpd.locate(binary=binary)
    kinds = kinds or (("stock-http", "stock-ws", "apachews") if server.version >= Version(2, 4, 47) else ("apachews",))
    # The soak first: its RSS baseline is then a fresh server's, not what the endless refusal left behind.
    names = list(cases) or (["soak"] if soak else []) + torture.DEFAULT_CASES
    settings = torture.Settings.heavy() if heavy else torture.Settings()
    with tempfile.TemporaryDirectory(prefix="apachews-torture-") as scratch:
        so = module or (torture.build_module(Path(scratch)) if "apachews" in kinds else None)
        specs = [
            dataclasses.replace(spec, mpm=mpm, label=f"{spec.label} {mpm}") if mpm and spec.httpd is server else spec
            for spec in torture.targets(server, kinds, so, dist)
        ]
        specs = torture.with_handoff(specs) if handoff else specs
        reports = torture.run(specs, names, settings, session.progress())
    ok = all(report.ok for report in reports if report.module)  # ours must pass; stock is the yardstick
    text = torture.side_by_side(reports) + "\n\n" + torture.details(reports)
    data = {"settings": vars(settings), "targets": [report.to_dict() for report in reports]}
    return Result(data=data, text=text, ok=ok if any(r.module for r in reports) else all(r.ok for r in reports))
