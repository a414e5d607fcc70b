"""`apachews package --deb`: the apachews module and its enabling config as a package config management tracks."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import packaging
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main
from apachews.cli._options import output_option
from apachews.errors import BadInput


@command(main, "package")
@click.option("--deb", is_flag=True, help="Build a .deb with dpkg-deb.")
@click.option("--rpm", is_flag=True, help="Build an .rpm with rpmbuild.")
@click.option(
    "--module",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The apachews mod_proxy_wstunnel.so (built for the target server's Apache).",
)
@click.option("--preset", help="Also ship and enable this preset's proxy config.")
@click.option("--backend", "backends", multiple=True, metavar="URL", help="Backend URL for --preset.")
@click.option("--path", metavar="PATH", help="URL path for --preset (default: the preset's).")
@click.option("--allow", multiple=True, metavar="HOST|CIDR", help="Only these clients (repeatable).")
@click.option("--apxs", metavar="PATH", help="The apxs whose headers built the module (default: apxs here).")
@output_option("Directory that receives the package.")
def package_command(
    session: Session,
    deb: bool,
    rpm: bool,
    module: Path,
    preset: str | None,
    backends: tuple[str, ...],
    path: str | None,
    allow: tuple[str, ...],
    apxs: str | None,
    output: Path,
) -> Result:
    """Package the module (and a preset's config) so dpkg installs, enables and removes it cleanly."""
    if deb == rpm:
        raise BadInput("which package format?", hint="give one of --deb (dpkg-deb) or --rpm (rpmbuild)")
    build = packaging.build_deb if deb else packaging.build_rpm
    built = build(module, output, preset=preset, backends=backends, path=path, allow=allow, apxs=apxs)
    return Result(data=built.to_dict(), text=built.text())
