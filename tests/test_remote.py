"""The server stage over SSH against a real sshd in front of Debian 11's own apache2 (glibc 2.31, no Python):
doctor, whether a module loads, install / verify --live / uninstall, and the rollback when the connection
drops halfway (tests/fixtures/remote.py)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import transaction, verify
from apachews.cli import main
from apachews.errors import JobFailed


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_doctor_reads_debian11_over_ssh(ssh_server) -> None:
    code, out = _cli("doctor", "--host", ssh_server.host, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["host"] == "debian11" and report["version"] == "2.4.62"
    assert report["vendor"] == "Debian" and report["mpm"] == "event" and report["distro"] == "debian"
    assert report["conf_root"] == "/etc/apache2" and report["modules_dir"] == "/usr/lib/apache2/modules"
    assert report["glibc"] == "2.31" and report["machine"] == "x86_64"
    assert report["package"].startswith("apache2 2.4.62")
    code, text = _cli("doctor", "--host", ssh_server.host)
    assert code == 0 and "debian11: Apache 2.4.62 (Debian build), MPM event" in text
    assert "platform    x86_64, glibc 2.31" in text


def test_doctor_module_says_whether_it_loads_there(ssh_server, portable_module, host_module) -> None:
    code, out = _cli("doctor", "--host", ssh_server.host, "--module", str(portable_module), "--json")
    assert code == 0, out
    assert json.loads(out)["module"]["loads"] is True
    code, out = _cli("doctor", "--host", ssh_server.host, "--module", str(host_module), "--json")
    verdict = json.loads(out)["module"]
    assert code == 1 and verdict["loads"] is False
    (reason,) = verdict["reasons"]
    assert "needs glibc 2.3" in reason and "the server has 2.31" in reason and "GLIBC_2.34" in reason
    assert verdict["build"] == "apachews build --apache 2.4.62 --target debian11"


def test_install_refuses_a_module_the_server_cannot_load(ssh_server, host_module) -> None:
    before = ssh_server.tree_hash()
    modules = ssh_server.tree_hash("/usr/lib/apache2/modules")
    code, out = _cli("install", "jupyter", "--host", ssh_server.host, "--module", str(host_module))
    assert code == 2, out
    assert "would not load into Apache 2.4.62" in out and "GLIBC_2.34" in out
    assert "apachews build --apache 2.4.62 --target debian11" in out
    assert ssh_server.tree_hash() == before and ssh_server.tree_hash("/usr/lib/apache2/modules") == modules
    assert ssh_server.exec("ls /var/lib/apachews 2>/dev/null || true") == ""


def test_sudo_and_fleets(ssh_server) -> None:
    code, out = _cli("doctor", "--host", ssh_server.admin, "--sudo", "--host", ssh_server.host, "--json")
    assert code == 0, out
    hosts = json.loads(out)["hosts"]
    assert [h["host"] for h in hosts] == [ssh_server.admin, ssh_server.host]
    assert all(h["ok"] and h["version"] == "2.4.62" for h in hosts)
    code, out = _cli("doctor", "--host", "nobody@127.0.0.1:1", "--host", ssh_server.host, "--json")
    hosts = json.loads(out)["hosts"]
    assert code == 1 and not hosts[0]["ok"] and "cannot reach" in hosts[0]["error"] and hosts[1]["ok"]


def test_install_then_uninstall_leaves_etc_apache2_as_it_was(ssh_server, portable_module) -> None:
    before = ssh_server.tree_hash()
    modules = ssh_server.tree_hash("/usr/lib/apache2/modules")
    pid = ssh_server.exec("cat /var/run/apache2/apache2.pid").strip()
    code, out = _cli("install", "jupyter", "--host", ssh_server.host, "--module", str(portable_module), "--dry-run")
    assert code == 0 and "mods-enabled/proxy_wstunnel_apachews.load" in out and ssh_server.tree_hash() == before
    code, out = _cli("install", "jupyter", "--host", ssh_server.host, "--module", str(portable_module), "--json")
    assert code == 0, out
    done = json.loads(out)
    assert done["reloaded"] and done["manifest"] == "debian11:" + ssh_server.exec("ls /var/lib/apachews/*.json").strip()
    # A graceful reload (same parent), and the parent mapped our module.
    assert ssh_server.exec("cat /var/run/apache2/apache2.pid").strip() == pid
    assert "mod_proxy_wstunnel_apachews.so" in ssh_server.exec(f"cat /proc/{pid}/maps")
    assert ssh_server.exec("ls -A /var/lib/apachews 2>/dev/null || true").split() == [Path(done["manifest"]).name]
    # Uninstall from "another machine": nothing local is needed, the manifest is on the server.
    code, out = _cli("uninstall", "--host", ssh_server.host)
    assert code == 0, out
    assert ssh_server.tree_hash() == before and ssh_server.tree_hash("/usr/lib/apache2/modules") == modules
    assert ssh_server.exec("ls -A /var/lib/apachews 2>/dev/null || true") == ""
    assert ssh_server.exec("cat /var/run/apache2/apache2.pid").strip() == pid


def _wait(condition, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _hash_between_changes(server) -> str | None:
    """The tree's hash, or None when a file went while it was read (the server is rolling back right now)."""
    try:
        return server.tree_hash()
    except AssertionError:
        return None


