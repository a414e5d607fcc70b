"""The `apachews` group every command registers on (its own module, so that the command modules import it
without importing the package that imports them)."""

from __future__ import annotations

import click

from apachews import __version__
from apachews.cli._common import ApachewsGroup, Session, global_options, merge_globals

EPILOG = """\b
Global options (-v, -q, --json, --debug) go before or after the sub-command.
Exit codes: 0 success, 1 the job failed, 2 bad input or usage, 130/143 interrupted.
Shell completion: eval "$(_APACHEWS_COMPLETE=bash_source apachews)" (zsh_source, fish_source).

\b
Option names mean one thing everywhere: --apache V (a release), -o/--output (where results go),
-j/--jobs (make jobs), --mirror (an Apache mirror). Deliberate exception: --check is a flag in
`config` (run httpd -t) but a check name in `verify` / `live-verify` (run only that check).
"""


@click.group(cls=ApachewsGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="apachews")
@global_options
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, as_json: bool, debug: bool) -> None:
    """Give an existing Apache httpd (2.2 to 2.4) a working, safe WebSocket reverse proxy."""
    ctx.obj = Session()
    merge_globals(ctx.obj, verbose, quiet, as_json, debug)
