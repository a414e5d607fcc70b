"""Real applications behind a real Apache: each application's preset as `apachews config` renders it, installed
into a copy of this machine's Debian apache2 tree (tests/debian_tree.py) with a short mod_reqtimeout body limit,
the application itself started on 127.0.0.1. Socket.IO and Streamlit are also driven by a headless chromium.
Socket.IO on several nodes also runs through httpd 2.2.31 built from its tag (APACHEWS_HTTPD_GIT; the
release's own httpd.conf, the plain layout).

Slow. Each test skips with a reason when its application is not installed: PyPI's python-socketio, uvicorn
and streamlit (the test extra), npm's node-red and socket.io in the apachews cache and Debian's cockpit-ws
and chromium (`make apps`: scripts/install-apps.sh), PyPI's homeassistant in a venv of its own
(`make apps-homeassistant`: heavy, optional).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from apachews import config, distros
from apachews.httpd import Httpd, free_port, wait_for_port
from apachews.sources import cache_dir
from tests import browser, debian_tree

pytestmark = pytest.mark.slow

APPS = cache_dir() / "apps"  # npm packages and the Home Assistant venv (`make apps`)
BODY_LIMIT = 2  # seconds: mod_reqtimeout's body limit in the test tree; the idle periods below are longer
IDLE = BODY_LIMIT + 2
STYLES = ("http-upgrade", "wstunnel", "apachews")


def _need_python(module: str, package: str) -> None:
    try:
        __import__(module)
    except ImportError:
        pytest.skip(f"{package} is not installed (pip install -e '.[test,apps]')")


@pytest.fixture(scope="module")
def host_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The apachews module built with this machine's apxs (for the `apachews` style)."""
    from apachews import serverbuild

    if shutil.which("apxs") is None:
        pytest.skip("no apxs (apt-get install apache2-dev)")
    return serverbuild.build_for_server(out_dir=tmp_path_factory.mktemp("dist")).module


def _module_for(style: str, request: pytest.FixtureRequest) -> Path | None:
    return request.getfixturevalue("host_module") if style == "apachews" else None


@dataclass
class Front:
    """The Debian tree copy serving the preset, and what it was rendered with."""

    server: debian_tree.DebianServer
    rendering: config.Rendering

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.server.port}{path}"


@contextmanager
def apache_in_front(
    httpd: Httpd,
    root: Path,
    preset: str,
    backends: Sequence[str],
    *,
    path: str | None = None,
    prefer: str | None = None,
    module: Path | None = None,
) -> Iterator[Front]:
    """The preset rendered for this Apache and placed into a Debian tree copy as `apachews install` does."""
    reason = debian_tree.available()
    if reason is not None:
        pytest.skip(reason)
    server = debian_tree.make(root)
    rendering = config.render(
        preset,
        apache=str(httpd.version),
        distro="debian",
        backends=backends,
        path=path,
        prefer=prefer,
        public_url=f"http://127.0.0.1:{server.port}",
    )
    distros.place(rendering, server.conf_root, module_so=module, modules_dir=server.modules_dir)
    timeouts = server.conf_root / "conf-enabled" / "zz-apps-reqtimeout.conf"
    timeouts.write_text(f"RequestReadTimeout header=10 body={BODY_LIMIT}\n")
    server.start()
    try:
        yield Front(server, rendering)
    finally:
        server.stop()


