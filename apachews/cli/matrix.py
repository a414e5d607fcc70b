"""`apachews matrix`: the whole pipeline over a list of Apache versions, one table at the end."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Callable

import click

from apachews import matrix
from apachews.catalogue import Release
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main
from apachews.cli._options import RELEASES, plan_options
from apachews.errors import BadInput
from apachews.plan import BuildPlan
from apachews.progress import Progress


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
@click.option(
    "--apache", "releases", type=RELEASES, required=True, help="Versions: 2.2.31,2.4.69 or 2.2.20-2.2.34 or all-2.2."
)
@plan_options
@click.option("--jobs", "-j", default=2, show_default=True, help="Parallel make jobs of each build (as in `build`).")
@click.option("--parallel", default=1, show_default=True, help="Versions processed at once.")
@click.option("--markdown", is_flag=True, help="Print the final table as Markdown (for CI job summaries).")
@click.option(
    "--every-mpm",
    is_flag=True,
    help="Each release with every MPM apachews builds it with (2.2: prefork, worker; 2.4: event, prefork, "
    "worker), each into OUTPUT/<mpm>/.",
)
@click.option(
    "--preset",
    "presets",
    default=matrix.ALL_PRESETS,
    show_default=True,
    help="Presets verified on each version: all, or a comma-separated list (one table column each).",
)
def matrix_command(
    session: Session,
    releases: tuple[Release, ...],
    plan_for: Callable[..., BuildPlan],
    jobs: int,
    parallel: int,
    markdown: bool,
    every_mpm: bool,
    presets: str,
) -> Result:
    """For each version: fetch, patch check, build, config check, verify; then one table."""
    # A terminal gets the table redrawn in place; a log (CI, `make demo | tee`) a line per stage of each
    # version and the build's and checks' own steps, so it never sits silent for minutes.
    progress = session.progress()
    if session.json or session.quiet:
        live = None
    elif sys.stderr.isatty():
        live, progress = _live_table(), Progress()
    else:
        live = matrix.status_lines(progress)
    plans = [plan_for(release, with_httpd=True, jobs=jobs) for release in releases]
    if every_mpm:
        if click.get_current_context().params.get("mpm"):
            raise BadInput("--every-mpm and --mpm ask for different MPMs", hint="give one of them")
        plans = matrix.every_mpm(plans)
    report = matrix.run(plans, jobs=parallel, progress=progress, on_change=live, presets=matrix.preset_names(presets))
    text = matrix.markdown_table(report) if markdown else matrix.text_table(report.rows)
    return Result(data=report.to_dict(), text=text, ok=report.ok)
