"""`apachews live-verify` (verify --live): the WebSocket suite through the running server and its real modules.

A temporary loopback-only virtual host (`Listen 127.0.0.1:<free port>`, so no route of the server's own sites
is shadowed) proxies to the bundled echo backends. It is planned the distribution's way (the layouts, which
also enable any proxy module not loaded yet) on a mirror of the server's tree and goes in as a transaction
(transaction.run: `apachectl -t`, a graceful reload) that is never committed: when the checks end, one fails,
a step breaks, on Ctrl-C or SIGTERM, or (over SSH) when the connection drops, the server puts every file back
and reloads again, so the config tree is byte for byte as before. Over SSH the route listens on the server's
127.0.0.1, the backends on this machine reach it through `ssh -R` forwards and the checks through `ssh -L`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from apachews import config, distros, doctor, httpd, transaction, verify
from apachews.distros.placement import apply as apply_plan
from apachews.errors import BadInput, JobFailed
from apachews.httpd import free_port
from apachews.install import Control, module_style, state_dir, with_parents
from apachews.lab import echo
from apachews.lab.echo import EchoServer
from apachews.progress import Progress
from apachews.resources import template_environment
from apachews.transport import LOCAL, Ssh, Transport

_GUARDED_LOAD = re.compile(r"<IfModule !mod_(\w+)\.c>\n\s*LoadModule [^\n]*\n</IfModule>\n")
ERROR_LOG_CHECK = "error-log-clean"
LIVE_PATH = "/apachews-live/ws"
IDLE_LIMIT = 50  # seconds of silence at most in the idle check (each check has 60 s)


def live_rendering(
    report: doctor.Report, backends: dict[str, EchoServer], port: int, prefer: str | None
) -> tuple[config.Rendering, str, str]:
    """A rendering holding one temporary vhost on 127.0.0.1:port with verify's routes; modules the server
    has not loaded yet stay in `modules` (the layout enables them) or as guarded LoadModule lines outside it."""
    snippets, tunnelling, _ = verify.proxy_snippets(report.version, "generic", backends, prefer)
    routes = snippets.pop(next(name for name in snippets if "verify-routes" in name))
    # The echo route at a path of its own: on 2.2, mod_proxy tries the main server's ProxyPass rules before a
    # vhost's, so a preset installed at /ws (verify's usual path) would take the requests.
    preset = config.render(
        "generic", apache=report.version, distro="generic", backends=[backends["echo"].url], path=LIVE_PATH,
        prefer=prefer,
    )  # fmt: skip
    (generic,) = preset.files.values()
    ws_path = preset.websocket_paths[0]
    guarded = {match.group(1): match.group(0) for match in _GUARDED_LOAD.finditer(generic)}
    needed = [name for name in guarded if f"{name}_module" not in report.loaded_modules]
    proxy_conf = _GUARDED_LOAD.sub("", generic)
    # verify's extra routes (<Location> blocks, the lab's route writer) after the preset's: a server-wide
    # <Location "/"> (a preset installed at the root) would otherwise win over plain ProxyPass lines; among the
    # vhost's own Locations the later wins, and "/ws" is a prefix of "/ws-die".
    body = "".join(
        f"    {line}" if line.strip() else line for line in (proxy_conf + "\n" + routes).splitlines(keepends=True)
    )
    vhost = template_environment("apache").get_template("live-vhost.conf.j2").render(port=port, body=body)
    layout = distros.get(report.distro)
    name = layout.live_conf_name(report.version)
    if layout.enables_modules:
        text, modules = vhost, needed
    else:
        text, modules = "".join(guarded[name] for name in needed) + vhost, []
    rendering = config.Rendering(
        "live-verify", report.version, report.distro, tunnelling, {name: text}, modules, websocket_paths=[ws_path]
    )
    return rendering, tunnelling, ws_path


def _log_offset(path: Path | None, host: Transport = LOCAL) -> int:
    if host.remote:
        size = host.sh('wc -c < "$1" 2>/dev/null || echo 0', str(path)).stdout.strip() if path else "0"
        return int(size) if size.isdigit() else 0
    try:
        return path.stat().st_size if path else 0
    except OSError:
        return 0


def _log_since(path: Path | None, offset: int, host: Transport = LOCAL) -> bytes:
    """What the server's error log gained since `offset`."""
    if path is None:
        return b""
    if host.remote:
        return host.run_bytes(["tail", "-c", f"+{offset + 1}", str(path)]).stdout
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read()
    except OSError:
        return b""


