"""`apachews config`: Apache snippets for a WebSocket application, per version and distribution."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import capacity, catalogue, config, distros, doctor
from apachews.catalogue import Release
from apachews.cli._common import Result, Session, command
from apachews.cli._hosts import Hosts, host_options
from apachews.cli._main import main
from apachews.cli._options import RELEASE
from apachews.errors import BadInput


@command(main, "config")
@click.argument("preset", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the presets.")
@click.option("--markdown", is_flag=True, help="With --list: README's table of the presets (from their files).")
@click.option(
    "--apache",
    type=RELEASE,
    metavar="V",
    help="Apache release the config is for (default: this machine's Apache, per doctor).",
)
@click.option(
    "--distro",
    type=click.Choice(distros.NAMES),
    help="Whose layout: module paths, file names, the reload command (default: this machine's, else generic).",
)
@click.option("--backend", "backends", multiple=True, metavar="URL", help="Backend URL (repeatable for balancer).")
@click.option("--path", metavar="PATH", help="URL path on this server (default: the preset's).")
@click.option("--allow", multiple=True, metavar="HOST|CIDR", help="Only these clients (repeatable).")
@click.option(
    "--public-url",
    metavar="URL",
    help="The URL users open (scheme://host[:port]): written into the app-side settings (origins, root_url).",
)
@click.option("--tls", is_flag=True, help="The backend speaks TLS (wss://, SSLProxyEngine on).")
@click.option(
    "--backend-ca",
    metavar="FILE",
    help="Verify a TLS backend's certificate against this PEM file (default: the distribution's CA bundle).",
)
@click.option(
    "--vhost",
    type=click.Choice(config.VHOSTS),
    default="server",
    show_default=True,
    help="Where the routes go: server level, or tls: a file to Include inside the layout's TLS <VirtualHost> "
    "(the notes name it for each --distro).",
)
@click.option(
    "--prefer",
    type=click.Choice(config.PREFER),
    help="Tunnelling style: apachews (the apachews module), wstunnel (stock, 2.4.5+), http-upgrade (2.4.47+). "
    "Default: the release's own.",
)
@click.option("--sticky", is_flag=True, help="balancer: keep a client on one member (ROUTEID cookie).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the files into this directory.")
@click.option("--force", is_flag=True, help="With -o: replace existing files.")
@click.option(
    "--check", "run_check", is_flag=True, help="Validate with a real `httpd -t` first (a flag here; in verify a name)."
)
@click.option("--httpd", "binary", type=click.Path(path_type=Path), help="The httpd for --check.")
@click.option(
    "--max-websockets",
    metavar="N",
    help="Also render the MPM sizing (ServerLimit, MaxRequestWorkers / MaxClients) for N WebSockets open at once.",
)
@click.option(
    "--http-reserve",
    metavar="N",
    help="With --max-websockets: workers kept for plain HTTP (default: the workers the server has now, at least 25).",
)
@click.option(
    "--mpm",
    type=click.Choice(capacity.MPMS),
    help="With --max-websockets: the server's MPM (default: this machine's server's, else 2.2 prefork, 2.4 event).",
)
@click.option(
    "--handoff",
    is_flag=True,
    help="ProxyWebsocketHandoff On (apachews module, worker/event MPMs): an open tunnel gives its worker back.",
)
@click.option(
    "--h2",
    is_flag=True,
    help="The vhost speaks HTTP/2 (Protocols h2): on 2.4.58+ WebSockets open over it too (H2WebSockets on).",
)
@host_options
def config_command(
    session: Session,
    preset: str | None,
    list_only: bool,
    markdown: bool,
    apache: Release | None,
    distro: str | None,
    backends: tuple[str, ...],
    path: str | None,
    allow: tuple[str, ...],
    public_url: str | None,
    tls: bool,
    backend_ca: str | None,
    vhost: str,
    prefer: str | None,
    sticky: bool,
    output: Path | None,
    force: bool,
    run_check: bool,
    binary: Path | None,
    max_websockets: str | None,
    http_reserve: str | None,
    mpm: str | None,
    handoff: bool,
    h2: bool,
    hosts: Hosts,
) -> Result:
    """Render (and optionally check and write) the Apache config for PRESET."""
    if markdown and not list_only:
        raise BadInput("--markdown goes with --list", hint="apachews config --list --markdown")
    if list_only and markdown:
        return Result(data={"markdown": config.presets_table()}, text=config.presets_table().rstrip("\n"))
    if list_only:
        presets = config.list_presets()
        width = max(len(p.name) for p in presets)
        return Result(
            data={"presets": [{"name": p.name, "description": p.description} for p in presets]},
            text="\n".join(f"{p.name:<{width}}  {p.description}" for p in presets),
        )
    if not preset:
        raise BadInput("which preset?", hint="apachews config --list shows them; e.g. apachews config gateone")
    # Options that do nothing without another are refused rather than silently ignored.
    if force and output is None:
        raise BadInput("--force applies to -o DIR only", hint="add -o DIR, or leave out --force")
    if binary and not run_check:
        raise BadInput("--httpd is the httpd of --check", hint="add --check, or leave out --httpd")
    if max_websockets is None and (http_reserve is not None or mpm is not None):
        raise BadInput("--http-reserve and --mpm go with --max-websockets", hint="add --max-websockets N")
    with hosts.one("config renders for one server") as host:
        # Without --apache, the server doctor finds (here, or at --host) decides its version and layout, else
        # the newest 2.4.
        found = None if apache and not hosts else doctor.server_defaults(host=host)
        release = apache or catalogue.load().get(found.apache)  # type: ignore[union-attr]
        sizing, sizing_note = None, None
        if max_websockets is not None:
            sizing, sizing_note = config.mpm_sizing(release, found, max_websockets, http_reserve, mpm, handoff, host)
    deployment = config.Deployment.of(
        preset,
        apache=release,
        distro=distro or (found.distro if found else "generic"),
        backends=backends,
        path=path,
        allow=allow,
        tls=tls,
        prefer=prefer,
        sticky=sticky,
        sizing=sizing,
        handoff=handoff,
        h2=h2,
        public_url=public_url,
        vhost=vhost,
        backend_ca=backend_ca,
    )
    rendering = config.render(deployment)
    if sizing_note:
        rendering.notes.append(sizing_note)
    if found is not None and not apache:
        rendering.notes.insert(0, f"{found.note()} (no --apache given)")
    data = rendering.to_dict()
    if run_check:
        data["check"] = config.check_clean(rendering, binary).to_dict()
    text = rendering.text() + "\n".join(f"# note: {note}" for note in rendering.notes)
    if output is not None:
        written = config.write(rendering, output, force=force)
        data["written"] = [str(p) for p in written]
        text = "\n".join(f"wrote {p}" for p in written) + "\n" + "\n".join(f"note: {n}" for n in rendering.notes)
    if run_check:
        text += "\nhttpd -t: Syntax OK"
    return Result(data=data, text=text)
