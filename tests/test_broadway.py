"""Real Broadway behind Apache: a browser that is killed must not leave broadwayd's tunnel half-open.

broadwayd (Debian's libgtk-3-bin) serves gtk3-demo (gtk-3-examples) to a headless Debian chromium, driven over
its DevTools protocol, through Apache configured by `apachews config broadway` with the apachews module. The
browser is then SIGKILLed, as a crashing or killed browser is: its kernel closes the connection (a FIN, or a
reset when data was unread) without a WebSocket close frame. broadwayd never closes a connection on EOF, so only
what the proxy does decides whether broadwayd's socket, and the Apache worker or child that carried the tunnel,
are released: within the module's fin timeout, on the Debian system apache2 (its own tree, event MPM) and on a
2.2 prefork build (APACHEWS_HTTPD_GIT). Everything listens on 127.0.0.1; nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apachews import build, config, module, sources, verify
from apachews import httpd as httpd_module
from apachews.distros import trees
from apachews.httpd import Httpd, free_port, wait_for_port
from apachews.lab.sockets import TcpSocket, socket_holders, tcp_sockets
from tests import browser
from tests.fixtures.sources import cache_root_of_tests

pytestmark = pytest.mark.slow  # a browser, a GTK app and an Apache per test: tens of seconds each

PACKAGES = {"broadwayd": "libgtk-3-bin", "gtk3-demo": "gtk-3-examples", "chromium": "chromium"}
RELEASE_LIMIT = module.DEFAULT_FIN_TIMEOUT + verify.ORPHAN_SLACK_SECONDS


def _missing() -> str | None:
    absent = [f"{name} ({package})" for name, package in PACKAGES.items() if shutil.which(name) is None]
    if absent:
        return f"missing {', '.join(absent)}: apt-get install -y {' '.join(sorted(set(PACKAGES.values())))}"
    return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


@contextlib.contextmanager
def broadway(scratch: Path) -> Iterator[int]:
    """broadwayd on 127.0.0.1 (display :1 in a private runtime dir) with gtk3-demo on it; yields its port."""
    runtime = scratch / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    port = free_port()
    log = (scratch / "broadwayd.log").open("wb")
    daemon = subprocess.Popen(
        ["broadwayd", "--port", str(port), "--address", "127.0.0.1", ":1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_for_port(port, 10), "broadwayd did not listen"
        deadline = time.monotonic() + 10
        while not list(runtime.glob("broadway*.socket")) and time.monotonic() < deadline:
            time.sleep(0.05)
        demo = subprocess.Popen(
            ["gtk3-demo"],
            env={**env, "GDK_BACKEND": "broadway", "BROADWAY_DISPLAY": ":1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield port
        finally:
            _stop(demo)
    finally:
        _stop(daemon)
        log.close()


def _apache_side(port: int) -> list[TcpSocket]:
    """Apache's sockets to broadwayd (its remote port), in any state but TIME-WAIT."""
    return [sock for sock in tcp_sockets(port) if sock.remote_port == port]


def _wait(predicate, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def _kill_the_browser_and_time_the_release(server: httpd_module.Server, scratch: Path, broadway_port: int) -> None:
    server.start()
    try:
        with browser.page(scratch / "chromium.log") as tab:
            tab.command("Page.navigate", url=f"http://127.0.0.1:{server.port}/")
            # The tunnel: a socket to broadwayd that an Apache process holds (the page's plain requests come and go).
            opened = _wait(lambda: bool(socket_holders({sock.inode for sock in _apache_side(broadway_port)})), 30)
            assert opened is not None, f"no Apache process holds a tunnel to broadwayd after 30 s; {server.log_tail()}"
            os.killpg(tab.process.pid, signal.SIGKILL)  # a crash: no close frame
            released = _wait(lambda: not tcp_sockets(broadway_port), 2 * RELEASE_LIMIT)
            left = tcp_sockets(broadway_port)
        assert released is not None and released <= RELEASE_LIMIT, (
            f"after the browser was killed: {len(left)} sockets at broadwayd's port "
            f"({', '.join(sorted(sock.state for sock in left))}) after {2 * RELEASE_LIMIT:.0f} s"
        )
        still = socket_holders({sock.inode for sock in _apache_side(broadway_port)})
        assert not still, f"Apache processes {still} still hold a socket to broadwayd"
    finally:
        server.stop()
    print(f"broadwayd's socket and the Apache worker released {released:.2f} s after the browser was killed")


def test_killed_browser_releases_broadwayd_on_debian_apache2(system_httpd: Httpd, tmp_path: Path) -> None:
    if (why := _missing()) is not None:
        pytest.skip(why)
    if trees.default_layout(system_httpd) != "debian":
        pytest.skip("the system Apache is not Debian's apache2")
    so = module.build_with_apxs(tmp_path / "apxs").so
    with broadway(tmp_path) as port:
        rendering = config.render(
            "broadway",
            apache=str(system_httpd.version),
            distro="debian",
            backends=[f"http://127.0.0.1:{port}/"],
            prefer="apachews",
        )
        (tmp_path / "tree").mkdir()
        server = trees.build("debian", tmp_path / "tree", system_httpd, rendering, so, free_port(), trees.Additions())
        _kill_the_browser_and_time_the_release(server, tmp_path, port)


@pytest.fixture(scope="module")
def built_22_prefork(base_image: str, httpd_git: Path) -> tuple[Httpd, Path]:
    """httpd 2.2.31 (prefork, its default MPM) with the apachews module, built from the git tag (kept in the
    test cache between runs, as tests/test_verify.py's 2.2 build)."""
    result = build.build(
        "2.2.31", source=sources.SourceOptions(git=httpd_git), with_httpd=True, out_dir=cache_root_of_tests() / "dist"
    )
    return httpd_module.locate(prefix=result.dist / "httpd"), result.module


def test_killed_browser_releases_broadwayd_on_22_prefork(built_22_prefork: tuple[Httpd, Path], tmp_path: Path) -> None:
    if (why := _missing()) is not None:
        pytest.skip(why)
    server_22, so = built_22_prefork
    with broadway(tmp_path) as port:
        rendering = config.render(
            "broadway",
            apache=str(server_22.version),
            distro=trees.rendering_distro("plain"),
            backends=[f"http://127.0.0.1:{port}/"],
        )
        (tmp_path / "tree").mkdir()
        server = trees.build("plain", tmp_path / "tree", server_22, rendering, so, free_port(), trees.Additions())
        _kill_the_browser_and_time_the_release(server, tmp_path, port)
