"""The lab that verify, torture, bench and live share: its client against its backends, the route writer in
each tunnelling style (and httpd -t on what it writes), and the runner's sweep of a tree's processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from apachews.catalogue import Tunnelling
from apachews.httpd import Httpd, ServerRoot
from apachews.lab import client, processes, routes
from apachews.lab.echo import EchoServer
from apachews.lab.holding import HoldingBackend


def test_route_writer_speaks_each_style() -> None:
    lab = [routes.Route("/t/echo", "ws://127.0.0.1:8001/"), routes.Route("/t/tls/", "wss://127.0.0.1:8002/", 2)]
    ws = routes.write(lab, Tunnelling.WSTUNNEL, comment="test")
    assert '<Location "/t/echo">\n    ProxyPass "ws://127.0.0.1:8001"\n</Location>' in ws
    assert 'ProxyPass "wss://127.0.0.1:8002/" timeout=2' in ws and "upgrade=" not in ws
    http = routes.write(lab, Tunnelling.HTTP_UPGRADE, comment="test", nohalfclose=True, fallback_off=True)
    assert 'ProxyPass "http://127.0.0.1:8001" upgrade=websocket\n    SetEnv proxy-nohalfclose 1' in http
    assert 'ProxyPass "https://127.0.0.1:8002/" upgrade=websocket timeout=2' in http
    assert http.endswith("ProxyWebsocketFallbackToProxyHttp Off\n")
    assert routes.write(lab, Tunnelling.APACHEWS, comment="test", handoff=True).count("ProxyWebsocketHandoff On") == 2


@pytest.mark.parametrize("style", [Tunnelling.WSTUNNEL, Tunnelling.HTTP_UPGRADE])
def test_what_the_lab_writes_passes_httpd_t(system_httpd: Httpd, style: Tunnelling, tmp_path: Path) -> None:
    load = "".join(
        f"<IfModule !{name}_module>\n    LoadModule {name}_module modules/mod_{name}.so\n</IfModule>\n"
        for name in ("proxy", "proxy_http", "proxy_wstunnel", "env")
    )
    written = routes.write(
        [routes.Route("/lab/ws", "ws://127.0.0.1:9/"), routes.Route("/lab/tls", "wss://127.0.0.1:9/")],
        style,
        comment="test",
        tls_ca=tmp_path / "ca.pem",
        nohalfclose=True,
    )
    with ServerRoot(system_httpd, {"lab.conf": load + written}) as root:
        checked = root.syntax_check()
    assert checked.clean, checked.output


def test_the_client_meets_the_backends() -> None:
    with EchoServer() as echo, HoldingBackend() as holding:
        for port in (echo.port, holding.port):
            answer = client.handshake(port, "/")
            assert answer.status == 101 and answer.accepted, answer
            client.reset(answer.sock)
        stream, status, _, _ = client.open_ws(echo.port, "/")
        try:
            assert status == 101 and client.echo_frame(stream, b"through the lab client")
        finally:
            stream.close()
        assert client.status_line(echo.port, "/page").startswith("HTTP/1.1 200")


def test_sweep_ends_what_runs_from_a_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    left = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; print(flush=True); time.sleep(60)", str(root / "conf")],
        stdout=subprocess.PIPE,
    )
    try:
        assert left.stdout is not None and left.stdout.readline()  # it runs (an event, not a sleep)
        assert processes.sweep(root) == [left.pid]
        assert left.wait(timeout=5) < 0 and not processes.processes_of(root)
    finally:
        left.kill()
        left.wait()
