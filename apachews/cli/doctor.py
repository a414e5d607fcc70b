"""`apachews doctor`: what the Apache on this machine runs, what it needs for WebSockets, what to run next."""

from __future__ import annotations

import click

from apachews import doctor
from apachews.cli import main
from apachews.cli._common import Result, Session, command


@command(main, "doctor")
@click.option("--apachectl", metavar="PATH", help="The server's apachectl / apache2ctl / httpd (default: found here).")
@click.option("--apxs", metavar="PATH", help="The apxs to compare with the server (default: apxs / apxs2 here).")
def doctor_command(session: Session, apachectl: str | None, apxs: str | None) -> Result:
    """Read the running Apache (version, MPM, MMN, layout, modules, limits) and say what it needs."""
    report = doctor.examine(apachectl, apxs=apxs)
    return Result(data=report.to_dict(), text=report.text())
