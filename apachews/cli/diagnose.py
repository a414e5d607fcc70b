"""`apachews diagnose`: why WebSockets fail on the running Apache, and the config lines that fix it."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import diagnose
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main
from apachews.config import validate_path
from apachews.errors import BadInput


@command(main, "diagnose")
@click.option("--apachectl", metavar="PATH", help="The server's apachectl / apache2ctl / httpd (default: found here).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The server's main config file, when its apachectl starts it with -f.",
)
@click.option(
    "--log",
    "logs",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Error log to read (repeatable; default: the server's main ErrorLog).",
)
@click.option(
    "--url",
    metavar="URL",
    help="Also try a handshake to this ws:// or wss:// URL on this machine, and explain the answer.",
)
@click.option("--host", metavar="NAME", help="With --url: the Host header (the site's name; default: the URL's).")
@click.option("--origin", metavar="ORIGIN", help="With --url: the Origin header (default: http(s)://HOST).")
@click.option(
    "--idle",
    metavar="SECONDS",
    type=click.FloatRange(0, 3600),
    default=0,
    help="With --url: keep the open WebSocket silent this long, then send: does it survive (1006: no)?",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    metavar="PATH",
    help="A WebSocket path of the site (repeatable): is the upgrade passed on there?",
)
def diagnose_command(
    session: Session,
    apachectl: str | None,
    config_file: Path | None,
    logs: tuple[Path, ...],
    url: str | None,
    host: str | None,
    origin: str | None,
    idle: float,
    paths: tuple[str, ...],
) -> Result:
    """Explain the known WebSocket failures of the running Apache (error log, config, a handshake), with fixes."""
    if url is None and (host or origin or idle):
        raise BadInput("--host, --origin and --idle go with --url", hint="add --url ws://127.0.0.1/PATH")
    if url is not None:
        diagnose.loopback_url(url)  # refused before anything is read
    progress = session.progress()
    progress.step("reading the server: apachectl -V, -M, -t, its config files and error log")
    view = diagnose.read_server(apachectl, config_file, logs)
    websocket_paths = [validate_path(p, "--path") for p in paths]
    findings = diagnose.examine(view, websocket_paths)
    probed = None
    if url is not None:
        marks = diagnose.log_marks(view)
        progress.step(f"handshake to {url}" + (f", then {idle:g} s silent" if idle else ""))
        probed = diagnose.probe(url, host, origin, idle)
        explained = diagnose.explain(view, probed, marks)
        # What the handshake just caused replaces what the log said of the same failure before it.
        findings = [f for f in findings if f.signature not in {e.signature for e in explained}] + explained
    blind = diagnose.blind_spots(view)
    data: dict[str, object] = {
        "server": {"control": view.control, "apache": view.version, "layout": view.distro, "logs": view.error_logs},
        "findings": [f.to_dict() for f in findings],
        "probe": probed.to_dict() if probed else None,
        "rendered": [vars(r) for r in diagnose.rendered_files(view.config_files)],
        "not_seen": blind,
    }
    lines = [f"Apache {view.version} ({view.control}), {view.distro} layout; read: {', '.join(view.error_logs) or '-'}"]
    if probed is not None:
        lines.append(f"handshake: {probed.text()}")
    if findings:
        for number, finding in enumerate(findings, 1):
            lines += ["", f"{number}. {finding.text()}"]
    else:
        lines += ["", "no known WebSocket failure found"]
    lines += [f"note: {said}" for said in blind]
    healthy = probed is None or (probed.status == 101 and probed.accepted and (not idle or probed.echoed))
    return Result(data=data, text="\n".join(lines), ok=not findings and healthy)
