"""`apachews image`: the Docker images builds run in, made without any registry."""

from __future__ import annotations

import click

from apachews import images
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main
from apachews.cli._options import IMAGE
from apachews.errors import BadInput


@main.group("image")
def image_group() -> None:
    """Build images: `bootstrap` makes a base image with debootstrap from a suite's packages (no registry needed)."""


@command(image_group, "bootstrap")
@click.option("--suite", default=images.DEFAULT_SUITE, show_default=True, help="The suite to debootstrap.")
@click.option(
    "--package-mirror",
    metavar="URL",
    help="The mirror debootstrap fetches from (default: the one this host's apt uses).",
)
@click.option("--mirror", "apache_mirror", hidden=True, help="Refused: --mirror is an Apache mirror elsewhere.")
@click.option("--tag", type=IMAGE, help="Image tag (default: apachews/base:<suite>).")
@click.option("--force", is_flag=True, help="Rebuild even if the image exists.")
def bootstrap_command(
    session: Session, suite: str, package_mirror: str | None, apache_mirror: str | None, tag: str | None, force: bool
) -> Result:
    """Make a build base image with debootstrap and import it into Docker."""
    if apache_mirror:  # --mirror means an Apache mirror in every other command: no second meaning here
        raise BadInput(
            "image bootstrap takes the mirror of its packages as --package-mirror",
            hint=f"apachews image bootstrap --package-mirror {apache_mirror}",
        )
    info = images.bootstrap(suite, mirror=package_mirror, tag=tag, force=force, progress=session.progress())
    verb = "created" if info.created else "already present (use --force to rebuild)"
    return Result(data=info.to_dict(), text=f"{info.tag} {verb}: {info.id[:19]}")


@command(image_group, "target")
@click.argument("target")
@click.option("--force", is_flag=True, help="Remake the image even if it exists.")
def target_command(session: Session, target: str, force: bool) -> Result:
    """Make apachews/target:TARGET, a real root of that distribution's Apache (TARGET: a distribution with a
    suite in `apachews versions --distributions`)."""
    info = images.target_image(target, force=force, progress=session.progress())
    verb = "created" if info.created else "already present (use --force to rebuild)"
    return Result(data=info.to_dict(), text=f"{info.tag} {verb}: {info.id[:19]}")
