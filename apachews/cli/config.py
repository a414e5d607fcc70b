"""`apachews config`: Apache snippets for a WebSocket application, per version and distribution."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import config, distros, doctor
from apachews.cli import main
from apachews.cli._common import Result, Session, command
from apachews.errors import BadInput, JobFailed


@command(main, "config")
@click.argument("preset", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the presets.")
@click.option(
    "--apache", metavar="V", help="Apache release the config is for (default: this machine's Apache, per doctor)."
)
@click.option(
    "--distro",
    type=click.Choice(distros.NAMES),
    help="Whose layout: module paths, file names, the reload command (default: this machine's, else generic).",
)
@click.option("--backend", "backends", multiple=True, metavar="URL", help="Backend URL (repeatable for balancer).")
@click.option("--path", metavar="PATH", help="URL path on this server (default: the preset's).")
@click.option("--allow", multiple=True, metavar="HOST|CIDR", help="Only these clients (repeatable).")
@click.option("--tls", is_flag=True, help="The backend speaks TLS (wss://, SSLProxyEngine on).")
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
def config_command(
    session: Session,
    preset: str | None,
    list_only: bool,
    apache: str | None,
    distro: str | None,
    backends: tuple[str, ...],
    path: str | None,
    allow: tuple[str, ...],
    tls: bool,
    prefer: str | None,
    sticky: bool,
    output: Path | None,
    force: bool,
    run_check: bool,
    binary: Path | None,
) -> Result:
    """Render (and optionally check and write) the Apache config for PRESET."""
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
    # Without --apache, the server doctor finds here decides (its version and layout), else the newest 2.4.
    found = None if apache else doctor.server_defaults()
    rendering = config.render(
        preset,
        apache=apache or found.apache,  # type: ignore[union-attr]
        distro=distro or (found.distro if found else "generic"),
        backends=backends,
        path=path,
        allow=allow,
        tls=tls,
        prefer=prefer,
        sticky=sticky,
    )
    if found is not None:
        rendering.notes.insert(0, f"{found.note()} (no --apache given)")
    data = rendering.to_dict()
    if run_check:
        result = config.check(rendering, binary)
        data["check"] = result.to_dict()
        if not result.ok:
            where = f"{result.file}, line {result.line}: " if result.line else ""
            raise JobFailed(f"httpd -t rejected the config: {where}{result.error}", check=result.to_dict())
        if result.warnings:
            # httpd accepts it, but will not do what it says (AH01146: a ProxyPass parameter dropped).
            raise JobFailed(
                "httpd -t accepted the config with warnings: " + "; ".join(result.warnings),
                hint="a warning here means a directive is ignored; report it if the rendering is apachews' own",
                check=result.to_dict(),
            )
    text = rendering.text() + "\n".join(f"# note: {note}" for note in rendering.notes)
    if output is not None:
        written = config.write(rendering, output, force=force)
        data["written"] = [str(p) for p in written]
        text = "\n".join(f"wrote {p}" for p in written) + "\n" + "\n".join(f"note: {n}" for n in rendering.notes)
    if run_check:
        text += "\nhttpd -t: Syntax OK"
    return Result(data=data, text=text)