def _drop_connection(change: transaction.Transaction) -> None:
    """The network goes: the ssh client and its master connection die without a word to the server."""
    change.process.kill()
    change.host.close()


def test_a_connection_dropped_mid_install_is_rolled_back_by_the_server(ssh_server, portable_module, monkeypatch):
    before = ssh_server.tree_hash()
    pid = ssh_server.exec("cat /var/run/apache2/apache2.pid").strip()
    seen = {}

    def drop(change: transaction.Transaction) -> None:
        # The server has placed every file, passed apachectl -t and reloaded onto the new config.
        seen["applied"] = ssh_server.tree_hash()
        seen["mapped"] = "mod_proxy_wstunnel_apachews.so" in ssh_server.exec(f"cat /proc/{pid}/maps")
        _drop_connection(change)
        raise JobFailed("connection lost (test)")

    monkeypatch.setattr(transaction.Transaction, "commit", drop)
    code, out = _cli("install", "jupyter", "--host", ssh_server.host, "--module", str(portable_module))
    assert code == 1 and "connection lost" in out
    assert seen["applied"] != before and seen["mapped"]
    assert _wait(lambda: ssh_server.exec("ls -A /var/lib/apachews 2>/dev/null || true") == ""), (
        "the server never rolled back"
    )
    assert ssh_server.tree_hash() == before
    assert not ssh_server.exec("ls /usr/lib/apache2/modules | grep apachews || true")
    # Reloaded back onto the old config: same parent, our module unloaded.
    assert ssh_server.exec("cat /var/run/apache2/apache2.pid").strip() == pid
    assert _wait(lambda: "mod_proxy_wstunnel_apachews.so" not in ssh_server.exec(f"cat /proc/{pid}/maps"))


def test_a_transaction_killed_on_the_server_is_rolled_back_by_the_next_run(ssh_server, portable_module, monkeypatch):
    before = ssh_server.tree_hash()

    def crash(change: transaction.Transaction) -> None:
        ssh_server.exec("kill -9 $(cat /var/lib/apachews/txn-*/pid)")  # the script dies with no chance to undo
        _drop_connection(change)
        raise JobFailed("the server went away (test)")

    with monkeypatch.context() as patched:
        patched.setattr(transaction.Transaction, "commit", crash)
        code, out = _cli("install", "jupyter", "--host", ssh_server.host, "--module", str(portable_module))
    assert code == 1, out
    assert ssh_server.tree_hash() != before and ssh_server.exec("ls /var/lib/apachews/txn-*/journal")
    code, out = _cli("uninstall", "--host", ssh_server.host)  # the next run finds the journal first
    assert code == 2 and "no apachews install" in out
    assert ssh_server.tree_hash() == before and ssh_server.exec("ls -A /var/lib/apachews 2>/dev/null || true") == ""