@contextmanager
def started(
    command: Sequence[str], port: int, log: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """An application process in its own session, up once `port` accepts; ended (its session only) after."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    try:
        if not wait_for_port(port, 120, alive=lambda: process.poll() is None):
            raise AssertionError(f"{command[0]} did not listen on 127.0.0.1:{port}: {log.read_text()[-3000:]}")
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


# -- Socket.IO (python-socketio, its own Python client, and the JavaScript client in chromium) -------------------
SOCKETIO_SERVER = textwrap.dedent(
    """
    import sys

    import socketio
    import uvicorn

    port, node, client_js = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=sys.argv[4])
    transports = {}

    @sio.event
    async def connect(sid, environ):
        transports[sid] = [environ.get("QUERY_STRING", "")]

    @sio.event
    async def whoami(sid):
        return node

    @sio.event
    async def echo(sid, data):
        return data

    page = (
        "<!doctype html><script src='socket.io.min.js'></script><script>"
        "window.sock = io({transports: ['polling', 'websocket']});"
        "window.upgraded = false; sock.io.engine.on('upgrade', () => { window.upgraded = true; });"
        "</script><p>socket.io page</p>"
    )
    files = {"/": {"content_type": "text/html", "filename": sys.argv[5]}, "/socket.io.min.js": client_js}
    open(sys.argv[5], "w").write(page)
    uvicorn.run(socketio.ASGIApp(sio, static_files=files), host="127.0.0.1", port=port, log_level="warning")
    """
)


def _socketio_client_js() -> Path:
    js = APPS / "socket.io" / "node_modules" / "socket.io" / "client-dist" / "socket.io.min.js"
    if not js.is_file():
        pytest.skip(f"no Socket.IO JavaScript client at {js} (make apps: npm install socket.io)")
    return js


@contextmanager
def socketio_nodes(tmp_path: Path, count: int, origin: str = "*") -> Iterator[list[str]]:
    """`count` python-socketio servers (uvicorn) on 127.0.0.1: their http:// URLs; each answers `whoami`
    with its own name."""
    _need_python("socketio", "python-socketio")
    _need_python("uvicorn", "uvicorn")
    script = tmp_path / "sio_server.py"
    script.write_text(SOCKETIO_SERVER)
    js = APPS / "socket.io" / "node_modules" / "socket.io" / "client-dist" / "socket.io.min.js"
    with contextlib.ExitStack() as stack:
        urls = []
        for n in range(count):
            port = free_port()
            command = [sys.executable, str(script), str(port), f"node{n}", str(js), origin, str(tmp_path / "p.html")]
            stack.enter_context(started(command, port, tmp_path / f"node{n}.log"))
            urls.append(f"http://127.0.0.1:{port}/")
        yield urls


def _socketio_session(url: str, calls: int = 3) -> tuple[str, list[str]]:
    """One python-socketio client session: polling first, then the upgrade (waited for as an event); the
    transport it ended on and the node names its calls were answered by, over both transports."""
    import socketio

    client = socketio.Client(reconnection=False)
    answers: list[str] = []
    client.connect(url, transports=["polling", "websocket"], wait_timeout=15)
    try:
        answers.append(client.call("whoami", timeout=15))  # over long-polling (or already upgraded)
        upgraded = _wait(lambda: client.transport() == "websocket", 15)
        for _ in range(calls):
            answers.append(client.call("whoami", timeout=15))
        assert client.call("echo", {"a": [1, 2]}, timeout=15) == {"a": [1, 2]}
        return (client.transport() if upgraded else f"{client.transport()} (no upgrade)"), answers
    finally:
        client.disconnect()


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    """Wait for condition(): the client's transport, switched by its own thread when the upgrade completes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("style", STYLES)
def test_socketio_polling_then_websocket_through_apache(
    system_httpd: Httpd, tmp_path: Path, style: str, request: pytest.FixtureRequest
) -> None:
    module = _module_for(style, request)
    with socketio_nodes(tmp_path, 1) as nodes:
        front_root = tmp_path / "front"
        with apache_in_front(system_httpd, front_root, "socketio", nodes, prefer=style, module=module) as front:
            transport, answers = _socketio_session(front.origin)
    assert transport == "websocket" and set(answers) == {"node0"}, (transport, answers)


@pytest.mark.parametrize("style", STYLES)
def test_socketio_two_nodes_keep_every_session_on_its_node(
    system_httpd: Httpd, tmp_path: Path, style: str, request: pytest.FixtureRequest
) -> None:
    # Socket.IO itself fails a session whose polling request or upgrade reaches the other node (400, unknown
    # sid): every session upgrading and answering from one node is the proof, both nodes used the spread.
    module = _module_for(style, request)
    with socketio_nodes(tmp_path, 2) as nodes:
        with apache_in_front(
            system_httpd, tmp_path / "front", "socketio-balanced", nodes, prefer=style, module=module
        ) as front:
            sessions = [_socketio_session(front.origin) for _ in range(6)]
    assert all(transport == "websocket" and len(set(answers)) == 1 for transport, answers in sessions), sessions
    assert {answers[0] for _, answers in sessions} == {"node0", "node1"}, sessions


@pytest.fixture(scope="module")
def built_22(base_image: str, httpd_git: Path) -> tuple[Httpd, Path]:
    """httpd 2.2.31 with the apachews module, built from the git tag (kept in the test cache between runs)."""
    from apachews import build
    from apachews import httpd as httpd_module
    from apachews.sources import SourceOptions
    from tests.fixtures.sources import cache_root_of_tests

    source = SourceOptions(git=httpd_git)
    result = build.build("2.2.31", source=source, with_httpd=True, out_dir=cache_root_of_tests() / "dist")
    return httpd_module.locate(prefix=result.dist / "httpd"), result.module


