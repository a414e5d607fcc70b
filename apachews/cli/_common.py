"""What every command shares: global options, the one error path, exit codes, progress.

A command function returns a `Result` (data for --json, text for humans) or raises an `ApachewsError`.
Every failure, usage errors included, leaves through `ApachewsGroup.main`: with --json one JSON object
(`ok`, `error`, `error_type`, `hint`) on stdout, else `error:` / `hint:` lines on stderr; never a traceback
unless --debug. Exit codes: 0 success, 1 the job failed, 2 bad usage or bad input, 130/143 interrupted.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import signal
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from apachews import catalogue
from apachews.catalogue import Release
from apachews.errors import ApachewsError, BadInput, JobFailed
from apachews.plan import BUILDERS, MPMS, BuildPlan
from apachews.progress import Progress, for_terminal
from apachews.sources import SourceOptions
from apachews.sources.openssl import OpenSSLOptions


@dataclass
class Result:
    data: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    ok: bool = True


@dataclass
class Session:
    """The global options (given before or after the sub-command), reachable from every command."""

    json: bool = False
    verbose: int = 0
    quiet: bool = False
    debug: bool = False

    def progress(self) -> Progress:
        return for_terminal(self.json, verbose=self.verbose, quiet=self.quiet)


def _session() -> Session:
    ctx = click.get_current_context()
    obj = ctx.find_root().obj
    if not isinstance(obj, Session):
        obj = ctx.find_root().obj = Session()
    return obj


def _print_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=False, default=str))


def _global_flag(args: list[str], *names: str) -> bool:
    """Whether a global flag was given anywhere on the line (before a `--`): errors raised while parsing
    must honour --json / --debug even when the parser never reached them."""
    words = args[: args.index("--")] if "--" in args else args
    return any(word in names for word in words)


def report(error: ApachewsError, json_mode: bool) -> None:
    """The one way a failure is shown."""
    if json_mode:
        payload: dict[str, Any] = {"ok": False, **error.to_dict()}
        payload.setdefault("hint", None)  # always present, so a script can read it without a check
        _print_json(payload)
    else:
        click.echo(f"error: {error.message}", err=True)
        if error.hint:
            click.echo(f"hint: {error.hint}", err=True)


class UsageError(BadInput):
    """Click's own usage errors (missing option, unknown option, bad value), carried on the one error path."""


class Interrupted(JobFailed):
    """Ctrl-C or SIGTERM: the work stopped, what it made was cleaned up."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every cleanup path for an interrupt (containers, scratch dirs) runs."""


def _usage_error(error: click.ClickException) -> ApachewsError:
    ctx = getattr(error, "ctx", None)
    where = ctx.command_path if ctx is not None else "apachews"
    message = error.format_message()
    if isinstance(ctx, click.Context) and isinstance(ctx.command, click.Group) and message.startswith("Usage:"):
        # a group without its sub-command (click puts the whole help in the message): name the commands
        message = f"{where}: which command? " + ", ".join(sorted(ctx.command.list_commands(ctx)))
    made = UsageError(message, hint=f"see `{where} --help`")
    made.exit_code = error.exit_code if isinstance(error, click.UsageError) else 2
    return made


