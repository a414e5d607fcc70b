"""ProxyWebsocketHandoff (issue 19): a plain ws:// tunnel handed to the child's event loop gives its worker back,
and keeps what a worker-held tunnel guarantees: graceful restarts and child recycling do not cut it, the idle
limit still ends it. Under prefork the tunnels go to the keeper process instead: they hold no process, outlive a
graceful restart and child recycling, end with a killed keeper (which the parent restarts), and the keeper's
socket is its user's alone.

Each test runs Debian's apache2 (event MPM unless said otherwise) in a bare ServerRoot sized to a handful of
workers, so that "the worker is free" is something a client can see: more WebSockets than workers stay open
and plain HTTP is still answered. The same test with the directive off is the red arm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from apachews import config, module
from apachews.catalogue import Version
from apachews.errors import BadInput
from apachews.httpd import Httpd, ServerRoot, locate
from apachews.lab.echo import EchoServer

WORKERS = 4


@dataclass
class Target:
    """An Apache, the apachews module for it, and its MPM."""

    httpd: Httpd
    so: Path
    mpm: str

    @property
    def is_22(self) -> bool:
        return self.httpd.version < Version(2, 4, 0)

    def sizing(self, extra: dict[str, int] | None = None) -> str:
        """One process's worth of workers; ServerLimit leaves a second slot for a retiring process (graceful
        restart, MaxConnectionsPerChild) to finish its tunnels beside its successor, as on any real server."""
        if self.mpm == "prefork":
            settings = {"StartServers": 2, "ServerLimit": 8, "MaxRequestWorkers": 8}
        else:
            settings = {
                "ServerLimit": 2,
                "StartServers": 1,
                "ThreadLimit": WORKERS,
                "ThreadsPerChild": WORKERS,
                "MaxRequestWorkers": WORKERS,
                "MinSpareThreads": 1,
                "MaxSpareThreads": WORKERS,
            }
        settings.update(extra or {})
        renamed = {"MaxRequestWorkers": "MaxClients", "MaxConnectionsPerChild": "MaxRequestsPerChild"}
        return "".join(f"{renamed.get(k, k) if self.is_22 else k} {v}\n" for k, v in settings.items())


def _dists() -> list[str]:
    """Builds made by `apachews build --with-httpd` to run these tests on too ($APACHEWS_TEST_DISTS, ':'-separated)."""
    return [d for d in os.environ.get("APACHEWS_TEST_DISTS", "").split(":") if d]


@pytest.fixture(scope="module", params=["system", *_dists()])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Target:
    if request.param == "system":
        try:
            server = locate()
        except BadInput as error:
            pytest.skip(f"no system Apache: {error.message}")
        return Target(server, module.build_with_apxs(tmp_path_factory.mktemp("apxs-handoff")).so, "event")
    dist = Path(request.param)
    server = locate(prefix=dist / "httpd")
    shown = subprocess.run([str(server.binary), "-V"], capture_output=True, text=True, env={**os.environ, **server.env})
    found = re.search(r"Server MPM:\s*(\w+)", shown.stdout)
    return Target(server, dist / "modules" / "mod_proxy_wstunnel.so", found.group(1).lower() if found else "?")


@pytest.fixture
def threaded(target: Target) -> Target:
    if target.mpm == "prefork":
        pytest.skip(f"{target.httpd.version} is built with prefork, whose tunnels go to the keeper (the prefork tests)")
    return target


@contextlib.contextmanager
def proxy(
    target: Target,
    handoff: bool,
    extra: str = "",
    sizing: dict[str, int] | None = None,
    mpm: str | None = None,
    before_start: Callable[[ServerRoot], None] | None = None,
) -> Iterator[tuple[ServerRoot, EchoServer]]:
    with EchoServer("echo") as echo:
        rendering = config.render(
            "generic", apache=str(target.httpd.version), backends=[echo.url], path="/ws", prefer="apachews"
        )
        used = dataclasses.replace(target, mpm=mpm) if mpm else target
        snippets = {
            **rendering.files,
            "99-handoff.conf": used.sizing(sizing) + ("ProxyWebsocketHandoff On\n" if handoff else "") + extra,
        }
        with ServerRoot(target.httpd, snippets, mpm=used.mpm, extra_modules={"proxy_wstunnel": target.so}) as root:
            if before_start is not None:
                before_start(root)
            root.start()
            yield root, echo


def ws(root: ServerRoot, timeout: float = 3) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{root.port}/ws", open_timeout=timeout, close_timeout=1)


def echoes(conn: ClientConnection, text: str = "ping") -> bool:
    conn.send(text)
    return conn.recv(timeout=3) == text


def http_answers(port: int, timeout: float = 3) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return sock.recv(64).startswith(b"HTTP/1.1 ")
    return False


def children(parent: int) -> set[int]:
    """The MPM's processes: children of the httpd parent with threads (not mod_cgid's daemon, one thread)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == parent and int(fields[17]) > 1:
                    found.add(int(entry.name))
    return found


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def parent_pid(root: ServerRoot) -> int:
    """httpd's parent: the process ServerRoot started (-DFOREGROUND), known before any pid file is written."""
    process = root.server.process
    assert process is not None and process.poll() is None, root.log_tail()
    return process.pid