def live_verify(
    apachectl: str | Path | None = None,
    *,
    config_file: Path | None = None,
    checks: Sequence[str] | None = None,
    prefer: str | None = None,
    progress: Progress | None = None,
    host: Transport = LOCAL,
) -> verify.VerifyReport:
    """Run verify's checks through the running server; its config is left byte for byte as it was."""
    progress = progress or Progress()
    names = list(checks or verify.CHECKS)
    unknown = [name for name in names if name not in verify.CHECKS]
    if unknown:
        raise BadInput(f"unknown check(s): {', '.join(unknown)}", hint="checks: " + ", ".join(verify.CHECKS))
    report = doctor.examine(apachectl, config_file=config_file, host=host)
    control = Control.of(report, host)
    if control.pid() is None:
        raise BadInput(f"the server behind {report.control} is not running", hint=f"{report.control} start")
    if "proxy_wstunnel_module" in report.loaded_modules and prefer is None:
        prefer = module_style()  # test the tunnelling module the server loads (stock, or ours after install)
    ok, before = control.config_test()
    if not ok:
        raise BadInput("the server's config fails apachectl -t before any change", hint=before[-2000:])
    return _live_staged(host, report, control, names, prefer, before, progress)


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip() and line.strip() != "Syntax OK"]


def request_body_timeout(settings: Sequence[str]) -> int | None:
    """The longest body= limit of mod_reqtimeout's RequestReadTimeout lines (the last one that sets it)."""
    limit = None
    for value in settings:
        match = re.search(r"body=(\d+)(?:-(\d+))?", value, re.IGNORECASE)
        if match:
            limit = int(match.group(2) or match.group(1))
    return limit


def _target_extras(report: doctor.Report, before: str, after: str) -> dict[str, object]:
    """What verify's Target can also take, for this live server: where verify's routes are, `httpd -t`'s
    warnings that the temporary route added (the server's own, older ones are not ours to judge), and an
    idle silence longer than this server's mod_reqtimeout body limit."""
    fields = {f.name for f in dataclasses.fields(verify.Target)}
    extras: dict[str, object] = {}
    prefix = getattr(verify, "VERIFY_PREFIX", None)
    if prefix and "die_path" in fields:
        extras["die_path"] = f"{prefix}/die"
        extras["refuse_paths"] = {200: f"{prefix}/refuse-200", 403: f"{prefix}/refuse-403"}
    if "syntax" in fields and hasattr(httpd, "SyntaxResult"):
        added = [line for line in _warnings(after) if line not in _warnings(before)]
        extras["syntax"] = httpd.SyntaxResult(True, after, warnings=added)
    body = request_body_timeout(report.reqtimeout) if "reqtimeout_module" in report.loaded_modules else None
    if "idle_silence" in fields and body is not None:
        extras["idle_silence"] = float(min(body + 1, IDLE_LIMIT))
    return extras


async def _run(
    control: Control,
    backends: dict[str, EchoServer],
    port: int,
    ws_path: str,
    names: list[str],
    offset: int,
    extras: dict[str, object],
    progress: Progress,
) -> list[verify.Check]:
    with tempfile.TemporaryDirectory(prefix="apachews-live-") as scratch:
        # The server's log holds its whole history: the crash check reads only what this run added.
        excerpt = Path(scratch) / "error_log"
        excerpt.write_bytes(b"")
        target = verify.Target(
            port,
            backends["echo"],
            backends["refuse-200"],
            backends["refuse-403"],
            backends["die"],
            excerpt,
            ws_path,
            **extras,  # type: ignore[arg-type]
        )
        results = await verify.run_checks(target, [n for n in names if n != ERROR_LOG_CHECK], progress)
        if ERROR_LOG_CHECK in names:
            excerpt.write_bytes(_log_since(control.error_log, offset, control.host))
            results += await verify.run_checks(target, [ERROR_LOG_CHECK], progress)
        return results


