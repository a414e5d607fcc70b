"""How many WebSockets an Apache's MPM settings hold, what they leave for plain HTTP, and the sizing for N.

A WebSocket tunnel holds one worker for its whole life: a thread under worker and event, a whole process
under prefork. Apache has no per-route limit, so once tunnels hold every worker, plain HTTP on the whole
server waits in the listen backlog and times out (a common stock tree: MaxRequestWorkers 150, so 150 open
terminals or notebooks). With the apachews module's `ProxyWebsocketHandoff On` on a threaded MPM, a plain
ws:// tunnel holds a worker only for its handshake and then lives in its child's event loop, which holds
at most (RLIMIT_NOFILE soft limit - 64) / 2 tunnels (more stay with their worker); under prefork the same
loop runs in one tunnel keeper process beside the children, and the processes serve HTTP and handshakes only.

Everything here is arithmetic over httpd's own rules (the MPMs' check_config / directive handlers): the
documented defaults per family and MPM when a directive is unset, ThreadsPerChild capped at ThreadLimit,
MaxRequestWorkers (2.2: MaxClients) rounded down to a multiple of ThreadsPerChild and capped at
ServerLimit x ThreadsPerChild. `compute()` says what a server's settings give, `size()` what to set for N
WebSockets, `render()` writes that as a config file (templates/apache/capacity.conf.j2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from apachews.errors import BadInput
from apachews.serial import Serialised

FAMILIES = ("2.2", "2.4")
MPMS = ("prefork", "worker", "event")
THREADED = ("worker", "event")
MAX_WEBSOCKETS = 100_000
WHY_MAX_WEBSOCKETS = (
    "each open WebSocket holds two descriptors, a connection to the backend (one backend address takes about "
    "28000 from one source address: Linux's ephemeral ports) and, without handoff, a thread"
)
PREFORK_MAX_PROCESSES = 1000  # one process per open WebSocket: beyond this, prefork is the wrong MPM
PREFORK_HANDSHAKE_PROCESSES = 25  # prefork with the tunnel keeper: processes for handshakes in flight
MIN_HTTP_RESERVE = 25  # workers kept for plain HTTP at the least (one child's threads on stock settings)
DEFAULT_OPEN_FILES = 1024  # RLIMIT_NOFILE soft limit assumed when the server's own is not known
LOOP_RESERVED_FDS = 64  # the module's event loop leaves these for the rest of the child
LOOP_MAX_OPEN_FILES = 65536  # each child raises its soft limit to the hard one, at most this
GRACEFUL_SLOTS = 2  # threaded: ServerLimit x this many children's slots, so the children still holding tunnels
# after a graceful restart (or MaxConnectionsPerChild) can finish them beside their successors
FDS_PER_TUNNEL = 2  # the client's socket and the backend's


@dataclass(frozen=True)
class MpmLimits:
    """httpd's compiled-in defaults and hard limits of one MPM (server/mpm/*/: DEFAULT_*, MAX_*)."""

    server_limit: int
    max_server_limit: int
    thread_limit: int
    max_thread_limit: int
    threads_per_child: int


_PREFORK = MpmLimits(256, 200_000, 1, 1, 1)
LIMITS: dict[tuple[str, str], MpmLimits] = {
    ("2.2", "prefork"): _PREFORK,
    ("2.2", "worker"): MpmLimits(16, 20_000, 64, 20_000, 25),
    ("2.2", "event"): MpmLimits(16, 20_000, 64, 100_000, 25),  # experimental in 2.2
    ("2.4", "prefork"): _PREFORK,
    ("2.4", "worker"): MpmLimits(16, 20_000, 64, 20_000, 25),
    ("2.4", "event"): MpmLimits(16, 20_000, 64, 100_000, 25),
}


def workers_directive(family: str) -> str:
    return "MaxClients" if family == "2.2" else "MaxRequestWorkers"


def _limits(family: str, mpm: str) -> MpmLimits:
    if family not in FAMILIES:
        raise BadInput(f"Apache family {family!r} is not one of {', '.join(FAMILIES)}")
    if mpm not in MPMS:
        raise BadInput(f"MPM {mpm!r} is not one of {', '.join(MPMS)}", hint="prefork, worker or event")
    return LIMITS[(family, mpm)]


