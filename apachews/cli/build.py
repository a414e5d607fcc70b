"""`apachews build`: mod_proxy_wstunnel.so for one Apache release, built in Docker (or locally)."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import build
from apachews.cli import main
from apachews.cli._common import Result, Session, command, source_options
from apachews.sources import SourceOptions


def install_instructions(result: build.BuildResult) -> str:
    version = result.info["apache"]
    return "\n".join(
        [
            f"Built {result.module}",
            f"  ({result.info['kind']} module, {result.info['builder']} builder, {result.info['seconds']} s;"
            f" details in {result.dist / 'build.json'})",
            "",
            "Install it on the server that runs Apache " + str(version) + ":",
            "  cp mod_proxy_wstunnel.so into the server's modules directory",
            "    (Debian/Ubuntu: /usr/lib/apache2/modules/, RHEL/CentOS: /usr/lib64/httpd/modules/,"
            " Gentoo: /usr/lib64/apache2/modules/)",
            f"  apachews config generic --apache {version} --distro <debian|rhel|gentoo|generic>",
            "  then check the configuration (apachectl -t) and reload Apache.",
        ]
    )


@command(main, "build")
@click.option("--apache", "version", metavar="V", required=True, help="The Apache release, e.g. 2.2.31.")
@source_options
@click.option("--base-image", metavar="IMAGE", help="Build in this image (default: apachews/base:bookworm).")
@click.option("--backport", is_flag=True, help="On 2.4.6+, build the apachews module instead of the stock one.")
@click.option("--with-httpd", is_flag=True, help="Also keep the whole httpd install (for `apachews verify`).")
@click.option("--builder", type=click.Choice(["docker", "local"]), default="docker", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("dist"), show_default=True)
@click.option("--jobs", "-j", default=2, show_default=True, help="Parallel make jobs.")
def build_command(
    session: Session,
    version: str,
    sources: SourceOptions,
    base_image: str | None,
    backport: bool,
    with_httpd: bool,
    builder: str,
    output: Path,
    jobs: int,
) -> Result:
    """Build mod_proxy_wstunnel.so for one Apache release, in an image matching the target server."""
    result = build.build(
        version,
        source=sources,
        base_image=base_image,
        backport=backport,
        with_httpd=with_httpd,
        builder=builder,
        out_dir=output,
        jobs=jobs,
        progress=session.progress(),
    )
    return Result(data=result.to_dict(), text=install_instructions(result))