class ApachewsGroup(click.Group):
    """The top-level group: runs the command line and turns every way out of it into one report."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        if not standalone_mode:  # a caller that wants click's exceptions as they are
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        json_mode, debug = _global_flag(argv, "--json"), _global_flag(argv, "--debug")
        previous = _on_sigterm()
        code = 0
        try:
            returned = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
            code = returned if isinstance(returned, int) else 0
        except click.exceptions.Exit as done:
            code = done.exit_code
        except click.ClickException as error:
            code = _fail(_usage_error(error), json_mode, debug)
        except ApachewsError as error:
            code = _fail(error, json_mode, debug)
        except (KeyboardInterrupt, click.Abort) as stop:
            terminated = isinstance(stop, Terminated) or isinstance(stop.__cause__, Terminated)  # click: Abort
            message = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
            _fail(Interrupted(message, hint="nothing half-made was kept; run the command again"), json_mode, debug)
            code = 143 if terminated else 130
        except OSError as error:
            if error.errno != errno.EPIPE:  # a reader that went away (`| head`) is no failure of ours
                code = _fail(_unexpected(error), json_mode, debug)
            else:
                _silence_stdout()
                code = 1
        except Exception as error:  # noqa: BLE001 - the promise: no traceback without --debug
            code = _fail(_unexpected(error), json_mode, debug)
        finally:
            _restore_sigterm(previous)
        sys.exit(code)


def _unexpected(error: BaseException) -> ApachewsError:
    from docker.errors import DockerException

    if isinstance(error, DockerException):
        return JobFailed(f"the Docker engine failed: {error}", hint="check the engine (docker info) and try again")
    return JobFailed(
        f"internal error: {type(error).__name__}: {error}",
        hint="run again with --debug for the traceback, and report it with that traceback",
    )


def _fail(error: ApachewsError, json_mode: bool, debug: bool) -> int:
    if debug:
        traceback.print_exc(file=sys.stderr)
    report(error, json_mode)
    return error.exit_code


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _on_sigterm() -> Any:
    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def global_options(fn: Callable) -> Callable:
    """-v/-q/--json/--debug: accepted on the group and on every command, so before or after the sub-command."""
    fn = click.option("--debug", is_flag=True, help="Show the traceback of an error (for bug reports).")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (every command).")(fn)
    fn = click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")(fn)
    return click.option(
        "-v", "--verbose", count=True, help="Line-based progress and log messages on stderr (-vv for debug)."
    )(fn)


def merge_globals(session: Session, verbose: int, quiet: bool, as_json: bool, debug: bool) -> None:
    session.verbose += verbose
    session.quiet = session.quiet or quiet
    session.json = session.json or as_json
    session.debug = session.debug or debug
    if session.quiet and session.verbose:
        raise BadInput("-q and -v contradict each other", hint="give one of them")
    configure_logging(session.verbose)


def command(group: click.Group, name: str | None = None, **settings: Any) -> Callable:
    """Register `fn` as a subcommand of `group` with the global options and the one error path.

    The wrapped function receives `session` (a Session) plus its click parameters.
    """

    def decorate(fn: Callable[..., Result]) -> click.Command:
        @global_options
        @functools.wraps(fn)
        def run(verbose: int, quiet: bool, as_json: bool, debug: bool, **params: Any) -> None:
            session = _session()
            merge_globals(session, verbose, quiet, as_json, debug)
            result = fn(session=session, **params)
            if session.json:
                _print_json({"ok": result.ok, **result.data})
            elif result.text:
                click.echo(result.text.rstrip("\n"))
            if not result.ok:
                sys.exit(1)

        return group.command(name, **settings)(run)

    return decorate


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


# Docker's reference grammar (distribution/reference): [host[:port]/]path[:tag][@digest], path lowercase.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
_IMAGE_REFERENCE = re.compile(
    rf"{_HOST}{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?"
)


class ImageType(click.ParamType):
    """`--base-image`: a Docker image reference, checked here so a typo is bad input (exit 2), not an engine error."""

    name = "image"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        first = text.split("/", 1)[0] if "/" in text else ""
        # Like Docker: a first part is a registry host only with a dot, a port or as localhost, else a path.
        host_ok = not first or re.fullmatch(_COMPONENT, first) or "." in first or ":" in first or first == "localhost"
        if not (_IMAGE_REFERENCE.fullmatch(text) and host_ok):
            raise BadInput(
                f"--base-image {text!r} is not a Docker image reference",
                hint="give a name like apachews/base:bookworm or centos:7 (lowercase; `docker image ls` lists "
                "the images you have; `apachews image bootstrap --suite S` makes apachews/base:S)",
            )
        return text


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


def configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


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
        "--base-image", type=IMAGE, metavar="IMAGE", help="Build in this image (default: apachews/base:bookworm)."
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
        help="The module must load on this distribution (centos6, debian11, ...): its glibc is the floor "
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
            release = release or release_of(sources)
            return BuildPlan(
                release, source=sources, base_image=base_image or "", backport=backport, builder=builder,
                out_dir=output, mpm=mpm or "", target=target or "", glibc=glibc or "", openssl=openssl,
                **more,
            )  # fmt: skip

        return fn(plan_for=plan_for, **params)

    return wrapper


def release_of(sources: SourceOptions) -> Release:
    """The release a --source tree or --tarball holds, read from it (as `apachews fetch` does) when no
    --apache was given; the other origins need the version to find the sources."""
    if not (sources.source or sources.tarball):
        raise BadInput(
            "which Apache release? give --apache V",
            hint="e.g. --apache 2.2.31; with --source DIR or --tarball FILE the version is read from the sources",
        )
    return catalogue.load().get(str(sources.provide(None).version))