@dataclass(frozen=True)
class Settings:
    """A server's MPM directives as configured (None: not set, httpd's default applies)."""

    family: str  # "2.2" or "2.4"
    mpm: str  # prefork, worker, event
    server_limit: int | None = None
    thread_limit: int | None = None
    threads_per_child: int | None = None
    max_workers: int | None = None  # MaxRequestWorkers (2.4) or MaxClients (2.2)
    handoff: bool = False  # ProxyWebsocketHandoff On is configured
    open_files: int | None = None  # the children's open-files limit (None: not known). With handoff the module
    # raises each child's soft limit to the hard one (at most LOOP_MAX_OPEN_FILES): give the hard limit then.


@dataclass(frozen=True)
class Capacity(Serialised):
    """What a server's settings give: workers, and how many WebSockets they hold."""

    family: str
    mpm: str
    threaded: bool
    server_limit: int
    thread_limit: int
    threads_per_child: int
    processes: int  # children at most
    workers: int  # simultaneous connections served by a worker: threads, or processes under prefork
    configured: str  # where `workers` comes from: "MaxRequestWorkers 150", "event default"
    handoff: bool  # ProxyWebsocketHandoff On, in force (a threaded MPM's children, or prefork's tunnel keeper)
    open_files: int
    open_files_known: bool
    loop_tunnels_per_child: int  # with handoff: what one child's event loop (prefork: the keeper) holds; else 0
    adjustments: tuple[str, ...] = ()  # what httpd changes in the configured values, and says so at start

    def held_workers(self, websockets: int) -> int:
        """Workers `websockets` open tunnels hold. With handoff, only the ones one child's event loop cannot
        take (the worst case: which child accepts a connection is not ours to choose)."""
        if self.handoff:
            return max(0, websockets - self.loop_tunnels_per_child)
        return websockets

    def http_left(self, websockets: int) -> int:
        """Workers left for plain HTTP while `websockets` are open (negative: WebSockets waiting too)."""
        return self.workers - self.held_workers(websockets)

    def websockets_leaving(self, reserve: int) -> int:
        """How many WebSockets may be open while `reserve` workers stay free for plain HTTP."""
        return max(0, self.workers - reserve) + (self.loop_tunnels_per_child if self.handoff else 0)

    def summary(self) -> str:
        shape = (
            f"{self.processes} processes"
            if not self.threaded
            else f"{self.processes} processes x {self.threads_per_child} threads"
        )
        return f"{self.workers} workers ({shape}, {self.mpm} MPM, {self.configured})"


def defaults(family: str, mpm: str) -> Settings:
    """A server that sets none of the MPM directives (httpd's documented defaults apply)."""
    _limits(family, mpm)
    return Settings(family, mpm)


def _loop_open_files(settings: Settings) -> int:
    """The open-files limit an event loop runs with: a threaded child's, or the prefork tunnel keeper's (each
    raises its soft limit to the hard one, at most LOOP_MAX_OPEN_FILES; the keeper asks for that much while it
    is still root)."""
    return min(settings.open_files or DEFAULT_OPEN_FILES, LOOP_MAX_OPEN_FILES if settings.handoff else 1 << 30)


