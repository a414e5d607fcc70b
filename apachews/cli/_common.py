"""What every command shares: --json, error handling, exit codes, progress.

A command function returns a `Result` (data for --json, text for humans) or raises an `ApachewsError`.
Exit codes: 0 success, 1 the job failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from apachews import catalogue
from apachews.catalogue import Release
from apachews.errors import ApachewsError
from apachews.plan import BUILDERS, BuildPlan
from apachews.progress import Progress, for_terminal
from apachews.sources import SourceOptions


@dataclass
class Result:
    data: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    ok: bool = True


@dataclass
class Session:
    """Options of the top-level group, reachable from every command."""

    json: bool = False
    verbose: int = 0

    def progress(self) -> Progress:
        return for_terminal(self.json)


def _session() -> Session:
    ctx = click.get_current_context()
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Session) else Session()


def _print_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=False, default=str))


def _report(error: ApachewsError, json_mode: bool) -> None:
    if json_mode:
        _print_json({"ok": False, **error.to_dict()})
    else:
        click.echo(f"error: {error.message}", err=True)
        if error.hint:
            click.echo(f"hint: {error.hint}", err=True)


class _Command(click.Command):
    """A command whose parameters may raise ApachewsError while parsing (`--apache` naming no release):
    reported like an error of the command itself (--json aware, exit code of the error)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any):
        given = list(args)
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except ApachewsError as error:
            root = parent.find_root().obj if parent else None
            _report(error, bool(getattr(root, "json", False)) or "--json" in given)
            sys.exit(error.exit_code)


def command(group: click.Group, name: str | None = None, **settings: Any) -> Callable:
    """Register `fn` as a subcommand of `group` with --json and uniform error handling.

    The wrapped function receives `session` (a Session) plus its click parameters.
    """

    def decorate(fn: Callable[..., Result]) -> click.Command:
        @click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
        @functools.wraps(fn)
        def run(as_json: bool, **params: Any) -> None:
            session = _session()
            if as_json:
                session.json = True
            try:
                result = fn(session=session, **params)
            except ApachewsError as error:
                _report(error, session.json)
                sys.exit(error.exit_code)
            except KeyboardInterrupt:
                if session.json:
                    _print_json({"ok": False, "error": "interrupted"})
                else:
                    click.echo("interrupted", err=True)
                sys.exit(130)
            if session.json:
                _print_json({"ok": result.ok, **result.data})
            elif result.text:
                click.echo(result.text.rstrip("\n"))
            if not result.ok:
                sys.exit(1)

        return group.command(name, cls=_Command, **settings)(run)

    return decorate


class ReleaseType(click.ParamType):
    """`--apache V`, parsed once at the edge into a catalogue Release (unknown: BadInput with close matches)."""

    name = "version"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Release:
        return value if isinstance(value, Release) else catalogue.load().get(str(value))


class ReleaseListType(click.ParamType):
    """`--apache 2.2.31,2.4.1-2.4.4,all-2.2`: the released versions it names, in order."""

    name = "versions"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[Release, ...]:
        return value if isinstance(value, tuple) else tuple(catalogue.load().expand(str(value)))


RELEASE = ReleaseType()
RELEASES = ReleaseListType()


def configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def source_options(fn: Callable) -> Callable:
    """The options that say where Apache sources come from; the command gets `sources: SourceOptions`."""

    @click.option("--mirror", metavar="URL", help="A mirror laid out like the Apache archive's dist/httpd/.")
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
        options = SourceOptions(tarball, source, git_repo, from_pypi, mirror, insecure_no_checksum)
        return fn(sources=options, **params)

    return wrapper


def plan_options(fn: Callable) -> Callable:
    """The options of a build (sources, image, builder, output): the command gets `plan_for(release, **more)`,
    which makes the frozen BuildPlan the stage modules take."""

    @source_options
    @click.option("--base-image", metavar="IMAGE", help="Build in this image (default: apachews/base:bookworm).")
    @click.option("--backport", is_flag=True, help="On 2.4.6+, use the apachews module instead of the stock one.")
    @click.option("--builder", type=click.Choice(BUILDERS), default="docker", show_default=True)
    @click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("dist"), show_default=True)
    @functools.wraps(fn)
    def wrapper(
        sources: SourceOptions, base_image: str | None, backport: bool, builder: str, output: Path, **params: Any
    ) -> Any:
        def plan_for(release: Release, **more: Any) -> BuildPlan:
            return BuildPlan(
                release, source=sources, base_image=base_image or "", backport=backport, builder=builder,
                out_dir=output, **more,
            )  # fmt: skip

        return fn(plan_for=plan_for, **params)

    return wrapper
