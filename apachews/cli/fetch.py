"""`apachews fetch`: a verified, unpacked Apache httpd source tree (see DEVELOPERS.md, stage "sources")."""

from __future__ import annotations

import click

from apachews.catalogue import Release
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main
from apachews.cli._options import RELEASE, source_options
from apachews.sources import SourceOptions


@command(main, "fetch")
@click.option("--apache", "release", type=RELEASE, metavar="V", help="The Apache release, e.g. 2.2.31.")
@source_options
def fetch_command(session: Session, release: Release | None, sources: SourceOptions) -> Result:
    """Get a verified, unpacked Apache source tree and print its path."""
    tree = sources.provide(release, progress=session.progress())
    return Result(data=tree.to_dict(), text=str(tree.path))
