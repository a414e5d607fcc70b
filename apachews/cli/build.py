"""`apachews build`: mod_proxy_wstunnel.so for one Apache release, built in Docker (or locally)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from apachews import build, distros, floor
from apachews.catalogue import Release
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main
from apachews.cli._options import RELEASE, plan_options
from apachews.errors import BadInput
from apachews.plan import BuildPlan


def install_instructions(result: build.BuildResult) -> str:
    version = result.info["apache"]
    done = "Kept (up to date, not rebuilt)" if result.info.get("reused") else "Built"
    return "\n".join(
        [
            f"{done} {result.module}",
            f"  ({result.info['kind']} module, {result.info.get('mpm') or '?'} MPM, {result.info['builder']} builder,"
            f" {result.info['seconds']} s; details in {result.dist / 'build.json'})",
            *([f"  {floor.summary(result.info['module'])}"] if isinstance(result.info.get("module"), dict) else []),
            "",
            "Install it on the server that runs Apache " + str(version) + ":",
            "  cp mod_proxy_wstunnel.so into the server's modules directory",
            "    (" + ", ".join(f"{name}: {dirs[0]}/" for name, dirs in _modules_dirs().items()) + ")",
            f"  apachews config generic --apache {version} --distro <{'|'.join(distros.NAMES)}>",
            "  then check the configuration (apachectl -t) and reload Apache.",
        ]
    )


def _modules_dirs() -> dict[str, tuple[Path, ...]]:
    """Each layout's packaged modules directories (from distros)."""
    layouts = (distros.get(name) for name in distros.NAMES)
    return {layout.name: layout.system_modules_dirs for layout in layouts if layout.system_modules_dirs}


@command(main, "build")
@click.option(
    "--apache",
    "release",
    type=RELEASE,
    metavar="V",
    help="The Apache release, e.g. 2.2.31 (default: read from --source/--tarball).",
)
@plan_options
@click.option("--with-httpd", is_flag=True, help="Also keep the whole httpd install (for `apachews verify`).")
@click.option("--jobs", "-j", default=2, show_default=True, help="Parallel make jobs.")
@click.option("--rebuild", is_flag=True, help="Build even when the output is up to date.")
@click.option("--apxs", metavar="PATH", help="Compile with this apxs and its headers (the server's dev package).")
@click.option(
    "--dev-package",
    "dev_packages",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="A distribution's apache2-dev / httpd-devel .deb or .rpm, then its apr and apr-util devel packages "
    "(--dev-package A.deb B.deb C.deb): compile against their headers at that distribution's glibc, here.",
)
@click.argument(
    "more_packages", nargs=-1, metavar="[FILE]...", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def build_command(
    session: Session,
    release: Release | None,
    plan_for: Callable[..., BuildPlan],
    with_httpd: bool,
    jobs: int,
    rebuild: bool,
    apxs: str | None,
    dev_packages: tuple[Path, ...],
    more_packages: tuple[Path, ...],
) -> Result:
    """Build mod_proxy_wstunnel.so for one Apache release, loadable on every distribution of its family
    (or --target DISTRO), or against a distribution's dev packages (--dev-package FILE...)."""
    if more_packages and not dev_packages:
        raise BadInput(f"unexpected argument {more_packages[0]}", hint="package files follow --dev-package")
    dev_packages += more_packages
    if dev_packages:  # apachews/devpackage.py
        from apachews import devpackage

        params = click.get_current_context().params
        if release is not None or apxs or with_httpd:
            raise BadInput(
                "--dev-package builds the module alone, for the packages' headers",
                hint="leave out --apache, --apxs and --with-httpd",
            )
        built = devpackage.build(
            dev_packages,
            params["output"],
            target=params["target"] or "",
            glibc=params["glibc"] or "",
            progress=session.progress(),
        )
        return Result(data=built.to_dict(), text=built.text())
    if apxs:  # on the host, or inside --base-image: apachews/serverbuild.py
        from apachews import serverbuild

        if release is not None:
            raise BadInput("--apxs builds for the headers apxs has: leave out --apache")
        params = click.get_current_context().params
        built = serverbuild.build_with(
            apxs,
            params["base_image"],
            params["output"],
            session.progress(),
            target=params["target"] or "",
            glibc=params["glibc"] or "",
        )
        return Result(data=built.to_dict(), text=built.text())
    plan = plan_for(release, with_httpd=with_httpd, jobs=jobs)
    result = build.build(plan, progress=session.progress(), rebuild=rebuild)
    return Result(data=result.to_dict(), text=install_instructions(result))
