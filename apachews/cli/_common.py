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
import signal
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import click

from apachews.errors import ApachewsError, BadInput, JobFailed
from apachews.progress import Progress, for_terminal


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


def configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