def test_socketio_two_nodes_on_22s_mod_proxy_balancer(built_22: tuple[Httpd, Path], tmp_path: Path) -> None:
    # 2.2: one balancer of http:// members, the upgrade tunnelled by the apachews module (ProxyWebsocketUpgrade),
    # sticky on the ROUTEID cookie; in the release's own httpd.conf (the plain layout), with mod_reqtimeout.
    from apachews.distros import trees

    httpd, module = built_22
    with socketio_nodes(tmp_path, 2) as nodes:
        rendering = config.render(
            "socketio-balanced", apache=str(httpd.version), distro=trees.rendering_distro("plain"), backends=nodes
        )
        (tmp_path / "tree").mkdir()
        port = free_port()
        additions = trees.Additions(body_timeout=BODY_LIMIT)
        server = trees.build("plain", tmp_path / "tree", httpd, rendering, module, port, additions)
        server.start()
        try:
            sessions = [_socketio_session(f"http://127.0.0.1:{port}") for _ in range(6)]
        finally:
            server.stop()
    assert all(transport == "websocket" and len(set(answers)) == 1 for transport, answers in sessions), sessions
    assert {answers[0] for _, answers in sessions} == {"node0", "node1"}, sessions


def test_socketio_in_chromium_keeps_working_after_an_idle_period(system_httpd: Httpd, tmp_path: Path) -> None:
    if browser.available():
        pytest.skip(browser.available())
    _socketio_client_js()
    with socketio_nodes(tmp_path, 2) as nodes:
        with apache_in_front(system_httpd, tmp_path / "front", "socketio-balanced", nodes) as front:
            with browser.page(tmp_path / "chromium.log") as tab:
                tab.goto(front.url("/"))
                tab.wait_for("window.sock && window.sock.connected && window.upgraded")
                first = tab.evaluate("window.sock.emitWithAck('whoami')")
                # Silent for longer than mod_reqtimeout's body limit, then the same session must still answer.
                tab.evaluate(f"new Promise(resolve => setTimeout(resolve, {IDLE * 1000}))", IDLE + 10)
                assert tab.evaluate("window.sock.connected && window.sock.io.engine.transport.name") == "websocket"
                again = tab.evaluate("window.sock.emitWithAck('echo', 'after the idle period')")
                node = tab.evaluate("window.sock.emitWithAck('whoami')")
    assert again == "after the idle period" and node == first, (first, again, node)


# -- Streamlit ---------------------------------------------------------------------------------------------------
STREAMLIT_APP = textwrap.dedent(
    """
    import streamlit as st

    if st.button("count"):
        st.session_state.n = st.session_state.get("n", 0) + 1
    st.write(f"count is {st.session_state.get('n', 0)}")
    """
)


@contextmanager
def streamlit_app(tmp_path: Path, base: str) -> Iterator[str]:
    _need_python("streamlit", "streamlit")
    (tmp_path / "app.py").write_text(STREAMLIT_APP)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(tmp_path / "app.py"),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--server.baseUrlPath",
        base,
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    with started(command, port, tmp_path / "streamlit.log", env={"HOME": str(tmp_path)}, cwd=tmp_path):
        yield f"http://127.0.0.1:{port}{base}"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


async def _upgrade_status(url: str, origin: str, subprotocols: Sequence[str] = ()) -> int:
    try:
        async with connect(url, origin=origin, subprotocols=list(subprotocols) or None, open_timeout=15):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as error:
        return error.response.status_code


@pytest.mark.parametrize("style", STYLES)
def test_streamlit_under_a_base_path(
    system_httpd: Httpd, tmp_path: Path, style: str, request: pytest.FixtureRequest
) -> None:
    module = _module_for(style, request)
    with streamlit_app(tmp_path, "/st") as app:
        with apache_in_front(
            system_httpd, tmp_path / "front", "streamlit", [app], path="/st", prefer=style, module=module
        ) as front:
            assert _get(front.url("/st/_stcore/health")) == (200, "ok")
            assert _get(front.url("/st/"))[0] == 200
            stream = front.url("/st/_stcore/stream", "ws")
            assert asyncio.run(_upgrade_status(stream, front.origin, ["streamlit"])) == 101
            # Its origin check is real: another origin is refused (the Host it compares with is preserved).
            assert asyncio.run(_upgrade_status(stream, "http://elsewhere.example", ["streamlit"])) != 101
    settings = {s["setting"]: s["value"] for s in front.rendering.app_settings}
    assert settings["server.baseUrlPath"] == '"/st"'


