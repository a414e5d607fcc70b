"""`apachews doctor`: what the Apache on this machine runs, what it needs for WebSockets, what to run next."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import capacity, doctor
from apachews.cli._common import Result, Session, command
from apachews.cli._hosts import Hosts, host_options
from apachews.cli._main import main
from apachews.errors import BadInput
from apachews.transport import Transport


@command(main, "doctor")
@click.option("--apachectl", metavar="PATH", help="The server's apachectl / apache2ctl / httpd (default: found here).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The server's main config file, when its apachectl starts it with -f (2.2 cannot tell us).",
)
@click.option("--apxs", metavar="PATH", help="The apxs to compare with the server (default: apxs / apxs2 here).")
@click.option(
    "--max-websockets",
    metavar="N",
    help="The WebSockets you need open at once: does the MPM hold them and still serve HTTP? (and its sizing)",
)
@click.option(
    "--http-reserve",
    metavar="N",
    help="With --max-websockets: workers to keep for plain HTTP (default for the sizing: the workers it has now).",
)
@click.option(
    "--module",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A built mod_proxy_wstunnel.so: does it load into this server (architecture, glibc, MMN)? Exit 1 if not.",
)
@host_options
def doctor_command(
    session: Session,
    apachectl: str | None,
    config_file: Path | None,
    apxs: str | None,
    max_websockets: str | None,
    http_reserve: str | None,
    module: Path | None,
    hosts: Hosts,
) -> Result:
    """Read the running Apache (version, MPM, MMN, glibc, layout, modules, limits) and say what it needs."""
    wanted = capacity.validate_websockets(max_websockets) if max_websockets is not None else None
    if http_reserve is not None and wanted is None:
        raise BadInput("--http-reserve goes with --max-websockets", hint="add --max-websockets N")
    reserve = capacity.validate_reserve(http_reserve) if http_reserve is not None else None
    hosts.refuse_local_file(config_file)

    def read(host: Transport) -> Result:
        report = doctor.examine(
            apachectl,
            apxs=apxs,
            config_file=config_file,
            max_websockets=wanted,
            http_reserve=reserve,
            host=host,
            module=module,
        )
        loads = report.module is None or bool(report.module["loads"])
        return Result(data=report.to_dict(), text=report.text(), ok=loads)

    return hosts.each(read)
