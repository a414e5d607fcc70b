"""The `apachews` command line: a thin layer over the stage modules (sources, patches, build, ...).

Each stage's commands live in a module of this package and register themselves on `main`.
"""

from __future__ import annotations

import click

from apachews import __version__
from apachews.cli._common import Session, configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="apachews")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv for debug).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (every command).")
@click.pass_context
def main(ctx: click.Context, verbose: int, as_json: bool) -> None:
    """Give an existing Apache httpd (2.2 to 2.4) a working, safe WebSocket reverse proxy."""
    configure_logging(verbose)
    ctx.obj = Session(json=as_json, verbose=verbose)


# Stage commands register themselves on `main` when imported.
from apachews.cli import (  # noqa: E402,F401
    bench,
    build,
    config,
    doctor,
    fetch,
    image,
    install,
    matrix,
    package,
    patch,
    torture,
    verify,
    versions,
)
