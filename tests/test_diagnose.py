"""`apachews diagnose` against a real Debian apache2 (a throwaway copy of /etc/apache2, tests/debian_tree.py):
each known failure is caused for real (a module not loaded, two routes into one worker, a backend that is
dead, silent or hangs up, mod_proxy_http taking a ws:// route, an upgrade dropped, an idle tunnel cut, an
application refusing the Origin), then diagnose must name the cause and a fix that, applied, makes the
WebSocket work where it can.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import diagnose, module, torture
from apachews.cli import main
from apachews.errors import BadInput
from apachews.httpd import free_port
from apachews.lab.echo import EchoServer
from tests import debian_tree

pytestmark = pytest.mark.skipif(debian_tree.available() is not None, reason=str(debian_tree.available()))


def _enable(server: debian_tree.DebianServer, *modules: str) -> None:
    etc = server.conf_root
    for name in modules:
        for suffix in (".load", ".conf"):
            link = etc / "mods-enabled" / f"{name}{suffix}"
            if (etc / "mods-available" / f"{name}{suffix}").exists() and not os.path.lexists(link):
                link.symlink_to(f"../mods-available/{name}{suffix}")


def _site(server: debian_tree.DebianServer, text: str) -> None:
    (server.conf_root / "conf-enabled" / "zz-site.conf").write_text(text)


@contextlib.contextmanager
def _server(tmp_path: Path, modules: tuple[str, ...], conf: str) -> Iterator[debian_tree.DebianServer]:
    server = debian_tree.make(tmp_path / "server")
    _enable(server, *modules)
    _site(server, conf)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _restart(server: debian_tree.DebianServer) -> None:
    server.stop()
    server.start()


def _findings(server: debian_tree.DebianServer, *args: str) -> dict[str, dict]:
    result = CliRunner().invoke(main, ["--json", "diagnose", "--apachectl", str(server.ctl), *args])
    assert result.exit_code in (0, 1), result.output
    data = json.loads(result.stdout)
    return {finding["signature"]: finding for finding in data["findings"]}


def _handshake(server: debian_tree.DebianServer, path: str) -> int:
    return diagnose.probe(f"ws://127.0.0.1:{server.port}{path}").status


def _apply(server: debian_tree.DebianServer, fix: str) -> None:
    """Add a fix's config lines (its `# remove:` lines name what it replaces) and restart."""
    site = server.conf_root / "conf-enabled" / "zz-site.conf"
    text = site.read_text()
    for removed in re.findall(r"^# (?:remove|in place of): (.*?)  \(", fix, re.MULTILINE):
        text = text.replace(removed, "# " + removed)
    site.write_text(text + fix)
    _restart(server)