def test_streamlit_in_chromium_keeps_working_after_an_idle_period(system_httpd: Httpd, tmp_path: Path) -> None:
    if browser.available():
        pytest.skip(browser.available())
    with streamlit_app(tmp_path, "/st") as app:
        with apache_in_front(system_httpd, tmp_path / "front", "streamlit", [app], path="/st") as front:
            with browser.page(tmp_path / "chromium.log") as tab:
                tab.goto(front.url("/st/"))
                tab.wait_for("document.body.innerText.includes('count is 0')", 60)
                button = "[...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'count')"
                tab.wait_for(button)
                click = f"{button}.click()"
                tab.evaluate(click)
                tab.wait_for("document.body.innerText.includes('count is 1')")
                tab.evaluate(f"new Promise(resolve => setTimeout(resolve, {IDLE * 1000}))", IDLE + 10)
                tab.evaluate(click)  # a rerun: only through the app's WebSocket
                tab.wait_for("document.body.innerText.includes('count is 2')")
                assert "Connection error" not in tab.evaluate("document.body.innerText")


# -- Node-RED ----------------------------------------------------------------------------------------------------
NODE_RED_SETTINGS = textwrap.dedent(
    """
    module.exports = {
        uiHost: "127.0.0.1",
        httpAdminRoot: "/nodered",
        httpNodeRoot: "/nodered",
        webSocketKeepAliveTime: 1000,
        flowFile: "flows.json",
        logging: { console: { level: "warn" } },
        editorTheme: { tours: false },
    };
    """
)


@pytest.mark.parametrize("style", STYLES)
def test_node_red_editor_comms(system_httpd: Httpd, tmp_path: Path, style: str, request: pytest.FixtureRequest) -> None:
    red = APPS / "node-red" / "node_modules" / "node-red" / "red.js"
    if not red.is_file() or shutil.which("node") is None:
        pytest.skip(f"no Node-RED at {red} (make apps: npm install node-red; needs node)")
    module = _module_for(style, request)
    user = tmp_path / "node-red"
    user.mkdir()
    (user / "settings.js").write_text(NODE_RED_SETTINGS)
    port = free_port()
    command = ["node", str(red), "--port", str(port), "--userDir", str(user), "--settings", str(user / "settings.js")]
    with started(command, port, tmp_path / "node-red.log"):
        backend = f"http://127.0.0.1:{port}/nodered"  # Node-RED serves under httpAdminRoot
        with apache_in_front(
            system_httpd, tmp_path / "front", "node-red", [backend], path="/nodered", prefer=style, module=module
        ) as front:
            status, page = _get(front.url("/nodered/"))
            assert status == 200 and "Node-RED" in page, page[:300]
            assert _get(front.url("/nodered/settings"))[0] == 200
            topics = asyncio.run(_node_red_comms(front.url("/nodered/comms", "ws"), front.origin))
    settings = {s["setting"]: s["value"] for s in front.rendering.app_settings}
    assert settings["httpAdminRoot"] == "'/nodered'"
    assert topics.count("hb") >= 2, topics


async def _node_red_comms(url: str, origin: str) -> list[str]:
    """The editor's comms socket: subscribe, then its heartbeats (every second here) arrive through Apache,
    the last after a silence from the client longer than mod_reqtimeout's body limit."""
    topics: list[str] = []
    async with connect(url, origin=origin, open_timeout=15) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"subscribe": "status/#"}))
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < IDLE:
            for message in json.loads(await asyncio.wait_for(ws.recv(), 10)):
                topics.append(message.get("topic", ""))
    return topics


# -- Cockpit -----------------------------------------------------------------------------------------------------
COCKPIT_WS = Path("/usr/lib/cockpit/cockpit-ws")