def _loop_tunnels(open_files: int) -> int:
    """The tunnels one event loop holds with `open_files` (two descriptors each, LOOP_RESERVED_FDS kept)."""
    return max(0, (open_files - LOOP_RESERVED_FDS) // FDS_PER_TUNNEL)


def compute(settings: Settings) -> Capacity:
    """The workers `settings` give, as httpd computes them (its warnings are in `adjustments`)."""
    family, mpm = settings.family, settings.mpm
    limits = _limits(family, mpm)
    directive = workers_directive(family)
    notes: list[str] = []
    server_limit = settings.server_limit if settings.server_limit is not None else limits.server_limit
    if server_limit > limits.max_server_limit:
        notes.append(f"ServerLimit {server_limit} exceeds the compiled-in {limits.max_server_limit}: lowered")
        server_limit = limits.max_server_limit
    server_limit = max(1, server_limit)
    configured = f"{directive} {settings.max_workers}" if settings.max_workers is not None else f"{mpm} default"
    if mpm not in THREADED:
        wanted = settings.max_workers if settings.max_workers is not None else limits.server_limit
        if wanted > server_limit:
            notes.append(f"{directive} {wanted} exceeds ServerLimit {server_limit}: lowered to {server_limit}")
        processes = max(1, min(wanted, server_limit))
        keeper_files = _loop_open_files(settings)
        return Capacity(
            family,
            mpm,
            False,
            server_limit,
            1,
            1,
            processes,
            processes,
            configured,
            settings.handoff,
            keeper_files,
            settings.open_files is not None,
            _loop_tunnels(keeper_files) if settings.handoff else 0,
            tuple(notes),
        )
    thread_limit = settings.thread_limit if settings.thread_limit is not None else limits.thread_limit
    if thread_limit > limits.max_thread_limit:
        notes.append(f"ThreadLimit {thread_limit} exceeds the compiled-in {limits.max_thread_limit}: lowered")
        thread_limit = limits.max_thread_limit
    thread_limit = max(1, thread_limit)
    threads = settings.threads_per_child if settings.threads_per_child is not None else limits.threads_per_child
    if threads > thread_limit:
        notes.append(f"ThreadsPerChild {threads} exceeds ThreadLimit {thread_limit}: lowered to {thread_limit}")
        threads = thread_limit
    threads = max(1, threads)
    if settings.max_workers is not None:
        wanted = settings.max_workers
    elif family == "2.4":  # pre_config: DEFAULT_SERVER_LIMIT x DEFAULT_THREADS_PER_CHILD, whatever is set later
        wanted = limits.server_limit * limits.threads_per_child
    else:  # 2.2: ServerLimit's default number of children, of however many threads
        wanted = limits.server_limit * threads
    if wanted < threads:
        notes.append(f"{directive} {wanted} is less than ThreadsPerChild {threads}: raised to {threads}")
        wanted = threads
    processes = wanted // threads
    if wanted % threads:
        notes.append(
            f"{directive} {wanted} is not a multiple of ThreadsPerChild {threads}: lowered to {processes * threads}"
        )
    if processes > server_limit:
        notes.append(
            f"{directive} {processes * threads} needs {processes} processes, over ServerLimit {server_limit}: "
            f"lowered to {server_limit * threads}"
        )
        processes = server_limit
    open_files = _loop_open_files(settings)
    loop = _loop_tunnels(open_files) if settings.handoff else 0
    return Capacity(
        family,
        mpm,
        True,
        server_limit,
        thread_limit,
        threads,
        processes,
        processes * threads,
        configured,
        settings.handoff,
        open_files,
        settings.open_files is not None,
        loop,
        tuple(notes),
    )


# -- sizing for N WebSockets ------------------------------------------------------------------------------------
def validate_websockets(value: object, option: str = "--max-websockets") -> int:
    """A positive whole number of WebSockets, at most MAX_WEBSOCKETS (and why not more)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadInput(f"{option} {value!r} is not a number of WebSockets")
    text = str(value).strip()
    if not text.isdigit():
        raise BadInput(f"{option} {value!r} is not a whole number", hint=f"e.g. {option} 1000")
    number = int(text)
    if number < 1:
        raise BadInput(f"{option} must be at least 1", hint=f"e.g. {option} 1000")
    if number > MAX_WEBSOCKETS:
        raise BadInput(
            f"{option} {number} is more than {MAX_WEBSOCKETS} WebSockets on one Apache",
            hint=f"{WHY_MAX_WEBSOCKETS}: spread them over several servers behind a balancer",
        )
    return number


def validate_reserve(value: object, option: str = "--http-reserve") -> int:
    """Workers kept for plain HTTP: a positive whole number, at most MAX_WEBSOCKETS."""
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise BadInput(f"{option} {value!r} is not a whole number of workers", hint=f"e.g. {option} 150")
    number = int(str(value).strip())
    if not 1 <= number <= MAX_WEBSOCKETS:
        raise BadInput(f"{option} must be from 1 to {MAX_WEBSOCKETS} workers, not {number}")
    return number


@dataclass(frozen=True)
class Sizing(Serialised):
    """The MPM settings that hold `websockets` open WebSockets and still leave `http_reserve` for HTTP."""

    family: str
    mpm: str
    websockets: int
    http_reserve: int
    handoff: bool
    server_limit: int
    thread_limit: int | None  # written only where ThreadsPerChild needs more than the default ThreadLimit
    threads_per_child: int | None  # None under prefork
    max_workers: int
    processes: int
    open_files: int  # the children's RLIMIT_NOFILE soft limit this needs
    handshake_workers: int = 0  # with handoff: workers for handshakes in flight
    notes: tuple[str, ...] = field(default_factory=tuple)
    _derived = ("directive_values", "open_files_raise")
    _renamed = {"directive_values": "directives"}

    @property
    def directive(self) -> str:
        return workers_directive(self.family)

    @property
    def threaded(self) -> bool:
        return self.mpm in THREADED

    @property
    def open_files_raise(self) -> bool:
        """True when the usual limit (1024) is not enough."""
        return self.open_files > DEFAULT_OPEN_FILES

    def directives(self) -> list[tuple[str, int]]:
        """In the order 2.2 needs (it applies each as it is read: ThreadLimit before ThreadsPerChild,
        ServerLimit and ThreadsPerChild before MaxClients); 2.4 checks them all after reading."""
        lines: list[tuple[str, int]] = []
        if self.thread_limit is not None:
            lines.append(("ThreadLimit", self.thread_limit))
        lines.append(("ServerLimit", self.server_limit))
        if self.threads_per_child is not None:
            lines.append(("ThreadsPerChild", self.threads_per_child))
        lines.append((self.directive, self.max_workers))
        return lines

    @property
    def directive_values(self) -> dict[str, int]:
        return dict(self.directives())

    def summary(self) -> str:
        settings = ", ".join(f"{name} {value}" for name, value in self.directives())
        return f"{settings} (open files {self.open_files})"


def _round_up(value: int, step: int) -> int:
    return int(math.ceil(value / step) * step)


def size(current: Capacity, websockets: object, http_reserve: object | None = None, handoff: bool = False) -> Sizing:
    """The settings for `websockets` open at once with `http_reserve` workers left for plain HTTP (default:
    the workers the server has now, at least MIN_HTTP_RESERVE). ThreadsPerChild is kept; ServerLimit (and
    ThreadLimit where needed) follow. With handoff the tunnels live in the children's event loops: the workers
    cover HTTP and handshakes, and the open-files limit lets any one child's loop hold all of them (which child
    accepts a connection is not ours to choose); under prefork they live in the tunnel keeper."""
    n = validate_websockets(websockets)
    reserve = max(current.workers, MIN_HTTP_RESERVE) if http_reserve is None else validate_reserve(http_reserve)
    limits = _limits(current.family, current.mpm)
    if not current.threaded and handoff:
        return _size_prefork_keeper(current, n, http_reserve)
    if not current.threaded:
        total = n + reserve
        if total > PREFORK_MAX_PROCESSES:
            raise BadInput(
                f"{n} WebSockets + {reserve} for HTTP would mean {total} prefork processes (one per open "
                f"WebSocket, each with its own memory); apachews sizes prefork up to {PREFORK_MAX_PROCESSES}",
                hint="switch to the worker or event MPM (a tunnel holds a thread there, and with "
                "ProxyWebsocketHandoff On only during its handshake), or lower --max-websockets / --http-reserve",
            )
        return Sizing(
            current.family,
            current.mpm,
            n,
            reserve,
            False,
            server_limit=total,
            thread_limit=None,
            threads_per_child=None,
            max_workers=total,
            processes=total,
            open_files=FDS_PER_TUNNEL + LOOP_RESERVED_FDS,
            notes=(f"each open WebSocket holds a whole process: {n} of the {total}",),
        )
    threads = current.threads_per_child
    handshakes = threads if handoff else 0  # one child's threads for handshakes in flight
    held = 0 if handoff else n
    processes = math.ceil((held + reserve + handshakes) / threads)
    if processes * GRACEFUL_SLOTS > limits.max_server_limit:
        raise BadInput(
            f"{n} WebSockets + {reserve} for HTTP at ThreadsPerChild {threads} need {processes} processes "
            f"(ServerLimit {processes * GRACEFUL_SLOTS}), over httpd's compiled-in maximum "
            f"of {limits.max_server_limit}",
            hint="raise ThreadsPerChild (and ThreadLimit) in the server's MPM config first, or use --handoff",
        )
    thread_limit = threads if threads > limits.thread_limit else None
    graceful = (
        f"ServerLimit {processes * GRACEFUL_SLOTS} leaves as many slots again for the children still holding "
        "tunnels after a graceful restart, beside their successors"
    )
    if handoff:
        open_files = min(_round_up(FDS_PER_TUNNEL * n + LOOP_RESERVED_FDS, 1024), LOOP_MAX_OPEN_FILES)
        per_child = (open_files - LOOP_RESERVED_FDS) // FDS_PER_TUNNEL
        spread = f"lets one child hold all {n}" if per_child >= n else f"lets a child hold {per_child} (the most)"
        notes: tuple[str, ...] = (
            f"with ProxyWebsocketHandoff On a tunnel holds a worker only for its handshake; each child's event "
            f"loop holds (open files - {LOOP_RESERVED_FDS}) / 2 tunnels: {open_files} {spread}",
            graceful,
        )
    else:
        open_files = FDS_PER_TUNNEL * threads + LOOP_RESERVED_FDS
        notes = (f"each open WebSocket holds a thread: {n} of the {processes * threads}", graceful)
    return Sizing(
        current.family,
        current.mpm,
        n,
        reserve,
        handoff,
        server_limit=processes * GRACEFUL_SLOTS,
        thread_limit=thread_limit,
        threads_per_child=threads,
        max_workers=processes * threads,
        processes=processes,
        open_files=open_files,
        handshake_workers=handshakes,
        notes=notes,
    )


def _size_prefork_keeper(current: Capacity, n: int, http_reserve: object | None) -> Sizing:
    """Prefork with ProxyWebsocketHandoff On: the tunnels live in the one keeper process, the children serve
    HTTP and handshakes only. Without --http-reserve the server keeps its processes (at least enough for
    MIN_HTTP_RESERVE and the handshakes); the keeper's open-files limit must hold all N."""
    handshakes = PREFORK_HANDSHAKE_PROCESSES
    if http_reserve is None:
        reserve = max(current.workers - handshakes, MIN_HTTP_RESERVE)
    else:
        reserve = validate_reserve(http_reserve)
    total = reserve + handshakes
    if total > PREFORK_MAX_PROCESSES:
        raise BadInput(
            f"{reserve} processes for HTTP + {handshakes} for handshakes is over the {PREFORK_MAX_PROCESSES} "
            "prefork processes apachews sizes",
            hint="lower --http-reserve, or switch to the worker or event MPM",
        )
    open_files = _round_up(FDS_PER_TUNNEL * n + LOOP_RESERVED_FDS, 1024)
    if open_files > LOOP_MAX_OPEN_FILES:
        raise BadInput(
            f"{n} WebSockets need {open_files} open files in the tunnel keeper, over the "
            f"{LOOP_MAX_OPEN_FILES} it asks for",
            hint=f"at most {_loop_tunnels(LOOP_MAX_OPEN_FILES)} WebSockets per prefork server with handoff: "
            "spread them over several servers, or use the worker or event MPM",
        )
    return Sizing(
        current.family,
        current.mpm,
        n,
        reserve,
        True,
        server_limit=total,
        thread_limit=None,
        threads_per_child=None,
        max_workers=total,
        processes=total,
        open_files=open_files,
        handshake_workers=handshakes,
        notes=(
            f"with ProxyWebsocketHandoff On the {n} tunnels live in the tunnel keeper process (open files "
            f"{open_files}: (open files - {LOOP_RESERVED_FDS}) / 2 tunnels); a process is held only for a "
            f"handshake: {reserve} for HTTP, {handshakes} for handshakes",
        ),
    )


