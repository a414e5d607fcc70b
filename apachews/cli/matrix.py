"""`apachews matrix`: the whole pipeline over a list of Apache versions, one table at the end."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from apachews import matrix
from apachews.cli import main
from apachews.cli._common import Result, Session, command, source_options
from apachews.sources import SourceOptions


def _live_table(stream=sys.stderr):
    """A callback that redraws the progress table on a terminal."""
    drawn = {"lines": 0}

    def redraw(rows: Sequence[matrix.Row]) -> None:
        if drawn["lines"]:
            stream.write(f"\x1b[{drawn['lines']}F\x1b[J")  # back to the table's first line, clear below
        text = matrix.text_table(rows)
        stream.write(text + "\n")
        stream.flush()
        drawn["lines"] = text.count("\n") + 1

    return redraw


@command(main, "matrix")
@click.option("--apache", "spec", required=True, help="Versions: 2.2.31,2.4.69 or 2.2.20-2.2.34 or all-2.2.")
@source_options
@click.option("--base-image", metavar="IMAGE", help="Build image (default: apachews/base:bookworm).")
@click.option("--backport", is_flag=True, help="On 2.4.6+, test the apachews module instead of the stock one.")
@click.option("--builder", type=click.Choice(["docker", "local"]), default="docker", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("dist"), show_default=True)
@click.option("--jobs", "-j", default=1, show_default=True, help="Versions processed at once.")
@click.option("--markdown", is_flag=True, help="Print the final table as Markdown (for CI job summaries).")
def matrix_command(
    session: Session,
    spec: str,
    sources: SourceOptions,
    base_image: str | None,
    backport: bool,
    builder: str,
    output: Path,
    jobs: int,
    markdown: bool,
) -> Result:
    """For each version: fetch, patch check, build, config check, verify; then one table."""
    live = None if session.json or not sys.stderr.isatty() else _live_table()
    report = matrix.run(
        spec,
        options=sources,
        base_image=base_image,
        backport=backport,
        out_dir=output,
        builder=builder,
        jobs=jobs,
        on_change=live,
    )
    text = matrix.markdown_table(report) if markdown else matrix.text_table(report.rows)
    return Result(data=report.to_dict(), text=text, ok=report.ok)
