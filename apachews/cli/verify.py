"""`apachews verify`: prove a real Apache proxies WebSockets, and keeps doing so under abuse."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from apachews import config, httpd, verify
from apachews.build import with_httpd
from apachews.catalogue import Release
from apachews.cli._common import Result, Session, command
from apachews.cli._hosts import Hosts, host_options
from apachews.cli._main import main
from apachews.cli._options import RELEASE, output_option, source_options
from apachews.dist import Dist
from apachews.distros import trees
from apachews.errors import BadInput
from apachews.sources import SourceOptions


def resolve_httpd(binary: Path | None, dist: Path | None) -> tuple[httpd.Httpd, Path | None]:
    """The Apache to test and, for a build's dist dir, the module it built."""
    if binary and dist:
        raise BadInput("give --httpd or --dist, not both")
    if dist is None:
        return httpd.locate(binary=binary), None
    built = Dist.load(dist, httpd=True)
    return built.httpd(), built.module_path if built.backport else None


def target_module(dist: Path | None, module: Path | None) -> Path | None:
    """With --target: the module under test, given as a file or as a build's output directory."""
    if dist is not None and module is not None:
        raise BadInput("give --dist or --module, not both")
    if dist is None:
        return module
    return Dist.load(dist, module=True).module_path


@command(main, "verify")
@click.option("--httpd", "binary", type=click.Path(path_type=Path), help="Apache binary (default: system's).")
@click.option("--dist", type=click.Path(path_type=Path), help="A dir made by `apachews build --with-httpd`.")
@click.option(
    "--target",
    "target_key",
    metavar="DISTRO",
    help="Run that distribution's own Apache (a key of `apachews versions --distributions`) in a container of its "
    "root, on this host's loopback (make it with `apachews image target DISTRO`); --module or --dist gives the "
    "module under test.",
)
@click.option("--module", type=click.Path(path_type=Path), help="Load this mod_proxy_wstunnel.so instead.")
@click.option(
    "--preset",
    default="generic",
    show_default=True,
    help="Config preset under test, a TLS case (gateone-wss, broadway-ssl), a comma-separated list, or 'all'.",
)
@click.option("--prefer", type=click.Choice(config.PREFER), help="Tunnelling style (default: the release's).")
@click.option(
    "--layout",
    type=click.Choice(trees.LAYOUTS),
    help="How the config is installed: a distribution's layout (its own tree, as its packages lay it out), plain "
    "(the build's own httpd.conf, config in a <VirtualHost>), bare (a lab ServerRoot). Default: the layout of the "
    "Apache under test.",
)
@click.option(
    "--check",
    "checks",
    multiple=True,
    metavar="NAME",
    help="Run only this check (repeatable; `config --check` is a flag).",
)
@click.option(
    "--apache", "release", type=RELEASE, metavar="V", help="Build (or reuse from -o) this release, then verify it."
)
@output_option("With --apache: where the build goes (reused when it holds httpd-V with its httpd).")
@click.option(
    "--live",
    is_flag=True,
    help="Through the running server (doctor finds it): a temporary loopback route, removed after "
    "(the same as `apachews live-verify`).",
)
@click.option("--apachectl", metavar="PATH", help="With --live: the server's apachectl / apache2ctl.")
@click.option(
    "--max-websockets",
    metavar="N",
    help="Size the Apache under test for N WebSockets (as config --max-websockets does) and run the capacity "
    "check: N open and echoing, is plain HTTP still answered, how slowly?",
)
@click.option(
    "--handoff",
    is_flag=True,
    help="Render the preset with ProxyWebsocketHandoff On (the apachews module: --module, or --prefer apachews).",
)
@click.option(
    "--mpm",
    type=click.Choice(["prefork", "worker", "event"]),
    help="With bare or a layout whose tree switches MPMs by module: run this MPM (the tree as after switching).",
)
@source_options
@host_options
def verify_command(
    session: Session,
    binary: Path | None,
    dist: Path | None,
    target_key: str | None,
    module: Path | None,
    preset: str,
    prefer: str | None,
    layout: str | None,
    checks: tuple[str, ...],
    release: Release | None,
    output: Path,
    live: bool,
    apachectl: str | None,
    max_websockets: str | None,
    handoff: bool,
    mpm: str | None,
    sources: SourceOptions,
    hosts: Hosts,
) -> Result:
    """Start a real Apache in front of the bundled echo backend and run the WebSocket suite."""
    if (apachectl or hosts) and not live:
        raise BadInput("--apachectl and --host go with --live", hint="add --live")
    if live and (max_websockets is not None or handoff or mpm):
        raise BadInput(
            "--max-websockets, --handoff and --mpm change the server under test; --live leaves the running one as "
            "it is (and N WebSockets could starve its HTTP)",
            hint="apachews doctor --max-websockets N says what the running server holds",
        )
    # Checked before --live refuses the rest and before --apache builds; the module is known only below.
    setup = verify.ServerSetup(prefer=prefer, layout=layout, max_websockets=max_websockets, handoff=handoff, mpm=mpm)
    if live:
        if binary or dist or module or release or layout or preset != "generic":
            raise BadInput(
                "--live tests the running server as it is configured",
                hint="leave out --httpd, --dist, --module, --apache, --layout and --preset",
            )
        from apachews.cli.install import live_on_hosts

        return live_on_hosts(session, hosts, apachectl, None, prefer, checks)
    where = ""
    if target_key is not None:
        if binary or release or live:
            raise BadInput("--target runs that distribution's own Apache: leave out --httpd, --apache and --live")
        from apachews import target

        module = target_module(dist, module)
        server, built_module = target.locate(target_key), None
        assert server.runner is not None
        where = f" in {server.runner.name}"
    elif release is not None:
        if binary or dist:
            raise BadInput("--apache builds its own httpd: leave out --httpd and --dist")
        dist = with_httpd(release, sources, output, session.progress()).path
    if target_key is None:
        server, built_module = resolve_httpd(binary, dist)
    presets = verify.setup_names(preset)
    setup = dataclasses.replace(setup, module=module or built_module)
    reports = verify.run_presets(server, presets, setup=setup, checks=checks or None, progress=session.progress())
    texts = []
    for report in reports:
        texts.append(
            f"Apache {report.apache} ({report.httpd}{where}), preset {report.preset}, {report.layout} layout, "
            f"tunnelling via {report.tunnelling}\n{report.table()}"
        )
        if report.error_log:
            texts.append(f"Apache error log: {report.error_log}")
    ok = all(report.ok for report in reports)
    if len(reports) == 1:
        return Result(data=reports[0].to_dict(), text="\n".join(texts), ok=ok)
    texts.append(verify.summary(reports))
    return Result(data={"reports": [r.to_dict() for r in reports]}, text="\n\n".join(texts), ok=ok)
