"""Side by side (a benchmark, not a test): WebSocket proxies on this machine, measured with a C echo backend
and a C client (benchmarks/wsload/wsload.c, compiled here into a cache dir) so the proxy is what is measured.

    python benchmarks/capacity_bench.py [--rounds 3] [--quick] [--dist DIR] [--install-peers] [--json]

Paths: direct (client to echo backend); Debian's apache2 (event MPM) with stock mod_proxy_wstunnel (ws://
ProxyPass, ProxyWebsocketFallbackToProxyHttp Off so wstunnel itself tunnels), with mod_proxy_http
`upgrade=websocket`, with the apachews module (built here with apxs), with the apachews module and
`ProxyWebsocketHandoff On` (only when `apache2 -t` accepts the directive); an httpd built by apachews
(`--dist DIR`: the output of `apachews build --with-httpd`); nginx and haproxy when installed (`--install-peers`,
as root, apt-get installs nginx-light and haproxy first). Each Apache row runs the `generic` preset as
`apachews config` renders it, in a throwaway ServerRoot (apachews.httpd.ServerRoot) on a free loopback port.

All paths run at once; each round takes each figure on every path back to back (a different path first
each round), so a neighbour's burst on a shared machine hits one figure of every path rather than every
figure of one. Ratios are to direct in the same round; the table shows medians over the rounds:
  - 1 connection, 64-byte round trips/s (one in flight);
  - 100 connections, 64-byte round trips/s (msgs/s), and the proxy's CPU (utime+stime of all its processes
    from /proc) per 100k of those round trips; each round trip is two frames through the proxy;
  - 1 connection, 1 MiB round trips: MB/s of payload echoed (10^6 bytes, one direction).
After the rounds, once per path on a fresh start: system calls per round trip (`strace -c -f` on the proxy's
worker processes during a fixed number of 64-byte round trips, on 1 connection and on 100; strace slows the
path, the counts are what matters) and memory for 1000 idle tunnels (PSS summed over the proxy's processes from
/proc/PID/smaps_rollup, after minus before opening them). Every Apache row is sized so 1000 worker-held
tunnels fit (the sizing column says how). Loopback only; every load is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from apachews import capacity, catalogue, config, httpd, module
from apachews.catalogue import Version
from apachews.errors import ApachewsError, BadInput, JobFailed

HERE = Path(__file__).resolve().parent
WSLOAD_SOURCE = HERE / "wsload" / "wsload.c"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
MIB = 1024 * 1024
IDLE_TUNNELS = 1000
MAX_ROUND_TRIPS = 10_000_000  # per connection: the duration is what ends a timed load
HANDOFF_DIRECTIVE = "ProxyWebsocketHandoff On"


@dataclass(frozen=True)
class Settings:
    rounds: int = 3
    one_seconds: float = 2.0
    many_seconds: float = 3.0
    big_seconds: float = 2.0
    many_connections: int = 100
    strace_round_trips: int = 3000  # on 1 connection
    strace_many_round_trips: int = 20000  # over many_connections: enough that their handshakes do not count
    idle_tunnels: int = IDLE_TUNNELS

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            rounds=1,
            one_seconds=0.5,
            many_seconds=0.5,
            big_seconds=0.5,
            many_connections=20,
            strace_round_trips=300,
            strace_many_round_trips=1000,
            idle_tunnels=100,
        )


# -- the C tool ------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "apachews-bench"


def build_wsload(directory: Path | None = None) -> Path:
    """Compile wsload.c (warnings are errors) into the cache, keyed by the source's digest."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise BadInput("no C compiler (cc) on this machine", hint="apt-get install gcc")
    source = WSLOAD_SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / f"wsload-{digest}"
    if binary.exists():
        return binary
    partial = directory / f".wsload-{digest}.{os.getpid()}"
    result = subprocess.run(
        [compiler, *CFLAGS, "-o", str(partial), str(WSLOAD_SOURCE)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise JobFailed("wsload.c did not compile", hint=(result.stdout + result.stderr)[-3000:])
    os.replace(partial, binary)
    return binary


@contextlib.contextmanager
def running(argv: list[str], what: str, stderr: IO[str] | int = subprocess.PIPE) -> Iterator[subprocess.Popen[str]]:
    """A foreground process in its own process group, ended (the whole group) on exit whatever happens."""
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        stop_group(process, what)


def stop_group(process: subprocess.Popen[str], what: str) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


@contextlib.contextmanager
def echo_backend(wsload: Path, limit: float = 3600) -> Iterator[tuple[str, int]]:
    """The C echo server on a free 127.0.0.1 port: yields (ws:// URL, pid)."""
    with running([str(wsload), "echo", "-p", "0", "-t", str(int(limit))], "echo backend") as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        try:
            port = json.loads(line)["listening"]
        except (ValueError, KeyError, TypeError):
            raise JobFailed(
                "wsload echo did not start", hint=(process.stderr.read() if process.stderr else "")
            ) from None
        yield f"ws://127.0.0.1:{port}", process.pid


def load(wsload: Path, url: str, connections: int, size: int, seconds: float, rounds: int = MAX_ROUND_TRIPS) -> dict:
    """One timed load; raises when any round trip failed."""
    argv = [str(wsload), "load", "-u", url, "-c", str(connections), "-n", str(rounds), "-s", str(size)]
    argv += ["-d", str(seconds), "-t", str(seconds + 60)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 90, check=False)
    except subprocess.TimeoutExpired:
        raise JobFailed(f"wsload load {url} overran its time limit") from None
    try:
        figures = json.loads(result.stdout)
    except ValueError:
        raise JobFailed(f"wsload load {url} said nothing useful", hint=result.stderr[-2000:]) from None
    if figures["errors"] or figures["round_trips"] == 0:
        raise JobFailed(
            f"wsload load {url}: {figures['errors']} errors, {figures['round_trips']} round trips",
            hint=figures.get("first_error", ""),
        )
    return figures


# -- /proc accounting -----------------------------------------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each process (all its threads), in seconds."""
    out = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            out[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            match = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.MULTILINE)
            total += int(match.group(1)) if match else 0
    return total


# -- strace -c -----------------------------------------------------------------------------------------------------
_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)\s*$")


def parse_strace_summary(text: str) -> dict[str, tuple[int, int]]:
    """syscall -> (calls, errors) from `strace -c` output (the `total` row left out)."""
    rows = {}
    for line in text.splitlines():
        match = _STRACE_ROW.match(line)
        if match and match.group(3) != "total":
            rows[match.group(3)] = (int(match.group(1)), int(match.group(2) or 0))
    return rows


def ensure_strace(install: bool) -> str | None:
    found = shutil.which("strace")
    if found or not install:
        return found
    _apt_install(["strace"])
    return shutil.which("strace")


def count_syscalls(strace: str, pids: list[int], run: Callable[[], dict], round_trips: int) -> dict:
    """Attach strace -c -f to `pids` (all their threads), run the load, detach; calls per round trip."""
    with tempfile.TemporaryDirectory(prefix="apachews-strace-") as scratch:
        output = Path(scratch) / "summary"
        log = Path(scratch) / "stderr"
        argv = [strace, "-c", "-f", "-o", str(output)] + [arg for pid in pids for arg in ("-p", str(pid))]
        with log.open("w") as sink, running(argv, "strace", stderr=sink) as tracer:
            deadline = time.monotonic() + 10  # strace says "Process N attached [with M threads]" once per process
            while time.monotonic() < deadline and tracer.poll() is None:
                if log.read_text(errors="replace").count("attached") >= len(pids):
                    break
                time.sleep(0.05)
            time.sleep(0.3)
            figures = run()
            tracer.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                tracer.wait(timeout=15)
        rows = parse_strace_summary(output.read_text() if output.exists() else "")
    done = figures["round_trips"] or round_trips
    total = sum(calls for calls, _ in rows.values())
    top = sorted(rows.items(), key=lambda item: -item[1][0])[:6]
    return {
        "round_trips": done,
        "per_round_trip": round(total / done, 2),
        "top": {name: {"calls": round(c / done, 2), "errors": round(e / done, 2)} for name, (c, e) in top},
    }


def describe_syscalls(figures: dict | None) -> str:
    """ "6.01 / 4.86: 2 epoll_wait, ...": per round trip on 1 connection / on many; what the 1 is made of."""
    if not figures:
        return "-"
    parts = []
    for name, counts in list(figures["top"].items())[:4]:
        if counts["calls"] >= 0.05:
            errors = f" ({counts['errors']:g} EAGAIN/err)" if counts["errors"] >= 0.05 else ""
            parts.append(f"{counts['calls']:g} {name}{errors}")
    spread = figures.get("many_connections")
    many = f" / {spread['per_round_trip']:g}" if spread else ""
    return f"{figures['per_round_trip']:g}{many}: " + ", ".join(parts)


# -- the paths -------------------------------------------------------------------------------------------------------
@dataclass
class Running:
    url: str
    root_pid: int | None  # the proxy's main process (None: direct)

    def pids(self) -> list[int]:
        """The proxy's processes now: the main one and all its descendants."""
        return process_tree(self.root_pid) if self.root_pid else []


@dataclass
class Path_:
    name: str
    sizing: str
    start: Callable[[str], contextlib.AbstractContextManager[Running]]  # echo URL -> a running proxy
    skipped: str | None = None
    syntax_check: Callable[[], str | None] | None = None  # what the server says against this config, None: fine


def event_sizing(is_24: bool) -> str:
    workers = "MaxRequestWorkers" if is_24 else "MaxClients"
    return (
        "StartServers 2\nServerLimit 22\nThreadLimit 50\nThreadsPerChild 50\n"
        f"{workers} 1100\nMinSpareThreads 25\nMaxSpareThreads 1100\n"
    )


def prefork_sizing(is_24: bool) -> str:
    workers = "MaxRequestWorkers" if is_24 else "MaxClients"
    return f"StartServers 5\nMinSpareServers 5\nMaxSpareServers 1100\nServerLimit 1100\n{workers} 1100\n"


def server_mpm(server: httpd.Httpd) -> str:
    """The MPM a ServerRoot will run: the one compiled in (`httpd -l` lists prefork.c, mpm_event.c...), else
    event, which ServerRoot loads."""
    listed = subprocess.run(
        [str(server.binary), "-l"], capture_output=True, text=True, env={**os.environ, **server.env}, check=False
    ).stdout
    match = re.search(r"^\s*(?:mpm_)?(prefork|worker|event)\.c", listed, re.MULTILINE)
    return match.group(1) if match else "event"


def apache_path(
    name: str,
    server: httpd.Httpd,
    style: str,
    so: Path | None = None,
    extra: str = "",
    handoff: bool = False,
) -> Path_:
    """An Apache row: the `generic` preset as `apachews config` renders it for the echo backend, sized by
    `config --max-websockets 1000 [--handoff]` from the MPM's stock settings (prefork, which apachews sizes
    only up to 1000 processes in all, gets ServerLimit/MaxClients 1100 here)."""
    is_24 = server.version >= Version(2, 4, 0)
    mpm = server_mpm(server)
    release = catalogue.load().get(str(server.version))
    sizing: capacity.Sizing | None = None
    own = ""
    try:
        # Prefork with the tunnel keeper keeps the stock MaxClients 150 (2.2's httpd-mpm.conf, Debian's).
        keeper = handoff and mpm == "prefork"
        settings = capacity.Settings(server.version.family, mpm, max_workers=150 if keeper else None)
        stock = capacity.compute(settings)
        sizing = capacity.size(stock, IDLE_TUNNELS, handoff=handoff)
        workers = capacity.workers_directive(server.version.family)
        summary = (
            f"{mpm}, config --max-websockets {IDLE_TUNNELS}{' --handoff' if handoff else ''}: ServerLimit "
            f"{sizing.server_limit}, ThreadsPerChild {sizing.threads_per_child}, {workers} {sizing.max_workers}"
            + (" (the tunnels in the keeper process)" if keeper else "")
        )
    except BadInput:
        own = event_sizing(is_24) if mpm in ("event", "worker") else prefork_sizing(is_24)
        summary = (
            f"{mpm}, 22x50 threads (1100)"
            if mpm in ("event", "worker")
            else f"{mpm}, ServerLimit/MaxClients 1100, StartServers 5 (beyond config --max-websockets' prefork limit)"
        )

    def render(echo_url: str) -> config.Rendering:
        return config.render(
            "generic", apache=release, backends=[echo_url], prefer=style, sizing=sizing, handoff=handoff
        )

    ws_path = render("ws://127.0.0.1:9").websocket_paths[0]

    def snippets(echo_url: str) -> dict[str, str]:
        return {**render(echo_url).files, "zz-bench.conf": own + extra}

    def root(echo_url: str) -> httpd.ServerRoot:
        return httpd.ServerRoot(server, snippets(echo_url), extra_modules={"proxy_wstunnel": so} if so else None)

    @contextlib.contextmanager
    def start(echo_url: str) -> Iterator[Running]:
        with root(echo_url) as lab:
            lab.start()
            process = lab.server.process
            assert process is not None
            pid = process.pid
            yield Running(f"ws://127.0.0.1:{lab.port}{ws_path}", pid)

    def syntax_check() -> str | None:
        with root("ws://127.0.0.1:9") as lab:
            checked = lab.syntax_check()
        return None if checked.ok else (checked.error or checked.output.strip()[-300:])

    return Path_(name, summary, start, syntax_check=syntax_check)


def nginx_path(binary: str, scratch: Path) -> Path_:
    @contextlib.contextmanager
    def start(echo_url: str) -> Iterator[Running]:
        port = httpd.free_port()
        prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=scratch))
        backend = echo_url.replace("ws://", "http://", 1)
        temps = "\n".join(
            f"    {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (prefix / "nginx.conf").write_text(
            f"""daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile 16384;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{temps}
    server {{
        listen 127.0.0.1:{port};
        location /ws {{
            proxy_pass {backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 600s;
        }}
    }}
}}
"""
        )
        argv = [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
        with running(argv, "nginx") as process:
            if not httpd.wait_for_port(port, 10, alive=lambda: process.poll() is None):
                raise JobFailed("nginx did not start", hint=_tail(prefix / "error.log"))
            pid = process.pid
            yield Running(f"ws://127.0.0.1:{port}/ws", pid)

    return Path_("nginx", "worker_processes auto, 8192 connections each", start)


def haproxy_path(binary: str, scratch: Path) -> Path_:
    @contextlib.contextmanager
    def start(echo_url: str) -> Iterator[Running]:
        port = httpd.free_port()
        prefix = Path(tempfile.mkdtemp(prefix="haproxy-", dir=scratch))
        backend = echo_url.removeprefix("ws://")
        conf = prefix / "haproxy.cfg"
        conf.write_text(
            f"""global
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout tunnel 600s
frontend bench
    bind 127.0.0.1:{port}
    default_backend echo
backend echo
    server echo {backend}
"""
        )
        checked = subprocess.run([binary, "-c", "-f", str(conf)], capture_output=True, text=True, check=False)
        if checked.returncode != 0:
            raise JobFailed("haproxy rejected its config", hint=checked.stdout + checked.stderr)
        with running([binary, "-db", "-f", str(conf)], "haproxy") as process:
            if not httpd.wait_for_port(port, 10, alive=lambda: process.poll() is None):
                raise JobFailed("haproxy did not start", hint=process.stderr.read() if process.stderr else "")
            pid = process.pid
            yield Running(f"ws://127.0.0.1:{port}/ws", pid)

    return Path_("haproxy", "one process, nbthread = CPUs, maxconn 8000", start)


@contextlib.contextmanager
def direct(echo_url: str) -> Iterator[Running]:
    yield Running(echo_url + "/ws", None)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BadInput(f"cannot install {' '.join(packages)}", hint="run as root on Debian/Ubuntu, or install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, check=False)
        result = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if result.returncode != 0:
        raise JobFailed(f"apt-get install {' '.join(packages)} failed", hint=result.stderr[-2000:])


def peer_binary(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}",) if os.access(p, os.X_OK)), None)


def version_of(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        match = re.search(r"(\d+\.\d+\.\d+)", result.stdout + result.stderr)
        return match.group(1) if match else "?"
    return "?"


def dist_httpd(dist: Path) -> tuple[httpd.Httpd, Path | None]:
    """A dir made by `apachews build --with-httpd` (its httpd and, for a 2.4 backport, the module it built),
    or an install prefix with bin/httpd."""
    dist = Path(dist)
    if (dist / "build.json").exists():
        from apachews.cli.verify import resolve_httpd  # the one reading of a build's output dir

        return resolve_httpd(None, dist)
    return httpd.locate(prefix=dist), None


def plan_paths(args: argparse.Namespace, scratch: Path, progress: Callable[[str], None]) -> list[Path_]:
    system = httpd.locate()
    progress(f"building the apachews module with apxs against {system.binary} {system.version}")
    so = module.build_with_apxs(scratch / "module").so
    paths = [
        Path_("direct", "-", direct),
        apache_path(
            f"stock wstunnel {system.version}", system, "wstunnel", extra="ProxyWebsocketFallbackToProxyHttp Off\n"
        ),
        apache_path(f"mod_proxy_http upgrade {system.version}", system, "http-upgrade"),
        apache_path(f"apachews module in {system.version}", system, "apachews", so),
    ]
    name = f"apachews module, handoff on, {system.version}"
    try:
        handoff = apache_path(name, system, "apachews", so, handoff=True)
        problem = handoff.syntax_check() if handoff.syntax_check else None
    except Exception as error:  # an older config.py / module: the row says why it is left out
        handoff, problem = Path_(name, "-", direct), describe_error(error)
    if problem:
        handoff.skipped = f"`apache2 -t` does not accept `{HANDOFF_DIRECTIVE}` yet: {problem}"
    paths.append(handoff)
    for built in args.dist or []:
        server, dist_so = dist_httpd(built)
        paths.append(
            apache_path(f"apachews module, {server.version} {server_mpm(server)}", server, "apachews", dist_so)
        )
        if dist_so is not None or server.has_module("proxy_wstunnel"):
            # Under prefork the tunnels go to the keeper process: the processes stay for HTTP and handshakes.
            paths.append(
                apache_path(
                    f"apachews module, handoff on, {server.version} {server_mpm(server)}",
                    server,
                    "apachews",
                    dist_so,
                    handoff=True,
                )
            )
    if args.install_peers:
        missing = [pkg for pkg, binary in (("nginx-light", "nginx"), ("haproxy", "haproxy")) if not peer_binary(binary)]
        if missing:
            progress(f"apt-get install {' '.join(missing)}")
            _apt_install(missing)
    for name, factory in (("nginx", nginx_path), ("haproxy", haproxy_path)):
        binary = peer_binary(name)
        if binary:
            peer = factory(binary, scratch)
            peer.name = f"{name} {version_of([binary, '-v'])}"
            paths.append(peer)
        else:
            paths.append(Path_(name, "-", direct, skipped=f"{name} is not installed (--install-peers, as root)"))
    return paths


# -- measuring -------------------------------------------------------------------------------------------------------
@dataclass
class Row:
    path: Path_
    rounds: list[dict] = field(default_factory=list)
    syscalls: dict | None = None
    idle: dict | None = None
    error: str | None = None


# (figure, connections, payload bytes, the Settings field that says for how long)
METRICS = (
    ("one_rt_per_s", 1, 64, "one_seconds"),
    ("many_msgs_per_s", 0, 64, "many_seconds"),  # 0: settings.many_connections
    ("big_mb_per_s", 1, MIB, "big_seconds"),
)


def measure_metric(wsload: Path, proxy: Running, metric: tuple[str, int, int, str], settings: Settings) -> dict:
    key, connections, size, duration = metric
    connections = connections or settings.many_connections
    pids = process_tree(proxy.root_pid) if proxy.root_pid else []
    before = cpu_seconds(pids)
    figures = load(wsload, proxy.url, connections, size, getattr(settings, duration))
    after = cpu_seconds(process_tree(proxy.root_pid)) if proxy.root_pid else {}
    out: dict[str, float | None] = {key: figures["msgs_per_s"] if size < MIB else figures["bytes_per_s"] / 1e6}
    out[key.split("_")[0] + "_p50_ms"] = figures["p50_ms"]
    out[key.split("_")[0] + "_p99_ms"] = figures["p99_ms"]
    if key == "many_msgs_per_s":
        out["cpu_s_per_100k"] = cpu_used(before, after) / figures["round_trips"] * 100_000 if pids else None
    return out


def measure_idle(wsload: Path, echo_url: str, path: Path_, tunnels: int) -> dict:
    with path.start(echo_url) as proxy:
        assert proxy.root_pid is not None
        load(wsload, proxy.url, 1, 64, 0.2)
        time.sleep(1.0)
        pids = process_tree(proxy.root_pid)
        before = pss_kib(pids)
        argv = [str(wsload), "idle", "-u", proxy.url, "-c", str(tunnels), "-t", "180", "-k", "64"]
        with running(argv, "idle tunnels") as holder:
            assert holder.stdout is not None and holder.stdin is not None
            opened = json.loads(holder.stdout.readline() or "{}")
            time.sleep(1.0)
            pids_after = process_tree(proxy.root_pid)
            after = pss_kib(pids_after)
            holder.stdin.close()
            summary = json.loads(holder.stdout.readline() or "{}")
            holder.wait(timeout=30)
    if opened.get("open") != tunnels:
        raise JobFailed(f"{path.name}: only {opened.get('open')} of {tunnels} idle tunnels opened", hint=str(summary))
    return {
        "tunnels": tunnels,
        "open_seconds": opened.get("seconds"),
        "still_open_at_end": summary.get("open", 0) - summary.get("closed_by_peer", 0),
        "pss_before_kib": before,
        "pss_after_kib": after,
        "delta_mib": round((after - before) / 1024, 1),
        "processes_before": len(pids),
        "processes_after": len(pids_after),
    }


def measure_syscalls(wsload: Path, echo_url: str, path: Path_, strace: str, settings: Settings) -> dict:
    """Calls per round trip on 1 connection and on many (where one wakeup may serve several)."""
    round_trips = settings.strace_round_trips
    many = settings.many_connections
    with path.start(echo_url) as proxy:
        load(wsload, proxy.url, many, 64, 0.3)  # the processes and threads many connections need, there first
        # The whole tree: a process forked meanwhile (prefork) is traced too (-f follows the parent's forks).
        one = count_syscalls(
            strace, proxy.pids(), lambda: load(wsload, proxy.url, 1, 64, 120, rounds=round_trips), round_trips
        )
        per_connection = max(1, settings.strace_many_round_trips // many)
        spread = count_syscalls(
            strace,
            proxy.pids(),
            lambda: load(wsload, proxy.url, many, 64, 120, rounds=per_connection),
            per_connection * many,
        )
    return {**one, "many_connections": spread}


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


RATIO_KEYS = ("one_rt_per_s", "many_msgs_per_s", "big_mb_per_s")


def summarise(rows: list[Row]) -> None:
    """Per round ratios to direct (rows[0]) in the same round, then medians over the rounds."""
    baseline = rows[0].rounds
    for row in rows:
        for index, figures in enumerate(row.rounds):
            base = baseline[index] if index < len(baseline) else None
            for key in RATIO_KEYS:
                if base and base.get(key) and figures.get(key) is not None:
                    figures[f"{key}_ratio"] = figures[key] / base[key]


def row_median(row: Row, key: str) -> float | None:
    return median([r.get(key) for r in row.rounds])


def machine() -> dict[str, object]:
    cpu = "?"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = match.group(1).strip() if match else "?"
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "loadavg_at_start": loadavg()}


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: list[Row], settings: Settings, info: dict) -> str:
    m = info["machine"]
    lines = [
        f"Measured {info['date']} on {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}; "
        f"C echo backend and C client (wsload); medians of {settings.rounds} round(s), ratio to direct in the "
        f"same round (absolute in brackets); load average {m['loadavg_at_start']} at the start, "
        f"{info.get('loadavg_at_end', '?')} at the end. A msg is one 64-byte round trip (two frames through the "
        "proxy); 1 MiB MB/s is payload echoed, one direction.",
        "",
        f"| path | sizing | 1 conn rt/s | {settings.many_connections} conns msg/s | 1 MiB MB/s "
        f"| CPU s per 100k msgs | syscalls per rt (1 / {settings.many_connections} conns) "
        f"| PSS for {settings.idle_tunnels} idle tunnels |",
        "|---|---|---|---|---|---|---|---|",
    ]
    skipped = []
    for row in rows:
        if row.path.skipped or row.error:
            skipped.append(f"- {row.path.name}: {row.path.skipped or row.error}")
            continue
        cells = [row.path.name, row.path.sizing]
        for key, spec in (("one_rt_per_s", ".0f"), ("many_msgs_per_s", ".0f"), ("big_mb_per_s", ".0f")):
            ratio, absolute = row_median(row, f"{key}_ratio"), row_median(row, key)
            cells.append(f"{fmt(ratio, '.2f')} ({fmt(absolute, spec)})")
        cells.append(fmt(row_median(row, "cpu_s_per_100k"), ".2f"))
        cells.append(describe_syscalls(row.syscalls))
        if row.idle:
            per = idle_kib_per_tunnel(row)
            cells.append(
                f"+{row.idle['delta_mib']:g} MiB ({per:.0f} KiB each), "
                f"{row.idle['processes_before']}->{row.idle['processes_after']} processes"
            )
        else:
            cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", "Skipped or failed:", *skipped]
    verdict = proof(rows)
    if verdict:
        lines += ["", verdict]
    return "\n".join(lines)


def idle_kib_per_tunnel(row: Row) -> float | None:
    return row.idle["delta_mib"] * 1024 / row.idle["tunnels"] if row.idle else None


def proof(rows: list[Row]) -> str | None:
    """Issue #19's bar: with the handoff on, ours at 100 connections >= nginx's ratio, idle memory <= nginx's."""
    ours = next((r for r in rows if "handoff" in r.path.name and r.rounds and not r.error), None)
    nginx = next((r for r in rows if r.path.name.startswith("nginx") and r.rounds and not r.error), None)
    if ours is None or nginx is None:
        return None
    ratio, theirs = row_median(ours, "many_msgs_per_s_ratio"), row_median(nginx, "many_msgs_per_s_ratio")
    kib, nginx_kib = idle_kib_per_tunnel(ours), idle_kib_per_tunnel(nginx)
    parts = []
    if ratio is not None and theirs is not None:
        paired = [
            (a.get("many_msgs_per_s_ratio"), b.get("many_msgs_per_s_ratio")) for a, b in zip(ours.rounds, nginx.rounds)
        ]
        won = sum(1 for a, b in paired if a is not None and b is not None and a >= b)
        parts.append(
            f"{ours.path.name} at many connections {ratio:.2f} vs nginx {theirs:.2f} "
            f"({'>=' if ratio >= theirs else '<'}; ahead in {won} of {len(paired)} rounds)"
        )
    if kib is not None and nginx_kib is not None:
        parts.append(f"idle {kib:.0f} vs nginx {nginx_kib:.0f} KiB per tunnel ({'<=' if kib <= nginx_kib else '>'})")
    return "Issue #19's bar: " + "; ".join(parts) if parts else None


def describe_error(error: Exception) -> str:
    if isinstance(error, ApachewsError):
        return f"{error.message} {error.hint or ''}".strip()
    return f"{type(error).__name__}: {error}"


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(args: argparse.Namespace) -> tuple[list[Row], Settings, dict]:
    settings = Settings.quick() if args.quick else Settings()
    if args.rounds:
        settings = Settings(**{**settings.__dict__, "rounds": args.rounds})

    def progress(message: str) -> None:
        if not args.json:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    raise_nofile()
    info = {"date": datetime.date.today().isoformat(), "machine": machine()}
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="apachews-capacity-")))
        wsload = build_wsload()
        strace = ensure_strace(args.install_peers)
        paths = plan_paths(args, scratch, progress)
        rows = [
            Row(path) for path in paths if path is paths[0] or not args.only or any(o in path.name for o in args.only)
        ]
        live = [row for row in rows if not row.path.skipped]
        url, _ = stack.enter_context(echo_backend(wsload))
        with contextlib.ExitStack() as proxies:
            # Every path runs at once; each figure is taken on all of them back to back, so a neighbour's burst
            # on a shared machine lands on one figure of every path rather than on every figure of one.
            running_proxies: dict[int, Running] = {}
            for row in live:
                progress(f"starting {row.path.name}")
                try:
                    proxy = proxies.enter_context(row.path.start(url))
                    load(wsload, proxy.url, settings.many_connections, 64, 0.3)  # warm up: processes, threads
                    running_proxies[id(row)] = proxy
                except Exception as error:  # one path failing is a row that says why, not a lost run
                    if row is live[0]:
                        raise
                    row.error = describe_error(error)
            for index in range(settings.rounds):
                order = live[index % len(live) :] + live[: index % len(live)]  # a different path goes first
                figures: dict[int, dict] = {id(row): {} for row in live}
                for metric in METRICS:
                    progress(f"round {index + 1}/{settings.rounds}: {metric[0]}")
                    for row in order:
                        if row.error:
                            continue
                        try:
                            figures[id(row)].update(measure_metric(wsload, running_proxies[id(row)], metric, settings))
                        except Exception as error:
                            if row is live[0]:
                                raise
                            row.error = describe_error(error)
                for row in live:
                    if not row.error:
                        row.rounds.append(figures[id(row)])
        for row in live[1:]:
            if row.error:
                continue
            try:
                progress(f"{settings.idle_tunnels} idle tunnels: {row.path.name}")
                row.idle = measure_idle(wsload, url, row.path, settings.idle_tunnels)
                if strace:
                    progress(f"syscalls: {row.path.name}")
                    row.syscalls = measure_syscalls(wsload, url, row.path, strace, settings)
            except Exception as error:
                row.error = describe_error(error)
        if not strace:
            info["strace"] = "strace not installed: no syscall counts (--install-peers installs it as root)"
    summarise(rows)
    info["loadavg_at_end"] = loadavg()
    return rows, settings, info