class SilentBackend:
    """A TCP backend that accepts and then says nothing (`hang`) or hangs up at once (`close`)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "close":
                conn.recv(65536)
                conn.close()
            else:
                self.held.append(conn)

    def __enter__(self) -> SilentBackend:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_ah01144_a_module_not_loaded(tmp_path: Path) -> None:
    with (
        EchoServer() as echo,
        _server(
            tmp_path, ("proxy",), f'<Location "/ws">\n    ProxyPass "ws://127.0.0.1:{echo.port}/"\n</Location>\n'
        ) as server,
    ):
        assert _handshake(server, "/ws") == 500
        found = _findings(server)["no-protocol-handler"]
        assert "AH01144" in found["evidence"][0] and "mod_proxy_http is not loaded" in found["cause"]
        assert "LoadModule proxy_http_module /usr/lib/apache2/modules/mod_proxy_http.so" in found["fix"]
        assert "a2enmod proxy_http" in found["commands"]
        _enable(server, "proxy_http")  # what the fix's a2enmod does
        _restart(server)
        assert _handshake(server, "/ws") == 101


def test_ah01146_worker_sharing_drops_upgrade(tmp_path: Path) -> None:
    with EchoServer() as echo:
        base = f"http://127.0.0.1:{echo.port}/gateone"
        conf = (
            f'<Location "/gateone">\n    ProxyPass "{base}"\n</Location>\n'
            f'<Location "/gateone/ws">\n    ProxyPass "{base}/ws" upgrade=websocket\n</Location>\n'
        )
        with _server(tmp_path, ("proxy", "proxy_http"), conf) as server:
            assert _handshake(server, "/gateone/ws") == 200  # the upgrade reached the app as plain HTTP
            found = _findings(server)["worker-sharing"]
            assert "AH01146" in found["evidence"][0] and "upgrade=websocket" in found["cause"]
            assert f'ProxyPass "{base}" upgrade=websocket' in found["fix"]
            assert f'# remove: ProxyPass "{base}/ws" upgrade=websocket' in found["fix"]
            _apply(server, found["fix"])
            assert "worker-sharing" not in _findings(server)
            assert _handshake(server, "/gateone/ws") == 101


@pytest.mark.parametrize(("mode", "status", "said"), [("hang", 502, "did not answer"), ("close", 502, "closed")])
def test_ah01102_ah00898_backend_read_errors(tmp_path: Path, mode: str, status: int, said: str) -> None:
    with SilentBackend(mode) as backend:
        conf = (
            f'<Location "/ws">\n    ProxyPass "http://127.0.0.1:{backend.port}/" upgrade=websocket timeout=1\n'
            "</Location>\n"
        )
        with _server(tmp_path, ("proxy", "proxy_http"), conf) as server:
            assert _handshake(server, "/ws") == status
            found = _findings(server)["backend-read"]
    assert found["codes"] == ["AH01102", "AH00898"] and said in found["cause"]
    assert "request: /ws" in found["evidence"]
    if mode == "hang":
        assert "timeout=60" in found["fix"] and '<Location "/ws">' in found["fix"]


def test_a_dead_backend_with_url(tmp_path: Path) -> None:
    dead = free_port()
    conf = f'<Location "/ws">\n    ProxyPass "http://127.0.0.1:{dead}/" upgrade=websocket\n</Location>\n'
    with _server(tmp_path, ("proxy", "proxy_http"), conf) as server:
        found = _findings(server, "--url", f"ws://127.0.0.1:{server.port}/ws")
    down = found["backend-down"]
    assert f"127.0.0.1:{dead}" in down["cause"] and "retry=0" in down["fix"]
    assert any("503" in line for line in down["evidence"])


def test_ws_route_taken_by_mod_proxy_http(tmp_path: Path) -> None:
    with EchoServer() as echo:
        conf = (
            f'<Location "/ws">\n    ProxyPass "ws://127.0.0.1:{echo.port}/"\n</Location>\n'
            "LogLevel warn proxy_http:trace1\n"
        )
        with _server(tmp_path, ("proxy", "proxy_http", "proxy_wstunnel"), conf) as server:
            assert _handshake(server, "/ws") == 101
            # mod_proxy_http canonicalised, so handled, the ws:// URL: the fallback happened for real.
            assert f"HTTP: canonicalising URL ws://127.0.0.1:{echo.port}/" in server.error_log.read_text()
            found = _findings(server)["fallback-to-proxy-http"]
            assert "ProxyWebsocketFallbackToProxyHttp" in found["fix"]
            assert f'ProxyPass "http://127.0.0.1:{echo.port}/" upgrade=websocket' in found["fix"]
            _apply(server, '<Location "/ws">\n    ProxyWebsocketFallbackToProxyHttp Off\n</Location>\n')
            server.error_log.write_text("")
            assert _handshake(server, "/ws") == 101
            assert "canonicalising URL ws://" not in server.error_log.read_text()
            assert "fallback-to-proxy-http" not in _findings(server)


def test_upgrade_dropped_on_an_http_route(tmp_path: Path) -> None:
    with EchoServer() as echo:
        conf = f'<Location "/app">\n    ProxyPass "http://127.0.0.1:{echo.port}/app"\n</Location>\n'
        with _server(tmp_path, ("proxy", "proxy_http"), conf) as server:
            found = _findings(server, "--url", f"ws://127.0.0.1:{server.port}/app/socket")
            assert echo.requests and not echo.requests[-1].upgrade  # the backend saw a plain GET
            dropped = found["upgrade-dropped"]
            assert "Connection: Keep-Alive" in dropped["cause"]
            assert f'ProxyPass "http://127.0.0.1:{echo.port}/app" upgrade=websocket' in dropped["fix"]
            assert "upgrade-dropped" in _findings(server, "--path", "/app/socket")  # from the config alone
            _apply(server, dropped["fix"])
            assert _handshake(server, "/app/socket") == 101


@pytest.mark.parametrize(
    "workaround",
    ["SetEnv force-proxy-request-1.0 1\nSetEnv proxy-nokeepalive 1", "RequestHeader unset Upgrade"],
)
def test_a_keepalive_workaround_strips_the_upgrade(tmp_path: Path, workaround: str) -> None:
    with EchoServer() as echo:
        route = f'<Location "/ws">\n    ProxyPass "http://127.0.0.1:{echo.port}/" upgrade=websocket\n</Location>\n'
        with _server(tmp_path, ("proxy", "proxy_http", "headers", "setenvif"), f"{workaround}\n{route}") as server:
            found = _findings(server, "--url", f"ws://127.0.0.1:{server.port}/ws")["keepalive-rewrite"]
            assert not echo.requests[-1].upgrade  # the backend got a plain GET
            assert (
                any("200" in line for line in found["evidence"]) and workaround.split("\n")[0] in found["evidence"][-1]
            )
            _apply(server, found["fix"])
            assert "keepalive-rewrite" not in _findings(server)
            assert _handshake(server, "/ws") == 101 and echo.requests[-1].upgrade


def test_the_probes_host_picks_the_vhost(tmp_path: Path) -> None:
    # Two name-based vhosts on one port: /ws passes the upgrade on in one, not in the other.
    with EchoServer() as echo:
        with _server(tmp_path, ("proxy", "proxy_http"), "") as server:
            vhosts = "".join(
                f'<VirtualHost *:{server.port}>\n    ServerName {name}\n    <Location "/ws">\n'
                f'        ProxyPass "http://127.0.0.1:{echo.port}/{name}"{options}\n    </Location>\n</VirtualHost>\n'
                for name, options in (("good.example", " upgrade=websocket"), ("bad.example", ""))
            )
            _site(server, vhosts)
            _restart(server)
            url = f"ws://127.0.0.1:{server.port}/ws"
            assert _findings(server, "--url", url, "--host", "good.example") == {}
            dropped = _findings(server, "--url", url, "--host", "bad.example")["upgrade-dropped"]
            assert f'ProxyPass "http://127.0.0.1:{echo.port}/bad.example" upgrade=websocket' in dropped["fix"]
            assert [
                r.vhost for r in diagnose.scan_routes([str(server.conf_root / "conf-enabled" / "zz-site.conf")], {})
            ] == [
                ("good.example",),
                ("bad.example",),
            ]


def test_idle_timeout_1006(tmp_path: Path) -> None:
    with EchoServer() as echo:
        route = f'<Location "/ws">\n    ProxyPass "http://127.0.0.1:{echo.port}/" upgrade=websocket\n</Location>\n'
        conf = "Timeout 1\n" + route
        with _server(tmp_path, ("proxy", "proxy_http"), conf) as server:
            url = f"ws://127.0.0.1:{server.port}/ws"
            result = CliRunner().invoke(
                main, ["--json", "diagnose", "--apachectl", str(server.ctl), "--url", url, "--idle", "2"]
            )
            data = json.loads(result.stdout)
            assert data["probe"]["status"] == 101 and data["probe"]["close_code"] == 1006, data["probe"]
            found = {f["signature"]: f for f in data["findings"]}["idle-timeout"]
            assert "1 s" in found["cause"] and "timeout=3600" in found["fix"]
            healthy = diagnose.probe(url, idle=0.2)
            assert healthy.status == 101


def test_ah01382_reqtimeout_ends_a_tunnel(tmp_path: Path) -> None:
    # A tunnelling module that leaves mod_reqtimeout's filter on the connection: the apachews module as it was
    # before it removed it (this repository's history), built with apxs against this Apache.
    if shutil.which("apxs") is None:
        pytest.skip("no apxs (apache2-dev) to build the module with")
    try:
        source = module.source_at(module.BEFORE_FIXES)
    except BadInput as error:
        pytest.skip(error.message)
    so = torture.build_module(tmp_path, source)
    with EchoServer() as echo:
        conf = (
            "RequestReadTimeout header=20-40,minrate=500 body=1\nLogLevel warn reqtimeout:info\n"
            f'<Location "/ws">\n    ProxyPass "ws://127.0.0.1:{echo.port}/"\n</Location>\n'
        )
        server = debian_tree.make(tmp_path / "server")
        _enable(server, "proxy")
        (server.conf_root / "mods-enabled" / "zz-old-module.load").write_text(
            f"LoadModule proxy_wstunnel_module {so}\n"
        )
        _site(server, conf)
        server.start()
        try:
            url = f"ws://127.0.0.1:{server.port}/ws"
            found = _findings(server, "--url", url, "--idle", "2")
            cut = found["reqtimeout"]
            assert "AH01382: Request body read timeout" in cut["evidence"][-1]
            assert "body=1" in cut["cause"] and "RequestReadTimeout header=20-40,minrate=500 body=0" in cut["fix"]
            assert "idle-timeout" in found  # the client's side of it: 1006 after the silence
            assert "reqtimeout" in _findings(server)  # the log alone says it too
            _apply(server, cut["fix"])
            assert diagnose.probe(url, idle=2).echoed
        finally:
            server.stop()


def test_origin_check_403_and_a_wrong_path_404(tmp_path: Path) -> None:
    with EchoServer("refuse-403") as app:
        conf = f'<Location "/ws">\n    ProxyPass "http://127.0.0.1:{app.port}/" upgrade=websocket\n</Location>\n'
        with _server(tmp_path, ("proxy", "proxy_http"), conf) as server:
            refused = _findings(server, "--url", f"ws://127.0.0.1:{server.port}/ws", "--host", "example.org")
            origin = refused["origin-check"]
            assert "Origin: http://example.org" not in origin["cause"] and "ProxyPreserveHost On" in origin["fix"]
            assert "Origin http://example.org" in origin["evidence"][0]
            missing = _findings(server, "--url", f"ws://127.0.0.1:{server.port}/nothing")["wrong-path"]
            assert "no route serves /nothing" in missing["cause"] and "/ws ->" in missing["cause"]


def test_a_config_rendered_for_another_release(tmp_path: Path) -> None:
    from apachews import config, distros

    with EchoServer() as echo, _server(tmp_path, ("proxy", "proxy_http"), "") as server:
        rendering = config.render("generic", apache="2.4.41", distro="debian", backends=[echo.url])
        distros.place(rendering, server.conf_root)
        _restart(server)
        data = json.loads(CliRunner().invoke(main, ["--json", "diagnose", "--apachectl", str(server.ctl)]).stdout)
        [rendered] = data["rendered"]
        assert rendered["apache"] == "2.4.41" and rendered["tunnelling"] == "stock mod_proxy_wstunnel"
        found = {f["signature"]: f for f in data["findings"]}["rendered-for-another-server"]
        version = diagnose.read_server(server.ctl).version
        assert found["commands"][0].startswith(f"apachews config generic --apache {version} --distro debian")


def test_a_healthy_server_has_no_findings_and_exits_0(tmp_path: Path) -> None:
    with EchoServer() as echo:
        conf = f'<Location "/ws">\n    ProxyPass "http://127.0.0.1:{echo.port}/" upgrade=websocket\n</Location>\n'
        with _server(tmp_path, ("proxy", "proxy_http"), conf) as server:
            args = ["diagnose", "--apachectl", str(server.ctl), "--url", f"ws://127.0.0.1:{server.port}/ws"]
            result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "no known WebSocket failure found" in result.output and "101" in result.output


def test_only_loopback_urls(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="only talks to this machine"):
        diagnose.loopback_url("ws://192.0.2.1/ws")
    with pytest.raises(BadInput, match="ws:// or wss://"):
        diagnose.loopback_url("http://127.0.0.1/ws")
    assert diagnose.loopback_url("wss://[::1]/a?b=1") == ("wss", "::1", 443, "/a?b=1")
    with pytest.raises(BadInput, match="not a header value"):
        diagnose.probe("ws://127.0.0.1:9/ws", host="a\r\nX-Injected: 1")
    result = CliRunner().invoke(main, ["diagnose", "--url", "ws://example.org/ws"])
    assert result.exit_code == 2 and "only talks to this machine" in result.output


def test_probe_over_tls_with_an_idle_echo() -> None:
    from apachews import httpd, verify

    try:
        server = httpd.locate()
    except BadInput as error:
        pytest.skip(error.message)
    with verify.running_proxy(server) as proxy:
        if proxy.target.tls_port is None:
            pytest.skip("this Apache has no mod_ssl")
        result = diagnose.probe(f"wss://127.0.0.1:{proxy.target.tls_port}{proxy.target.ws_path}", idle=0.5)
    assert result.status == 101 and result.accepted and result.echoed, result
    assert result.origin == f"https://127.0.0.1:{proxy.target.tls_port}"


def test_the_same_failures_in_22_log_lines() -> None:
    # Apache 2.2 logs these without AH numbers ("proxy: ..."): the lines as 2.2.31's sources write them.
    view = diagnose.ServerView(
        control="/usr/sbin/apache2ctl",
        version="2.2.31",
        distro="debian",
        modules_dir="/usr/lib/apache2/modules",
        loaded={"proxy_module": "shared", "proxy_http_module": "shared"},
        config_files=[],
        error_logs=[],
        routes=[diagnose.Route("site.conf", 3, "ProxyPass", "/ws", "ws://127.0.0.1:8080/", [], 'ProxyPass "ws://..."')],
        syntax="Syntax OK",
        timeout={"Timeout": "300"},
        reqtimeout=[],
        log_level="info",
    )
    lines = [
        "[Sun Dec 06 03:41:05 2026] [warn] [client 127.0.0.1] proxy: No protocol handler was valid for the URL /ws. "
        "If you are using a DSO version of mod_proxy, make sure the proxy submodules are included in the "
        "configuration using LoadModule.",
        "[Sun Dec 06 03:41:06 2026] [error] [client 127.0.0.1] (70007)The timeout specified has expired: proxy: error "
        "reading status line from remote server 127.0.0.1:8080",
        "[Sun Dec 06 03:41:06 2026] [error] [client 127.0.0.1] proxy: Error reading from remote server returned by /ws",
        "[Sun Dec 06 03:41:07 2026] [error] (111)Connection refused: proxy: HTTP: attempt to connect to "
        "127.0.0.1:8080 (127.0.0.1) failed",
        "[Sun Dec 06 03:41:08 2026] [info] [client 127.0.0.1] Request body read timeout",
    ]
    found = {f.signature: f for f in diagnose.from_logs(view, lines)}
    assert set(found) == {"no-protocol-handler", "backend-read", "backend-down", "reqtimeout"}
    assert "mod_proxy_wstunnel is not loaded" in found["no-protocol-handler"].cause
    assert (
        "LoadModule proxy_wstunnel_module /usr/lib/apache2/modules/mod_proxy_wstunnel.so"
        in found["no-protocol-handler"].fix
    )
    assert "did not answer" in found["backend-read"].cause and "request: /ws" in found["backend-read"].evidence
    assert "127.0.0.1:8080" in found["backend-down"].cause