def sized(sizing: Sizing, open_files: int | None = None) -> Capacity:
    """The capacity of a server running `sizing` (to check a sizing against what it was made for)."""
    return compute(
        Settings(
            sizing.family,
            sizing.mpm,
            server_limit=sizing.server_limit,
            thread_limit=sizing.thread_limit,
            threads_per_child=sizing.threads_per_child,
            max_workers=sizing.max_workers,
            handoff=sizing.handoff,
            open_files=open_files if open_files is not None else max(sizing.open_files, DEFAULT_OPEN_FILES),
        )
    )


MARKER = "# apachews-capacity:"  # the rendered file's first line; doctor reads it back


def marker_line(sizing: Sizing) -> str:
    return (
        f"{MARKER} websockets={sizing.websockets} http_reserve={sizing.http_reserve} "
        f"handoff={'on' if sizing.handoff else 'off'} mpm={sizing.mpm}"
    )


def parse_marker(line: str) -> dict[str, str] | None:
    """The values of a rendered capacity file's first line, or None."""
    if not line.startswith(MARKER):
        return None
    pairs = (item.partition("=") for item in line[len(MARKER) :].split())
    return {key: value for key, _, value in pairs if key and value}


def render(sizing: Sizing, apachews_version: str, apache: str) -> str:
    """The MPM sizing as a config file, read after the distribution's own MPM settings (the last one wins)."""
    from apachews.resources import template_environment

    return (
        template_environment("apache")
        .get_template("capacity.conf.j2")
        .render(
            marker=marker_line(sizing),
            apachews_version=apachews_version,
            apache=apache,
            sizing=sizing,
            directives=sizing.directives(),
        )
    )