def to_json(rows: list[Row], settings: Settings, info: dict) -> dict:
    return {
        **info,
        "settings": settings.__dict__,
        "rows": [
            {
                "name": row.path.name,
                "sizing": row.path.sizing,
                "skipped": row.path.skipped,
                "error": row.error,
                "rounds": row.rounds,
                "median": {
                    key: row_median(row, key)
                    for key in (*RATIO_KEYS, *(f"{k}_ratio" for k in RATIO_KEYS), "cpu_s_per_100k")
                },
                "syscalls": row.syscalls,
                "idle": row.idle,
            }
            for row in rows
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: short loads, 100 idle tunnels")
    parser.add_argument(
        "--dist", type=Path, action="append", help="an `apachews build --with-httpd` output dir (repeatable)"
    )
    parser.add_argument(
        "--install-peers", action="store_true", help="as root: apt-get install nginx-light, haproxy and strace"
    )
    parser.add_argument("--only", action="append", help="only the paths whose name contains this (and direct)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    if args.rounds < 0 or args.rounds > 20:
        parser.error("--rounds must be 1 to 20")

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds the context managers: every process we started is stopped

    signal.signal(signal.SIGTERM, terminate)
    try:
        rows, settings, info = run(args)
    except ApachewsError as error:
        print(f"error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    if args.json:
        print(json.dumps({**to_json(rows, settings, info), "markdown": markdown(rows, settings, info)}, indent=2))
    else:
        print(markdown(rows, settings, info))


if __name__ == "__main__":
    main()
