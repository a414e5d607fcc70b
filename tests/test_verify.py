"""`apachews verify` against a real Apache with real WebSocket traffic, and proof that its checks can fail."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import build, sources, verify
from apachews import httpd as httpd_module
from apachews.cli import main
from apachews.distros import trees
from apachews.errors import BadInput
from apachews.httpd import Httpd, free_port
from apachews.lab import echo
from tests.cli_process import start_cli, wait_for_line
from tests.fixtures.apache import wrong_backend_ca
from tests.fixtures.sources import cache_root_of_tests


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own temporary directory for everything verify makes: what it leaves is told apart from the
    trees and Apaches of runs beside it (other tests, a `make demo` on the same machine)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _left_behind(root: Path) -> tuple[list[str], list[int]]:
    """The lab trees under `root`, and the processes still running from one."""
    trees = [n for n in os.listdir(root) if n.startswith(("apachews-root-", "apachews-verify-"))]
    return trees, _running_from(str(root))


def test_full_suite_is_green_on_the_system_apache_but_for_the_orphans_stock_leaves(system_httpd: Httpd) -> None:
    # Stock tunnelling (mod_proxy_http upgrade=websocket here) passes a vanished client's FIN on and waits for
    # its idle limit; at its end, or on a client's reset, it closes the backend with a FIN, which a backend
    # that never closes on EOF (broadwayd) leaves in CLOSE-WAIT. abrupt-disconnect shows it; the rest is green.
    report = verify.run(system_httpd)
    names = {check.name for check in report.checks}
    assert {"handshake", "echo-1mib", "abrupt-disconnect", "refuse-200", "refuse-403", "backend-dies"} <= names
    assert {check.name for check in report.checks if not check.passed} == {"abrupt-disconnect"}, report.table()
    orphans = next(check for check in report.checks if check.name == "abrupt-disconnect")
    assert "backend drained in 0." in orphans.detail  # the echo backend, which closes on EOF, is freed at once
    assert "CLOSE-WAIT" in orphans.detail and orphans.figure == verify.ORPHAN_WAIT_SECONDS


def test_stock_wstunnel_style_is_green_too(system_httpd: Httpd) -> None:
    report = verify.run(
        system_httpd,
        setup=verify.ServerSetup(prefer="wstunnel"),
        checks=["handshake", "echo-binary", "refuse-403", "idle"],
    )
    assert report.ok, report.table()
    assert report.tunnelling == "wstunnel"


def test_the_system_apache_is_verified_in_its_own_layout(system_httpd: Httpd) -> None:
    if trees.default_layout(system_httpd) != "debian":
        pytest.skip("the system Apache is not Debian's apache2")
    with verify.running_proxy(system_httpd, preset="gateone") as proxy:
        conf_root = proxy.server.server_root
        assert (conf_root / "sites-enabled" / "000-default.conf").is_symlink()  # the stock <VirtualHost>
        assert (conf_root / "mods-enabled" / "reqtimeout.load").is_symlink()  # mod_reqtimeout as shipped
        assert (conf_root / "conf-enabled" / "apachews-gateone.conf").is_symlink()  # like a2enconf


@pytest.mark.parametrize("layout", ["rhel", "gentoo", "bare"])
def test_other_layouts_carry_websockets_idle_sessions_included(system_httpd: Httpd, layout: str) -> None:
    checks = ["config-clean", "handshake", "idle", "app-routes", "refuse-403", "backend-dies", "error-log-clean"]
    report = verify.run(system_httpd, preset="jupyter", setup=verify.ServerSetup(layout=layout), checks=checks)
    assert report.ok and report.layout == layout, report.table()


def _edit_routes(old: str, new: str):
    def edit(files: dict[str, str]) -> dict[str, str]:
        return {name: text.replace(old, new) for name, text in files.items()}

    return edit


def test_checks_go_red_when_the_route_points_at_a_dead_backend(system_httpd: Httpd, own_tmp: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    report = verify.run(
        system_httpd,
        checks=["handshake", "echo-text", "error-log-clean"],
        edit=lambda files: {n: re.sub(r"127\.0\.0\.1:\d+\"", f'{dead}"', t) for n, t in files.items()},
    )
    results = {check.name: check.passed for check in report.checks}
    assert results == {"handshake": False, "echo-text": False, "error-log-clean": True}
    assert not report.ok and report.error_log is not None and report.error_log.exists()
    assert _left_behind(own_tmp) == ([], [])


def test_app_routes_goes_red_on_a_double_slash(system_httpd: Httpd) -> None:
    # What apachews rendered before: <Location "/vnc"> with ProxyPass "http://host:port/" (//vnc.html).
    good = verify.run(system_httpd, preset="novnc", checks=["app-routes"])
    assert good.ok, good.table()
    report = verify.run(
        system_httpd, preset="novnc", checks=["app-routes"], edit=lambda files: _slash_after_port(files)
    )
    assert not report.ok
    assert "backend got GET //vnc.html" in report.checks[0].detail


def _slash_after_port(files: dict[str, str]) -> dict[str, str]:
    return {name: re.sub(r'(ProxyPass(?:Reverse)? "http://127\.0\.0\.1:\d+)"', r'\1/"', t) for name, t in files.items()}


def test_config_clean_goes_red_on_a_worker_sharing_warning(system_httpd: Httpd) -> None:
    def share(files: dict[str, str]) -> dict[str, str]:
        out = dict(files)
        for name, text in files.items():
            match = re.search(r'ProxyPass "(http://127\.0\.0\.1:\d+)/?"', text)
            if match:  # a second route into the same worker, with a parameter it cannot have
                out[name] = (
                    text
                    + f'<Location "/shared">\n    ProxyPass "{match.group(1)}/shared" upgrade=websocket\n</Location>\n'
                )
        return out

    report = verify.run(system_httpd, preset="gateone", checks=["config-clean"], edit=share)
    assert not report.ok and "AH01146" in report.checks[0].detail


def test_tls_backend_goes_red_without_sslproxyengine(system_httpd: Httpd) -> None:
    if not system_httpd.has_module("ssl"):
        pytest.skip("no mod_ssl in the system Apache")
    report = verify.run(system_httpd, checks=["tls-backend"], edit=_edit_routes("SSLProxyEngine on", ""))
    assert not report.ok, report.table()
    assert verify.run(system_httpd, checks=["tls-backend", "tls-front"]).ok


TLS_CASES = [("gateone-wss", None), ("broadway-ssl", None), ("broadway-ssl", "debian")]


@pytest.mark.parametrize(("case", "layout"), TLS_CASES)
def test_the_tls_cases_pass_on_the_system_apache_with_our_module(
    system_httpd: Httpd, host_module: Path, case: str, layout: str | None
) -> None:
    if not system_httpd.has_module("ssl"):
        pytest.skip("no mod_ssl in the system Apache")
    report = verify.run(system_httpd, preset=case, setup=verify.ServerSetup(layout=layout, module=host_module))
    assert report.ok, report.table()
    assert report.layout == (layout or verify.CASES[case].layout or "debian")
    ran = {check.name for check in report.checks if not check.skipped}
    assert {"tls-front", "tls-abrupt-disconnect", "app-routes"} <= ran
    if case == "gateone-wss":  # every check, the app behind wss://: abrupt-disconnect is the TLS-backend one
        assert {"abrupt-disconnect", "tls-backend", "tls-backend-abrupt-disconnect", "echo-1mib"} <= ran


def test_gateone_wss_with_stock_tunnelling_is_red_only_for_the_half_open_backend(system_httpd: Httpd) -> None:
    # Stock tunnelling closes a backend that never closes on EOF with a FIN only: it stays in CLOSE-WAIT.
    if not system_httpd.has_module("ssl"):
        pytest.skip("no mod_ssl in the system Apache")
    report = verify.run(system_httpd, preset="gateone-wss")
    assert {check.name for check in report.checks if not check.passed} == {"abrupt-disconnect"}, report.table()
    assert "CLOSE-WAIT" in next(c for c in report.checks if c.name == "abrupt-disconnect").detail


def test_an_unverified_tls_backend_gives_the_error_the_config_notes_name(system_httpd: Httpd) -> None:
    if not system_httpd.has_module("ssl"):
        pytest.skip("no mod_ssl in the system Apache")
    report = verify.run(system_httpd, preset="gateone-wss", checks=["echo-text"], edit=wrong_backend_ca)
    assert not report.ok and report.error_log is not None
    text = report.error_log.read_text(errors="replace")
    assert "Certificate Verification: Error (18)" in text and "Error during SSL Handshake with remote server" in text


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


def test_server_setup_refuses_what_needs_no_server(tmp_path: Path) -> None:
    assert verify.ServerSetup(max_websockets="40").max_websockets == 40  # the command line's text, parsed once
    with pytest.raises(BadInput, match="verify opens at most"):
        verify.ServerSetup(max_websockets=verify.CAPACITY_MAX_WEBSOCKETS + 1)
    with pytest.raises(BadInput, match="unknown layout 'suse'"):
        verify.ServerSetup(layout="suse")
    with pytest.raises(BadInput, match="no module at"):
        verify.ServerSetup(module=tmp_path / "mod_proxy_wstunnel.so")


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


@pytest.mark.parametrize("layout", ["bare", "debian"])
def test_nothing_left_behind(system_httpd: Httpd, layout: str, own_tmp: Path) -> None:
    report = verify.run(system_httpd, checks=["echo-text"], setup=verify.ServerSetup(layout=layout))
    assert report.ok, report.table()
    assert _left_behind(own_tmp) == ([], [])


def _httpd_roots(parent: int) -> set[str]:
    """The ServerRoots (-d) of the httpd processes `parent` started."""
    roots = set()
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if f"\nPPid:\t{parent}\n" in status and "-d" in argv:
            roots.add(argv[argv.index("-d") + 1])
    return roots


def _running_from(root: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if entry.name.isdigit() and any(arg == root or arg.startswith(root + "/") for arg in argv):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("layout", ["bare", "debian"])
def test_sigterm_stops_the_apache_and_removes_its_root(system_httpd: Httpd, layout: str) -> None:
    # CI runners, `timeout` and `docker stop` send SIGTERM: it must clean up as Ctrl-C does.
    process = start_cli(
        *["verify", "--httpd", str(system_httpd.binary), "--layout", layout, "--check", "idle"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    try:
        said = wait_for_line(process.stderr, "check idle")  # Apache is up; the idle check outwaits a timeout
        roots = _httpd_roots(process.pid)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        err = said.encode() + err
    finally:
        if process.poll() is None:
            process.kill()
    assert len(roots) == 1, roots
    assert process.returncode == 143, err.decode()
    assert "terminated (SIGTERM)" in err.decode()
    (root,) = roots
    assert not _running_from(root) and not Path(root).exists()


@pytest.fixture(scope="module")
def built_22(base_image: str, httpd_git: Path) -> tuple[Httpd, Path]:
    """httpd 2.2.31 with the apachews module, built from the git tag (kept in the test cache between runs)."""
    result = build.build(
        "2.2.31", source=sources.SourceOptions(git=httpd_git), with_httpd=True, out_dir=cache_root_of_tests() / "dist"
    )
    return httpd_module.locate(prefix=result.dist / "httpd"), result.module


def _websocket_location_last(files: dict[str, str]) -> dict[str, str]:
    """What apachews rendered for 2.2 before: <Location "/gateone"> first, its "/gateone/ws" after it."""

    def reorder(text: str) -> str:
        blocks = re.findall(r"\n# [^\n]*\n<Location \"[^\"]+\">.*?</Location>\n", text, flags=re.DOTALL)
        if len(blocks) < 2:
            return text
        head = text
        for block in blocks:
            head = head.replace(block, "")
        return head + "".join(sorted(blocks, key=len))

    return {name: reorder(text) for name, text in files.items()}


def test_app_routes_goes_red_on_22_when_the_websocket_route_comes_second(built_22: tuple[Httpd, Path]) -> None:
    # 2.2 takes the first matching ProxyPass: the HTTP route of /gateone then swallows /gateone/ws.
    server, module = built_22
    good = verify.run(server, preset="gateone", setup=verify.ServerSetup(module=module), checks=["app-routes"])
    assert good.ok and good.layout == "plain", good.table()
    swapped = verify.run(
        server,
        preset="gateone",
        setup=verify.ServerSetup(module=module),
        checks=["app-routes"],
        edit=_websocket_location_last,
    )
    assert not swapped.ok
    assert "GET /gateone/ws (plain HTTP)" in swapped.checks[0].detail, swapped.table()


def test_verify_live_runs_through_a_running_server_and_leaves_its_config(tmp_path: Path) -> None:
    from tests import debian_tree

    if debian_tree.available() is not None:
        pytest.skip(str(debian_tree.available()))
    with debian_tree.running(tmp_path / "server") as server:
        before = debian_tree.snapshot(server.conf_root)
        result = CliRunner().invoke(
            main,
            [
                "--json",
                "verify",
                "--live",
                "--apachectl",
                str(server.ctl),
                "--check",
                "handshake",
                "--check",
                "echo-text",
            ],
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["passed"] == 2
        assert debian_tree.snapshot(server.conf_root) == before


@pytest.mark.parametrize("prefer", ["wstunnel", "http-upgrade"])
def test_socketio_balanced_keeps_each_session_on_its_node(system_httpd: Httpd, prefer: str) -> None:
    # Long-polling GETs and the WebSocket upgrade of one session, sent with its ROUTEID cookie, reach one member
    # (the apachews module's style: test_module's every-preset test; 2.2: test_apps' built_22 run).
    report = verify.run(
        system_httpd, preset="socketio-balanced", setup=verify.ServerSetup(prefer=prefer), checks=["app-routes"]
    )
    assert report.ok, report.table()


def test_sticky_check_goes_red_without_the_route_cookie(system_httpd: Httpd) -> None:
    report = verify.run(
        system_httpd,
        preset="socketio-balanced",
        checks=["app-routes"],
        edit=_edit_routes("    ProxySet stickysession=ROUTEID\n", ""),
    )
    assert not report.ok and "without a ROUTEID cookie" in report.checks[0].detail, report.table()