def test_install_verify_live_uninstall_over_ssh(ssh_server, portable_module) -> None:
    before = ssh_server.tree_hash()
    code, out = _cli("install", "jupyter", "--host", ssh_server.host, "--module", str(portable_module))
    assert code == 0, out
    installed = ssh_server.tree_hash()
    code, out = _cli("verify", "--live", "--host", ssh_server.host, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"], out
    assert report["host"] == "debian11" and "upgrade" not in report["tunnelling"]
    checks = {check["name"]: check for check in report["checks"]}
    assert set(checks) == set(verify.CHECKS)
    assert all(check["passed"] for check in checks.values() if not check["skipped"]), report["checks"]
    assert not checks["error-log-clean"]["skipped"] and not checks["echo-text"]["skipped"]
    assert ssh_server.tree_hash() == installed  # the temporary route is gone again
    code, out = _cli("uninstall", "--host", ssh_server.host)
    assert code == 0, out
    assert ssh_server.tree_hash() == before


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_verify_live_puts_the_config_back_when_interrupted(ssh_server, signum, code) -> None:
    before = ssh_server.tree_hash()
    live_conf = "/etc/apache2/conf-enabled/apachews-live-verify.conf"
    process = subprocess.Popen(
        [sys.executable, "-m", "apachews", "verify", "--live", "--host", ssh_server.host],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # The route is in and the server listens on it: the checks are running.
        assert _wait(lambda: ssh_server.exec(f"cat {live_conf} 2>/dev/null || true") or process.poll() is not None)
        port = re.search(r"Listen 127.0.0.1:(\d+)", ssh_server.exec(f"cat {live_conf}")).group(1)
        assert _wait(lambda: f"127.0.0.1:{port}" in ssh_server.exec("ss -ltn"))
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, err.decode()
    assert ssh_server.tree_hash() == before and ssh_server.exec("ls -A /var/lib/apachews 2>/dev/null || true") == ""
    assert _wait(lambda: f"127.0.0.1:{port}" not in ssh_server.exec("ss -ltn"))  # reloaded without it


def test_config_takes_the_remote_servers_view(ssh_server) -> None:
    code, out = _cli("config", "jupyter", "--host", ssh_server.host, "--max-websockets", "200", "--json")
    assert code == 0, out
    rendering = json.loads(out)
    assert rendering["apache"] == "2.4.62" and rendering["distro"] == "debian"
    assert any("debian11:/usr/sbin/apache2ctl" in note for note in rendering["notes"])
    assert any("sized from the settings of the server at debian11:" in note for note in rendering["notes"])


def test_install_and_uninstall_as_a_sudo_user(ssh_server, portable_module) -> None:
    before = ssh_server.tree_hash()
    code, out = _cli("install", "jupyter", "--host", ssh_server.admin, "--sudo", "--module", str(portable_module))
    assert code == 0, out
    # The routes went into the only vhost (000-default): the file it includes, and the vhost's own file, root's.
    owners = ssh_server.exec(
        "stat -c %U /etc/apache2/apachews/jupyter.conf /etc/apache2/sites-available/000-default.conf"
    )
    assert owners.split() == ["root", "root"]
    code, out = _cli("install", "jupyter", "--host", ssh_server.admin, "--module", str(portable_module))
    assert code != 0  # without --sudo, the admin user cannot change the server
    code, out = _cli("uninstall", "--host", ssh_server.admin, "--sudo")
    assert code == 0, out
    assert ssh_server.tree_hash() == before


def test_a_connection_gone_silent_is_rolled_back_by_the_server(ssh_server, portable_module, monkeypatch):
    """A cut cable: no FIN reaches the server, its sshd keeps the session; apachews' heartbeat stops."""
    before = ssh_server.tree_hash()
    monkeypatch.setattr(transaction, "SILENCE", 3)
    restored = {}

    def hang(change: transaction.Transaction) -> None:
        change._stop.set()  # this side goes quiet; the connection itself stays open
        change.process.send_signal(signal.SIGSTOP)
        try:
            restored["tree"] = _wait(lambda: _hash_between_changes(ssh_server) == before, 30)
        finally:
            change.process.send_signal(signal.SIGCONT)
            _drop_connection(change)
        raise JobFailed("the network went away (test)")

    monkeypatch.setattr(transaction.Transaction, "commit", hang)
    code, out = _cli("install", "jupyter", "--host", ssh_server.host, "--module", str(portable_module))
    assert code == 1 and restored["tree"], out
    assert _wait(lambda: ssh_server.exec("ls -A /var/lib/apachews 2>/dev/null || true") == "")