# -- over SSH: the route on the server's loopback, the checks through the connection's port forwards ---------------
@dataclasses.dataclass(frozen=True)
class Forwarded:
    """An echo backend as the server sees it: a port on the server's loopback, forwarded (ssh -R) to the
    backend on this machine. Only its URL goes into the rendering."""

    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


def free_server_port(host: Transport) -> int:
    """A TCP port nothing uses on the server's loopback (read from /proc/net/tcp, below the ephemeral range)."""
    if not host.remote:
        return free_port()
    tables = host.sh("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null").stdout
    used = {int(m, 16) for m in re.findall(r"^\s*\d+:\s+[0-9A-F]+:([0-9A-F]{4})\s", tables, re.MULTILINE)}
    choices = [port for port in range(20000, 32000) if port not in used]
    return random.choice(choices)


@contextlib.contextmanager
def _forwards(
    host: Transport, backends: dict[str, EchoServer], server_port: int
) -> Iterator[tuple[dict[str, Forwarded | EchoServer], int]]:
    """Over SSH: -R for each backend (the server picks the ports), -L from a local port to the route on the
    server, cancelled after. On this machine: the backends and the route as they are."""
    if not isinstance(host, Ssh):
        yield dict(backends), server_port
        return
    remote: dict[str, Forwarded | EchoServer] = {}
    local_port = free_port()
    try:
        for mode, backend in backends.items():
            port = host.forward(f"0:127.0.0.1:{backend.port}", remote=True)
            if port is None:
                raise JobFailed(f"ssh did not say which port it forwards to the {mode} backend on {host.name}")
            remote[mode] = Forwarded(port)
        host.forward(f"{local_port}:127.0.0.1:{server_port}")
        yield remote, local_port
    finally:
        for mode, view in remote.items():
            host.cancel(f"{view.port}:127.0.0.1:{backends[mode].port}", remote=True)
        host.cancel(f"{local_port}:127.0.0.1:{server_port}")


def _live_staged(
    host: Transport,
    report: doctor.Report,
    control: Control,
    names: list[str],
    prefer: str | None,
    before: str,
    progress: Progress,
) -> verify.VerifyReport:
    """The temporary vhost goes in as a transaction that is never committed: the server takes it out again
    when the checks end, fail, are interrupted, or (over SSH) the connection drops."""
    port = free_server_port(host)
    progress.step("starting the echo backends")
    with contextlib.ExitStack() as stack:
        backends = {mode: stack.enter_context(EchoServer(mode)) for mode in echo.MODES}
        views, local_port = stack.enter_context(_forwards(host, backends, port))
        rendering, tunnelling, ws_path = live_rendering(report, views, port, prefer)  # type: ignore[arg-type]
        where = f"{host.name}'s " if host.remote else ""
        conf_root = report.conf_root
        with transaction.mirrored(host, [conf_root, report.config_file]) as mirror:
            layout = distros.get(report.distro)
            actions, _ = layout.plan(rendering, mirror.local(conf_root), main_config=mirror.local(report.config_file))
            actions = [dataclasses.replace(a, text=mirror.unmirror(a.text)) if a.text else a for a in actions]
            touched = with_parents([a.path for a in actions], mirror.root)
            states = mirror.states([mirror.remote(path) for path in touched])
            apply_plan(mirror.local(conf_root), actions)
            ops = mirror.ops(states)
        offset = _log_offset(control.error_log, host)
        progress.step(f"adding a temporary vhost on {where}127.0.0.1:{port}")
        change = stack.enter_context(
            transaction.run(
                host,
                str(state_dir(None, host)),
                ops,
                control=report.control,
                pid_file=report.pid_file,
                error_log=report.error_log,
                progress=progress,
            )
        )
        if not change.reloaded:
            raise JobFailed("the server did not reload onto the temporary route")
        after = control.config_test()[1]
        server = f"{host.name}:{report.control}" if host.remote else report.control
        result = verify.VerifyReport(report.version, server, None, tunnelling)
        extras = _target_extras(report, before, after)
        result.checks = asyncio.run(_run(control, backends, local_port, ws_path, names, offset, extras, progress))
        progress.step("removing the temporary vhost (graceful reload)")
        change.rollback()
    return result
