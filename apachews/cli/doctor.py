"""`apachews doctor`: what the Apache on this machine runs, what it needs for WebSockets, what to run next."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import doctor
from apachews.cli import main
from apachews.cli._common import Result, Session, command


@command(main, "doctor")
@click.option("--apachectl", metavar="PATH", help="The server's apachectl / apache2ctl / httpd (default: found here).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The server's main config file, when its apachectl starts it with -f (2.2 cannot tell us).",
)
@click.option("--apxs", metavar="PATH", help="The apxs to compare with the server (default: apxs / apxs2 here).")
def doctor_command(session: Session, apachectl: str | None, config_file: Path | None, apxs: str | None) -> Result:
    """Read the running Apache (version, MPM, MMN, layout, modules, limits) and say what it needs."""
    report = doctor.examine(apachectl, apxs=apxs, config_file=config_file)
    return Result(data=report.to_dict(), text=report.text())
