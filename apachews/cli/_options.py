"""The options several commands share, parsed at the CLI edge into the objects the stage modules take:
`--apache` into a catalogue `Release` (RELEASE, RELEASES), `--base-image` checked as a Docker reference (IMAGE),
-o/--output, the sources' options (`SourceOptions`), mod_ssl's OpenSSL (`OpenSSLOptions`), and a build's
options into a frozen `BuildPlan` (`plan_options`)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click

from apachews import catalogue
from apachews.catalogue import Release
from apachews.errors import BadInput
from apachews.images import DEFAULT_BASE_IMAGE
from apachews.plan import BUILDERS, MPMS, BuildPlan, check_image_reference
from apachews.sources import SourceOptions
from apachews.sources.openssl import OpenSSLOptions


class ReleaseType(click.ParamType):
    """`--apache V`, parsed once at the edge into a catalogue Release (unknown: BadInput with close matches)."""

    name = "version"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Release:
        return value if isinstance(value, Release) else catalogue.load().get(str(value))

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        versions = [str(r.version) for r in catalogue.load().all(None) if r.released is not False]
        return [CompletionItem(v) for v in versions if v.startswith(incomplete)]


class ReleaseListType(click.ParamType):
    """`--apache 2.2.31,2.4.1-2.4.4,all-2.2`: the released versions it names, in order."""

    name = "versions"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[Release, ...]:
        return value if isinstance(value, tuple) else tuple(catalogue.load().expand(str(value)))


class ImageType(click.ParamType):
    """`--base-image`: a Docker image reference, checked here so a typo is bad input (exit 2), not an engine error."""

    name = "image"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return check_image_reference(str(value))


RELEASE = ReleaseType()


def output_option(help_text: str) -> Callable:
    """-o/--output: the directory results go to (dist/ by default), the same option in every command."""
    return click.option(
        "-o",
        "--output",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("dist"),
        show_default=True,
        help=help_text,
    )


RELEASES = ReleaseListType()
IMAGE = ImageType()


_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def source_options(fn: Callable) -> Callable:
    """The options that say where Apache sources come from; the command gets `sources: SourceOptions`."""

    @click.option(
        "--mirror",
        metavar="URL|DIR",
        help="An Apache mirror laid out like the archive's dist/httpd/: http(s)://, file:// or a local directory "
        "(default: $APACHEWS_MIRROR, else archive.apache.org).",
    )
    @click.option("--tarball", type=_EXISTING_FILE, help="Use this httpd-*.tar.gz / .tar.bz2 file.")
    @click.option("--source", type=_EXISTING_DIR, help="Use this unpacked tree or git checkout as is.")
    @click.option("--git", "git_repo", type=_EXISTING_DIR, help="Export tag V from this apache/httpd clone.")
    @click.option("--from-pypi", is_flag=True, help="Take httpd from PyPI's mod-wsgi-httpd sdist.")
    @click.option(
        "--insecure-no-checksum",
        is_flag=True,
        help="Accept a download no checksum can verify (not recommended).",
    )
    @functools.wraps(fn)
    def wrapper(
        mirror: str | None,
        tarball: Path | None,
        source: Path | None,
        git_repo: Path | None,
        from_pypi: bool,
        insecure_no_checksum: bool,
        **params: Any,
    ) -> Any:
        if insecure_no_checksum and (tarball or source or git_repo or from_pypi):
            raise BadInput(
                "--insecure-no-checksum applies to mirror downloads only",
                hint="leave it out: --tarball, --source, --git and --from-pypi are not checked against a mirror's sums",
            )
        options = SourceOptions(tarball, source, git_repo, from_pypi, mirror, insecure_no_checksum)
        return fn(sources=options, **params)

    return wrapper


def openssl_options(fn: Callable) -> Callable:
    """Where mod_ssl's OpenSSL comes from (releases that need one the image lacks: build-flags.json "openssl");
    the command gets `openssl: OpenSSLOptions`."""

    @click.option("--openssl-source", type=_EXISTING_DIR, help="Build mod_ssl against this OpenSSL source tree.")
    @click.option(
        "--openssl-git",
        type=_EXISTING_DIR,
        help="Build mod_ssl against --openssl-ref of this OpenSSL clone (or bare git dir).",
    )
    @click.option("--openssl-ref", metavar="REF", help="Tag, branch or commit of --openssl-git (default: HEAD).")
    @click.option(
        "--openssl-tarball",
        type=_EXISTING_FILE,
        help="Build mod_ssl against this openssl-*.tar.gz (with --openssl-sha256).",
    )
    @click.option("--openssl-sha256", metavar="HEX", help="The sha256 --openssl-tarball must have.")
    @click.option("--without-ssl", is_flag=True, help="Build no mod_ssl (verify then skips its TLS checks).")
    @functools.wraps(fn)
    def wrapper(
        openssl_source: Path | None,
        openssl_git: Path | None,
        openssl_ref: str | None,
        openssl_tarball: Path | None,
        openssl_sha256: str | None,
        without_ssl: bool,
        **params: Any,
    ) -> Any:
        options = OpenSSLOptions(openssl_source, openssl_git, openssl_ref, openssl_tarball, openssl_sha256, without_ssl)
        return fn(openssl=options, **params)

    return wrapper


def plan_options(fn: Callable) -> Callable:
    """The options of a build (sources, image, builder, output): the command gets `plan_for(release, **more)`,
    which makes the frozen BuildPlan the stage modules take."""

    @source_options
    @click.option(
        "--base-image", type=IMAGE, metavar="IMAGE", help=f"Build in this image (default: {DEFAULT_BASE_IMAGE})."
    )
    @click.option("--backport", is_flag=True, help="On 2.4.6+, use the apachews module instead of the stock one.")
    @click.option(
        "--builder",
        type=click.Choice(BUILDERS),
        default="docker",
        show_default=True,
        help="docker: in --base-image, networking off; local: this host's gcc and make.",
    )
    @output_option("Directory that receives httpd-V/ (the module, build.json, the log).")
    @click.option("--mpm", type=click.Choice(MPMS), help="MPM (default: 2.2 prefork, 2.4 event).")
    @click.option(
        "--target",
        metavar="DISTRO",
        help="The module must load on this distribution (a key of the catalogue): its glibc is the floor "
        "(default: the oldest distribution of the release's family; see `apachews versions --distributions`).",
    )
    @click.option("--glibc", metavar="X.Y", help="The module must load with this glibc or newer (instead of --target).")
    @openssl_options
    @functools.wraps(fn)
    def wrapper(
        sources: SourceOptions,
        base_image: str | None,
        backport: bool,
        builder: str,
        output: Path,
        mpm: str | None,
        target: str | None,
        glibc: str | None,
        openssl: OpenSSLOptions,
        **params: Any,
    ) -> Any:
        if base_image and builder == "local":
            raise BadInput("--base-image applies to the docker builder only", hint="leave out --builder local")

        def plan_for(release: Release | None, **more: Any) -> BuildPlan:
            release = release or sources.release()
            return BuildPlan(
                release, source=sources, base_image=base_image or "", backport=backport, builder=builder,
                out_dir=output, mpm=mpm or "", target=target or "", glibc=glibc or "", openssl=openssl,
                **more,
            )  # fmt: skip

        return fn(plan_for=plan_for, **params)

    return wrapper