def open_echoing(root: ServerRoot, stack: contextlib.ExitStack, wanted: int) -> list:
    """Open up to `wanted` WebSockets (each echoing once) until the server stops taking them."""
    opened = []
    for _ in range(wanted):
        try:
            conn = stack.enter_context(ws(root, timeout=2))
        except (OSError, TimeoutError):
            break
        assert echoes(conn)
        opened.append(conn)
    return opened


@pytest.mark.parametrize("handoff", [True, False], ids=["handoff", "worker-held"])
def test_handed_off_tunnels_hold_no_worker(threaded: Target, handoff: bool) -> None:
    wanted = 3 * WORKERS
    with proxy(threaded, handoff) as (root, _), contextlib.ExitStack() as stack:
        opened = open_echoing(root, stack, wanted)
        answered = http_answers(root.port, timeout=2)
        if handoff:
            assert len(opened) == wanted, f"{len(opened)}/{wanted} WebSockets on {WORKERS} workers"
            assert answered, f"plain HTTP unanswered with {wanted} handed-off WebSockets open"
            assert all(echoes(conn, "still there") for conn in opened)
        else:  # the red arm: each tunnel holds a worker, the rest of the server starves
            assert len(opened) <= WORKERS and not answered


def test_graceful_restart_keeps_handed_off_tunnels(threaded: Target) -> None:
    with proxy(threaded, True) as (root, _), contextlib.ExitStack() as stack:
        before = [stack.enter_context(ws(root)) for _ in range(2 * WORKERS)]
        assert all(echoes(conn) for conn in before)
        parent = parent_pid(root)
        old = children(parent)
        os.kill(parent, signal.SIGUSR1)  # apachectl -k graceful
        assert wait_for(lambda: bool(children(parent) - old), 10), "no new generation after the graceful restart"
        after = stack.enter_context(ws(root))
        assert echoes(after, "new generation")
        assert all(echoes(conn, "across the restart") for conn in before)
        for conn in before:
            conn.close()
        # The old child stayed only for its tunnels: with them gone it exits.
        # (2.2's worker MPM gives its listener thread 5 s to go before a child exits.)
        assert wait_for(lambda: not (old & children(parent)), 15), "the old generation outlived its tunnels"


def test_recycled_child_keeps_its_tunnels_until_they_end(threaded: Target) -> None:
    with proxy(threaded, True, sizing={"MaxConnectionsPerChild": 3}) as (root, _):
        parent = parent_pid(root)
        with ws(root) as tunnel:
            assert echoes(tunnel)
            first = children(parent)  # the child serving the tunnel exists now
            assert first, "no child process serves the tunnel"
            for _ in range(4):  # past MaxConnectionsPerChild: the child retires
                http_answers(root.port)
            assert wait_for(lambda: bool(children(parent) - first), 10), "the child was not replaced"
            assert echoes(tunnel, "in a retired child")
            with ws(root) as fresh:
                assert echoes(fresh, "in the new child")
        assert wait_for(lambda: not (first & children(parent)), 15), "the retired child outlived its tunnel"


