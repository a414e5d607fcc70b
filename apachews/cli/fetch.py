"""`apachews fetch`: a verified, unpacked Apache httpd source tree (see DEVELOPERS.md, stage "sources")."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import sources
from apachews.cli import main
from apachews.cli._common import Result, command

_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@command(main, "fetch")
@click.option("--apache", "version", metavar="V", help="The Apache release, e.g. 2.2.31.")
@click.option("--mirror", metavar="URL", help="A mirror laid out like the Apache archive's dist/httpd/.")
@click.option("--tarball", type=_EXISTING_FILE, help="Use this httpd-*.tar.gz / .tar.bz2 file.")
@click.option("--source", type=_EXISTING_DIR, help="Use this unpacked tree or git checkout as is.")
@click.option("--git", "git_repo", type=_EXISTING_DIR, help="Export tag V from this apache/httpd clone.")
@click.option("--from-pypi", is_flag=True, help="Take httpd from PyPI's mod-wsgi-httpd sdist.")
@click.option(
    "--insecure-no-checksum", is_flag=True, help="Accept a download no checksum can verify (not recommended)."
)
def fetch_command(
    session,
    version: str | None,
    mirror: str | None,
    tarball: Path | None,
    source: Path | None,
    git_repo: Path | None,
    from_pypi: bool,
    insecure_no_checksum: bool,
) -> Result:
    """Get a verified, unpacked Apache source tree and print its path."""
    tree = sources.provide(
        version,
        tarball=tarball,
        source=source,
        git=git_repo,
        from_pypi=from_pypi,
        mirror=mirror,
        insecure_no_checksum=insecure_no_checksum,
        progress=session.progress(),
    )
    return Result(data=tree.to_dict(), text=str(tree.path))
