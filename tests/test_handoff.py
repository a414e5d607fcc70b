"""ProxyWebsocketHandoff (issue 19): a plain ws:// tunnel handed to the child's event loop gives its worker back,
and keeps what a worker-held tunnel guarantees: graceful restarts and child recycling do not cut it, the idle
limit still ends it, and prefork (which cannot hand off) says so and keeps tunnelling.

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from apachews import config, module
from apachews.catalogue import Version
from apachews.echo import EchoServer
from apachews.errors import BadInput
from apachews.httpd import Httpd, ServerRoot, locate

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
        pytest.skip(f"{target.httpd.version} is built with prefork, which cannot hand off")
    return target


@contextlib.contextmanager
def proxy(
    target: Target, handoff: bool, extra: str = "", sizing: dict[str, int] | None = None, mpm: str | None = None
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


@pytest.mark.parametrize("handoff", [True, False], ids=["handoff", "worker-held"])
def test_handed_off_tunnels_hold_no_worker(threaded: Target, handoff: bool) -> None:
    wanted = 3 * WORKERS
    with proxy(threaded, handoff) as (root, _), contextlib.ExitStack() as stack:
        opened = []
        for _ in range(wanted):
            try:
                conn = stack.enter_context(ws(root, timeout=2))
            except (OSError, TimeoutError):
                break
            assert echoes(conn)
            opened.append(conn)
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
            started = time.monotonic()
            while time.monotonic() - started < 2.5:
                assert echoes(chatty, "keeping it alive")
                time.sleep(0.3)
            with pytest.raises(ConnectionClosed):
                silent.recv(timeout=3)
            assert time.monotonic() - started < 5
        assert wait_for(lambda: echo.open_connections() == 0, 5)


def test_prefork_says_it_cannot_hand_off_and_still_tunnels(target: Target) -> None:
    if target.mpm != "prefork" and not (target.httpd.modules_dir / "mod_mpm_prefork.so").exists():
        pytest.skip(f"{target.httpd.version} {target.mpm} has no prefork MPM to load")
    with proxy(target, True, mpm="prefork") as (root, _):
        with ws(root) as conn:
            assert echoes(conn)
        assert wait_for(lambda: "APWS0020" in root.error_log.read_text(), 5), root.log_tail()