def test_idle_limit_ends_a_handed_off_tunnel(threaded: Target) -> None:
    with proxy(threaded, True, extra="ProxyWebsocketIdleTimeout 1\n") as (root, echo):
        with ws(root) as silent, ws(root) as chatty:
            assert echoes(silent) and echoes(chatty)
            # Until the silent one is ended (a second of its silence at least), the chatty one keeps talking.
            deadline = time.monotonic() + 60
            while True:
                assert echoes(chatty, "keeping it alive")
                try:
                    silent.recv(timeout=0.3)
                except TimeoutError:
                    assert time.monotonic() < deadline, "the idle limit never ended the silent tunnel"
                    continue
                except ConnectionClosed:
                    break
                pytest.fail("the silent tunnel received a message")
            assert echoes(chatty, "after the silent one ended")  # traffic resets the idle clock
        assert wait_for(lambda: echo.open_connections() == 0, 5)


@pytest.fixture
def prefork(target: Target) -> Target:
    """The target under prefork: its own MPM, or the system Apache with mod_mpm_prefork loaded."""
    if target.mpm == "prefork":
        return target
    if not (target.httpd.modules_dir / "mod_mpm_prefork.so").exists():
        pytest.skip(f"{target.httpd.version} {target.mpm} has no prefork MPM to load")
    return dataclasses.replace(target, mpm="prefork")


PREFORK_PROCESSES = 4  # MaxRequestWorkers (2.2: MaxClients) in the prefork tests
PREFORK_SIZING = {
    "StartServers": 2,
    "MinSpareServers": 1,
    "MaxSpareServers": 2,
    "ServerLimit": 4,
    "MaxRequestWorkers": PREFORK_PROCESSES,
}
KEEPER_STARTED = re.compile(r"APWS0026: tunnel keeper \(pid (\d+)\)")


def keepers(root: ServerRoot) -> list[int]:
    """The keeper pids the error log announced, oldest first."""
    return [int(pid) for pid in KEEPER_STARTED.findall(root.error_log.read_text(errors="replace"))]


