"""`apachews verify` against a real Apache with real WebSocket traffic, and proof that its checks can fail."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import echo, verify
from apachews.cli import main
from apachews.httpd import Httpd


def _apache_children() -> set[int]:
    mine = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"apachews-root-" in cmdline:
                mine.add(int(entry.name))
    return mine


def test_full_suite_is_green_on_the_system_apache(system_httpd: Httpd) -> None:
    report = verify.run(system_httpd)
    assert report.ok, report.table()
    names = {check.name for check in report.checks}
    assert {"handshake", "echo-1mib", "abrupt-disconnect", "refuse-200", "refuse-403", "backend-dies"} <= names
    reset = next(check for check in report.checks if check.name == "abrupt-disconnect")
    assert reset.figure is not None and reset.figure < 1.0


def test_stock_wstunnel_style_is_green_too(system_httpd: Httpd) -> None:
    report = verify.run(system_httpd, prefer="wstunnel", checks=["handshake", "echo-binary", "refuse-403"])
    assert report.ok, report.table()
    assert report.tunnelling == "mod_proxy_wstunnel"


def test_checks_go_red_when_ws_points_at_a_refusing_backend(
    system_httpd: Httpd, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = verify.proxy_snippets

    def misrouted(apache, preset, backends, prefer):
        return real(apache, preset, {**backends, "echo": backends["refuse-403"]}, prefer)

    monkeypatch.setattr(verify, "proxy_snippets", misrouted)
    report = verify.run(system_httpd, checks=["handshake", "echo-text", "error-log-clean"])
    results = {check.name: check.passed for check in report.checks}
    assert results == {"handshake": False, "echo-text": False, "error-log-clean": True}
    assert not report.ok and report.error_log is not None and report.error_log.exists()
    assert not _apache_children()


def test_abrupt_disconnect_goes_red_when_backend_sockets_linger(
    system_httpd: Httpd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backend whose socket count never drops to zero stands in for a proxy that leaks connections.
    monkeypatch.setattr(echo.EchoServer, "open_connections", lambda self: 1)
    report = verify.run(system_httpd, checks=["abrupt-disconnect"])
    assert not report.ok
    assert "still open" in report.checks[0].detail


def test_accept_value_is_rfc6455() -> None:
    # The example handshake of RFC 6455, section 1.3.
    assert verify.expected_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_cli_json_and_exit_codes(system_httpd: Httpd) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", "--json", "--check", "echo-text", "--check", "plain-get"])
    assert ok.exit_code == 0, ok.output
    payload = json.loads(ok.stdout)
    assert payload["ok"] is True and payload["passed"] == 2
    bad = runner.invoke(main, ["verify", "--check", "no-such-check"])
    assert bad.exit_code == 2 and "unknown check" in bad.output
    missing = runner.invoke(main, ["verify", "--module", "/nonexistent/mod.so"])
    assert missing.exit_code == 2


def test_nothing_left_behind(system_httpd: Httpd) -> None:
    before = set(os.listdir("/tmp"))
    verify.run(system_httpd, checks=["echo-text"])
    assert not [name for name in set(os.listdir("/tmp")) - before if name.startswith("apachews-root-")]
    assert not _apache_children()