@pytest.mark.parametrize("style", STYLES)
def test_cockpit_login_page_and_socket(
    system_httpd: Httpd, tmp_path: Path, style: str, request: pytest.FixtureRequest
) -> None:
    if not COCKPIT_WS.exists():
        pytest.skip("no cockpit-ws (apt-get install cockpit-ws)")
    module = _module_for(style, request)
    port = free_port()
    backend = f"http://127.0.0.1:{port}/cockpit"
    conf = tmp_path / "xdg" / "cockpit"
    conf.mkdir(parents=True)
    with apache_in_front(system_httpd, tmp_path / "front", "cockpit", [backend], prefer=style, module=module) as front:
        # cockpit.conf exactly as the preset's app-side settings say, for the URL of this Apache.
        settings = [f"{s['setting'].split('] ', 1)[1]} = {s['value']}" for s in front.rendering.app_settings]
        (conf / "cockpit.conf").write_text("\n".join(["[WebService]", *settings]) + "\n")
        command = [str(COCKPIT_WS), "--no-tls", "--port", str(port), "--address", "127.0.0.1"]
        with started(command, port, tmp_path / "cockpit.log", env={"XDG_CONFIG_DIRS": str(tmp_path / "xdg")}):
            status, page = _get(front.url("/cockpit/"))
            assert status == 200 and "login" in page.lower(), page[:300]
            first = asyncio.run(_cockpit_socket(front.url("/cockpit/cockpit/socket", "ws"), front.origin))
            refused = asyncio.run(_upgrade_status(front.url("/cockpit/cockpit/socket", "ws"), "http://evil.example"))
    # Not logged in: cockpit-ws opens the socket and says so in its first control message (a refused Origin or
    # a missing ProtocolHeader would be a 403 or a blank page instead).
    assert first.get("command") == "init" and first.get("problem") == "no-session", first
    assert refused == 403


async def _cockpit_socket(url: str, origin: str) -> dict[str, object]:
    async with connect(url, origin=origin, open_timeout=15, subprotocols=["cockpit1"]) as ws:  # type: ignore[arg-type,list-item]
        frame = await asyncio.wait_for(ws.recv(), 15)
    text = frame.decode() if isinstance(frame, bytes) else frame
    return json.loads(text.split("\n", 1)[1])  # "<channel>\n<json>"; the control channel is empty


# -- Home Assistant ----------------------------------------------------------------------------------------------
HASS = APPS / "homeassistant" / "venv" / "bin" / "hass"


@pytest.mark.parametrize("trusted", [True, False], ids=["app-side-settings", "without-them"])
def test_home_assistant_websocket_auth_handshake(system_httpd: Httpd, tmp_path: Path, trusted: bool) -> None:
    # With the preset's app-side settings the websocket API's auth handshake runs through Apache; without them
    # Home Assistant answers 400 to a request that came through a proxy (X-Forwarded-For).
    if not HASS.exists():
        pytest.skip(f"no Home Assistant at {HASS} (make apps-homeassistant: heavy, optional)")
    port = free_port()
    conf = tmp_path / "hass"
    conf.mkdir()
    with apache_in_front(system_httpd, tmp_path / "front", "homeassistant", [f"http://127.0.0.1:{port}/"]) as front:
        settings = {s["setting"]: s["value"] for s in front.rendering.app_settings}
        proxy = (
            f"  use_x_forwarded_for: {settings['http: use_x_forwarded_for']}\n"
            f"  trusted_proxies: {settings['http: trusted_proxies']}\n"
            if trusted
            else ""
        )
        (conf / "configuration.yaml").write_text(
            f"http:\n  server_host: 127.0.0.1\n  server_port: {port}\n{proxy}"
            f"homeassistant:\n  external_url: {settings['homeassistant: external_url']}\n"
            "websocket_api:\napi:\n"
        )
        try:
            with started([str(HASS), "-c", str(conf), "--skip-pip"], port, tmp_path / "hass.log"):
                url = front.url("/api/websocket", "ws")
                if not trusted:
                    assert asyncio.run(_upgrade_status(url, front.origin)) == 400
                    return
                messages = asyncio.run(_hass_auth(url, front.origin))
        except AssertionError as error:
            if "did not listen" not in str(error):
                raise
            pytest.skip(f"Home Assistant did not start here: {str(error)[-300:]}")
    assert messages[0]["type"] == "auth_required" and messages[1]["type"] == "auth_invalid", messages


async def _hass_auth(url: str, origin: str) -> list[dict[str, object]]:
    """The websocket API's handshake: auth_required, a (wrong) token, auth_invalid."""
    async with connect(url, origin=origin, open_timeout=30) as ws:  # type: ignore[arg-type]
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        await ws.send(json.dumps({"type": "auth", "access_token": "not-a-token"}))
        second = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return [first, second]