def processes_of(parent: int) -> set[int]:
    """Every child of the httpd parent (prefork children and the keeper)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def closed(conn: ClientConnection) -> bool:
    """The tunnel has ended (the server closed it, or a send fails)."""
    try:
        conn.send("anyone?")
        conn.recv(timeout=3)
    except (ConnectionClosed, OSError, TimeoutError):
        return True
    return False


@contextlib.contextmanager
def keeper_proxy(
    target: Target, handoff: bool = True, sizing: dict[str, int] | None = None, extra: str = ""
) -> Iterator[tuple[ServerRoot, EchoServer]]:
    with proxy(target, handoff, extra, sizing={**PREFORK_SIZING, **(sizing or {})}, mpm="prefork") as (root, echo):
        if handoff:
            assert wait_for(lambda: keepers(root), 10), root.log_tail()
        yield root, echo


@pytest.mark.parametrize("handoff", [True, False], ids=["keeper", "process-held"])
def test_prefork_tunnels_hold_no_process(prefork: Target, handoff: bool) -> None:
    wanted = 4 * PREFORK_PROCESSES
    with keeper_proxy(prefork, handoff) as (root, _), contextlib.ExitStack() as stack:
        parent = parent_pid(root)
        opened = open_echoing(root, stack, wanted)
        answered = http_answers(root.port, timeout=2)
        if handoff:
            assert len(opened) == wanted, f"{len(opened)}/{wanted} WebSockets on {PREFORK_PROCESSES} processes"
            assert answered, f"plain HTTP unanswered with {wanted} tunnels in the keeper"
            assert all(echoes(conn, "still there") for conn in opened)
            # The children (at most ServerLimit) and one keeper: the tunnels hold none of them.
            assert len(processes_of(parent)) <= PREFORK_PROCESSES + 1, processes_of(parent)
            assert "APWS0020" not in root.error_log.read_text()
        else:  # the red arm: each tunnel holds a process, the rest of the server starves
            assert len(opened) <= PREFORK_PROCESSES and not answered, f"{len(opened)} open, HTTP answered: {answered}"


def test_prefork_graceful_restart_keeps_the_old_keepers_tunnels(prefork: Target) -> None:
    with keeper_proxy(prefork) as (root, _), contextlib.ExitStack() as stack:
        parent = parent_pid(root)
        old_keeper = keepers(root)[-1]
        before = [stack.enter_context(ws(root)) for _ in range(2 * PREFORK_PROCESSES)]
        assert all(echoes(conn) for conn in before)
        os.kill(parent, signal.SIGUSR1)  # apachectl -k graceful
        assert wait_for(lambda: len(keepers(root)) > 1, 15), root.log_tail()
        assert keepers(root)[-1] != old_keeper and alive(old_keeper)
        after = stack.enter_context(ws(root))
        assert echoes(after, "new generation")
        assert all(echoes(conn, "across the restart") for conn in before)
        assert alive(old_keeper)
        for conn in before:
            conn.close()
        # The old keeper stayed only for its tunnels: with them gone it exits; the new one holds on.
        assert wait_for(lambda: not alive(old_keeper), 10), "the old keeper outlived its tunnels"
        assert echoes(after, "still in the new keeper")


def test_prefork_killed_keeper_is_restarted_and_only_its_tunnels_end(prefork: Target) -> None:
    debug = "LogLevel debug\n" if prefork.is_22 else "LogLevel proxy_wstunnel:debug\n"  # 2.2: no per-module level
    with keeper_proxy(prefork, extra=debug) as (root, echo), contextlib.ExitStack() as stack:
        first = keepers(root)[-1]
        tunnels = [stack.enter_context(ws(root)) for _ in range(3)]
        assert all(echoes(conn) for conn in tunnels)
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: len(keepers(root)) > 1, 15), root.log_tail()
        assert re.search(rf"APWS0027: tunnel keeper \(pid {first}\) died \(signal 9\)", root.error_log.read_text())
        assert all(closed(conn) for conn in tunnels), root.error_log.read_text()[-4000:]
        assert wait_for(lambda: echo.open_connections() == 0, 5), "the backends of the dead keeper's tunnels stay"
        assert http_answers(root.port)
        fresh = stack.enter_context(ws(root))
        assert echoes(fresh, "in the new keeper")


def test_prefork_recycled_children_leave_the_keepers_tunnels(prefork: Target) -> None:
    with keeper_proxy(prefork, sizing={"MaxConnectionsPerChild": 1}) as (root, _):
        parent = parent_pid(root)
        first = processes_of(parent)
        with ws(root) as tunnel:
            assert echoes(tunnel)
            for _ in range(2 * PREFORK_PROCESSES):  # every child serves one connection and is replaced
                assert http_answers(root.port)
            assert wait_for(lambda: not (first - {keepers(root)[-1]}) & processes_of(parent), 10)
            assert echoes(tunnel, "after every child was recycled")
            with ws(root) as fresh:
                assert echoes(fresh, "from a new child")


def test_prefork_idle_limit_ends_a_tunnel_in_the_keeper(prefork: Target) -> None:
    with keeper_proxy(prefork, extra="ProxyWebsocketIdleTimeout 1\n") as (root, echo):
        with ws(root) as silent:
            assert echoes(silent)
            with pytest.raises(ConnectionClosed):  # nothing but the idle limit ends a tunnel to the echo
                silent.recv(timeout=30)
        assert wait_for(lambda: echo.open_connections() == 0, 5)


def test_prefork_keeper_socket_is_the_users_alone(prefork: Target) -> None:
    with keeper_proxy(prefork) as (root, _):
        assert root.root is not None
        directory = next(root.root.rglob("apachews-keeper"))
        socket_path = next(directory.iterdir())
        user = directory.stat().st_uid
        assert directory.stat().st_mode & 0o777 == 0o700 and socket_path.stat().st_mode & 0o777 == 0o600
        assert user != 0 and socket_path.stat().st_uid == user
        # root may reach the socket, but is not the server's User: the keeper takes nothing from it.
        with socket.socket(socket.AF_UNIX) as foreign:
            foreign.connect(str(socket_path))
            foreign.settimeout(5)
            assert foreign.recv(1) == b""
        assert wait_for(lambda: "APWS0028" in root.error_log.read_text(), 5), root.log_tail()
        with ws(root) as conn:
            assert echoes(conn, "the server's own children still hand over")


def test_prefork_keeper_refuses_an_open_directory(prefork: Target) -> None:
    def loosen(root: ServerRoot) -> None:
        assert root.root is not None
        for run in {root.root / "run", root.root / "logs"}:
            (run / "apachews-keeper").mkdir(mode=0o777, exist_ok=True)
            (run / "apachews-keeper").chmod(0o777)

    with proxy(prefork, True, sizing=PREFORK_SIZING, mpm="prefork", before_start=loosen) as (root, _):
        assert wait_for(lambda: "APWS0035" in root.error_log.read_text(), 10), root.log_tail()
        assert not keepers(root)
        with ws(root) as conn:  # no keeper: the tunnel keeps its process, and works
            assert echoes(conn)


def test_prefork_stop_ends_the_keepers_tunnels(prefork: Target) -> None:
    with keeper_proxy(prefork) as (root, _):
        parent, keeper = parent_pid(root), keepers(root)[-1]
        with ws(root) as conn:
            assert echoes(conn)
            os.kill(parent, signal.SIGTERM)  # apachectl -k stop: Apache's own stop, before the test's cleanup
            assert wait_for(lambda: not alive(parent), 15), root.log_tail()
            assert not alive(keeper), "the keeper outlived the server"
            assert closed(conn)


@pytest.mark.parametrize("handoff", [True, False], ids=["handoff", "worker-held"])
def test_big_frames_arrive_whole(target: Target, handoff: bool) -> None:
    """Big payloads take splice(2) on the raw path (its own MPM: the child's loop, or prefork's keeper), small
    ones around them the copy; every byte arrives, in order."""
    sizing = PREFORK_SIZING if target.mpm == "prefork" else None
    with proxy(target, handoff, sizing=sizing) as (root, _):
        with connect(f"ws://127.0.0.1:{root.port}/ws", max_size=None, open_timeout=3, close_timeout=1) as conn:
            for size in (100, 20_000, 70_000, 3 * 2**20 + 7, 10, 2**20):
                data = os.urandom(size)
                conn.send(data)
                assert conn.recv(timeout=20) == data, size
            assert echoes(conn, "small after big")


def test_prefork_keeper_starts_when_a_graceful_restart_turns_handoff_on(prefork: Target) -> None:
    with keeper_proxy(prefork, handoff=False) as (root, _):
        assert root.root is not None
        snippet = next(root.root.rglob("99-handoff.conf"))
        snippet.write_text(snippet.read_text() + "ProxyWebsocketHandoff On\n")
        os.kill(parent_pid(root), signal.SIGUSR1)  # apachectl -k graceful
        assert wait_for(lambda: keepers(root), 15), root.log_tail()
        with ws(root) as conn:
            assert echoes(conn, "handed to the new keeper")


def test_prefork_stopped_keeper_still_gets_the_tunnel_it_was_sent(prefork: Target) -> None:
    """A keeper that does not answer in time (here SIGSTOPped) may still take what it was sent: the child lets
    go (APWS0038) instead of running the same tunnel beside it, and the tunnel works once the keeper goes on."""
    with keeper_proxy(prefork) as (root, _):
        keeper = keepers(root)[-1]
        os.kill(keeper, signal.SIGSTOP)
        try:
            conn = ws(root, timeout=5)
            assert wait_for(lambda: "APWS0038" in root.error_log.read_text(), 20), root.log_tail()
        finally:
            os.kill(keeper, signal.SIGCONT)
        with conn:
            assert echoes(conn, "in the keeper that woke up")
