"""`apachews install` / `apachews uninstall`: a preset (and the apachews module) into the running server."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import config, install
from apachews.cli._common import Result, Session, command
from apachews.cli._hosts import Hosts, host_options
from apachews.cli._main import main
from apachews.transport import Transport

_APACHECTL = click.option(
    "--apachectl", metavar="PATH", help="The server's apachectl / apache2ctl / httpd (default: found here)."
)
_CONFIG = click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The server's main config file, when its apachectl starts it with -f (2.2 cannot tell us).",
)
_STATE = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Where install manifests live (default: ${install.STATE_ENV} or {install.DEFAULT_STATE}; with --host, "
    f"on the server: {install.DEFAULT_STATE}).",
)


def _echo_diff(diff: str) -> None:
    click.echo(diff.rstrip("\n") + "\n")


@command(main, "install")
@click.argument("preset")
@_APACHECTL
@_CONFIG
@click.option("--module", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="apachews .so to install.")
@click.option("--modules-dir", type=click.Path(file_okay=False, path_type=Path), help="Put the module here.")
@click.option("--backend", "backends", multiple=True, metavar="URL", help="Backend URL (repeatable for balancer).")
@click.option("--path", metavar="PATH", help="URL path on this server (default: the preset's).")
@click.option("--allow", multiple=True, metavar="HOST|CIDR", help="Only these clients (repeatable).")
@click.option("--prefer", type=click.Choice(config.PREFER), help="2.4.47+: tunnel with mod_proxy_wstunnel.")
@click.option(
    "--vhost",
    metavar="NAME[:PORT]",
    help="Put the routes into this VirtualHost of the server (as apachectl -S names it): one Include line "
    "before its </VirtualHost>. Default: the only one of the preset's scheme (https when it has any), if one.",
)
@click.option("--server-wide", is_flag=True, help="Put the routes at server level, whatever the VirtualHosts.")
@_STATE
@click.option("--dry-run", is_flag=True, help="Print the plan and the diff; change nothing.")
@click.option(
    "--diff", "diff_only", is_flag=True, help="Print only the diff of every file it would change; change nothing."
)
@host_options
def install_command(
    session: Session,
    preset: str,
    apachectl: str | None,
    config_file: Path | None,
    module: Path | None,
    modules_dir: Path | None,
    backends: tuple[str, ...],
    path: str | None,
    allow: tuple[str, ...],
    prefer: str | None,
    vhost: str | None,
    server_wide: bool,
    state_dir: Path | None,
    dry_run: bool,
    diff_only: bool,
    hosts: Hosts,
) -> Result:
    """Install PRESET's config (and --module) the server's way: print the diff, then apply it; apachectl -t,
    then a graceful reload (any failure puts every file back)."""
    hosts.refuse_local_file(config_file)

    # The diff goes out before the change is applied (seen also when apachectl -t rejects it); one host only.
    show = None if session.json or session.quiet or len(hosts) > 1 or diff_only or dry_run else _echo_diff

    def run(host: Transport) -> Result:
        result = install.install(
            preset,
            apachectl=apachectl,
            config_file=config_file,
            module=module,
            modules_dir=modules_dir,
            backends=backends,
            path=path,
            allow=allow,
            prefer=prefer,
            states=state_dir,
            dry_run=dry_run or diff_only,
            progress=session.progress(),
            host=host,
            vhost=vhost,
            server_wide=server_wide,
            show_diff=show,
        )
        return Result(data=result.to_dict(), text=result.diff.rstrip("\n") if diff_only else result.text())

    return hosts.each(run)


@command(main, "uninstall")
@click.argument("preset", required=False)
@_APACHECTL
@_CONFIG
@_STATE
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
@click.option("--force", is_flag=True, help="Remove installed files even if edited since.")
@host_options
def uninstall_command(
    session: Session,
    preset: str | None,
    apachectl: str | None,
    config_file: Path | None,
    state_dir: Path | None,
    dry_run: bool,
    force: bool,
    hosts: Hosts,
) -> Result:
    """Remove exactly what `apachews install` added (from its manifest); apachectl -t, graceful reload."""
    hosts.refuse_local_file(config_file)

    def run(host: Transport) -> Result:
        result = install.uninstall(
            preset,
            apachectl=apachectl,
            config_file=config_file,
            states=state_dir,
            dry_run=dry_run,
            force=force,
            progress=session.progress(),
            host=host,
        )
        return Result(data=result.to_dict(), text=result.text())

    return hosts.each(run)


@command(main, "live-verify")
@_APACHECTL
@_CONFIG
@click.option("--prefer", type=click.Choice(config.PREFER), help="Tunnelling style of the temporary route.")
@click.option("--check", "checks", multiple=True, help="Run only this check (repeatable).")
@host_options
def live_verify_command(
    session: Session,
    apachectl: str | None,
    config_file: Path | None,
    prefer: str | None,
    checks: tuple[str, ...],
    hosts: Hosts,
) -> Result:
    """Run the WebSocket suite through the running server via a temporary loopback route, then remove it."""
    hosts.refuse_local_file(config_file)
    return live_on_hosts(session, hosts, apachectl, config_file, prefer, checks)


def live_on_hosts(
    session: Session,
    hosts: Hosts,
    apachectl: str | None,
    config_file: Path | None,
    prefer: str | None,
    checks: tuple[str, ...],
) -> Result:
    """live-verify (and verify --live) on this machine's server or on each --host."""
    from apachews import live

    def run(host: Transport) -> Result:
        report = live.live_verify(
            apachectl,
            config_file=config_file,
            checks=checks or None,
            prefer=prefer,
            progress=session.progress(),
            host=host,
        )
        text = f"Apache {report.apache} ({report.httpd}), live, tunnelling via {report.tunnelling}\n{report.table()}"
        return Result(data=report.to_dict(), text=text, ok=report.ok)

    return hosts.each(run)
