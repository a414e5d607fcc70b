"""`apachews doctor` against a real Debian apache2: a throwaway copy of this machine's /etc/apache2
(tests/debian_tree.py) read through Debian's own apache2ctl. The copy is edited to prove doctor reads the
server's real config, not defaults or this machine's /etc/apache2.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import doctor, installation, module
from apachews.binary import GlibcVersion, inspect_module
from apachews.cli import main
from apachews.errors import BadInput
from tests import debian_tree

pytestmark = pytest.mark.skipif(debian_tree.available() is not None, reason=str(debian_tree.available()))


@pytest.fixture
def tree(tmp_path: Path) -> debian_tree.DebianServer:
    return debian_tree.make(tmp_path / "server")


def _apache2_v() -> str:
    return subprocess.run(["/usr/sbin/apache2", "-v"], capture_output=True, text=True, check=True).stdout


def test_reads_version_mpm_mmn_and_layout_of_the_server(tree) -> None:
    report = doctor.examine(tree.ctl)
    assert report.version == installation.parse_version(_apache2_v())
    assert report.vendor == "Debian"
    assert report.mpm == "event" and report.threaded
    version, mmn_major = installation.read_headers("/usr/include/apache2")
    assert report.mmn and report.mmn.split(":")[0] == str(mmn_major) and version == report.version
    # The copy's own root, found through apache2ctl (not the compiled-in /etc/apache2).
    assert report.distro == "debian"
    assert report.conf_root == str(tree.conf_root)
    assert report.pid_file == str(tree.root / "run" / "apache2.pid")
    assert report.error_log == str(tree.error_log)
    assert report.modules_dir == "/usr/lib/apache2/modules"
    assert str(tree.conf_root / "mods-enabled" / "mpm_event.conf") in report.config_files


def test_reads_limits_timeouts_and_proxy_modules_from_the_config(tree) -> None:
    etc = tree.conf_root
    mpm = etc / "mods-available" / "mpm_event.conf"
    mpm.write_text(re.sub(r"MaxRequestWorkers\s+\d+", "MaxRequestWorkers 77", mpm.read_text()))
    (etc / "mods-enabled" / "proxy.load").symlink_to("../mods-available/proxy.load")
    (etc / "mods-enabled" / "proxy_wstunnel.load").symlink_to("../mods-available/proxy_wstunnel.load")
    (etc / "conf-enabled" / "zz-timeouts.conf").write_text("ProxyTimeout 900\n")
    reqtimeout = etc / "mods-available" / "reqtimeout.conf"
    reqtimeout.write_text(reqtimeout.read_text() + "\nRequestReadTimeout header=5\n")
    report = doctor.examine(tree.ctl)
    # httpd rounds MaxRequestWorkers down to a multiple of ThreadsPerChild (25), and doctor says so.
    assert report.max_workers == 75 and report.max_workers_source == "MaxRequestWorkers 77"
    assert "75 workers" in report.text() and "75 take them all" in report.text()
    assert any("not a multiple of ThreadsPerChild 25: lowered to 75" in w for w in report.warnings)
    assert report.proxy_modules == ["proxy", "proxy_wstunnel"]
    assert report.reqtimeout[-1] == "header=5"
    assert report.timeout["ProxyTimeout"] == "900"
    assert not any("mod_proxy is not loaded" in w for w in report.warnings)


def test_a_directive_in_another_mpm_section_does_not_count(tree) -> None:
    # 2.2-style config: one section per MPM; only the running MPM's (event) applies.
    (tree.conf_root / "conf-enabled" / "zz-mpms.conf").write_text(
        "<IfModule prefork.c>\n    MaxClients 11\n</IfModule>\n"
        "<IfModule mpm_event_module>\n    MaxRequestWorkers 75\n</IfModule>\n"
        "<IfModule !mod_mpm_event.c>\n    MaxRequestWorkers 100\n</IfModule>\n"
    )
    assert doctor.examine(tree.ctl).max_workers == 75


def test_apxs_headers_are_compared_with_the_server(tree) -> None:
    report = doctor.examine(tree.ctl)
    assert report.apxs is not None and report.apxs.matches, report.apxs
    # A server of another version: the same headers no longer match it.
    other = doctor.inspect_apxs(report.apxs.path, "2.2.22", "20051115:30")
    assert not other.matches and "do NOT match" in other.detail


def test_advice_for_this_server_and_json(tree) -> None:
    result = CliRunner().invoke(main, ["doctor", "--apachectl", str(tree.ctl), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and data["version"] == doctor.examine(tree.ctl).version
    assert data["tunnelling"] == "mod_proxy_http upgrade=websocket"
    assert data["next_commands"][0] == f"apachews install generic --apachectl {tree.ctl} --dry-run"
    text = CliRunner().invoke(main, ["doctor", "--apachectl", str(tree.ctl)]).output
    assert "Needs: nothing to build" in text and "Next:" in text
    assert len(text.splitlines()) <= 25  # one screen


def test_server_defaults(tree) -> None:
    defaults = doctor.server_defaults(tree.ctl)
    assert (defaults.distro, defaults.mpm) == ("debian", "event")
    assert defaults.apache == doctor.examine(tree.ctl).version
    assert str(tree.ctl) in defaults.note()


def test_not_an_apache(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not look like Apache"):
        doctor.examine("/bin/true")
    result = CliRunner().invoke(main, ["doctor", "--apachectl", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no " in result.output


def test_whose_build_it_is(tree) -> None:
    # This machine's apache2ctl belongs to Debian's apache2 package; our wrapper of the copy to no package.
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "apache2"], capture_output=True, text=True, check=True
    ).stdout
    assert doctor.owning_package(debian_tree.SYSTEM_CTL) == f"apache2 {version}"
    assert doctor.owning_package(tree.ctl) is None
    assert doctor.examine(debian_tree.SYSTEM_CTL).package == f"apache2 {version}"  # reads, changes nothing


def test_platform_and_whether_a_module_loads(tree, tmp_path) -> None:
    report = doctor.examine(tree.ctl)
    machine = subprocess.run(["uname", "-m"], capture_output=True, text=True, check=True).stdout.strip()
    libc = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True, check=True).stdout
    assert report.machine == machine and report.glibc == libc.split()[-1]
    if shutil.which("apxs") is None:
        pytest.skip("apxs not installed (apt-get install apache2-dev)")
    built = module.build_with_apxs(tmp_path).so
    assert doctor.examine(tree.ctl, module=built).module["loads"] is True
    # The same module against this server as if its C library were Debian 11's (glibc 2.31).
    binary = inspect_module(built)
    report.glibc = "2.31"
    verdict = doctor.check_module(report, binary)
    if binary.glibc_floor <= GlibcVersion.parse("2.31"):
        assert verdict.loads
    else:
        assert not verdict.loads and f"needs glibc {binary.glibc_floor}, the server has 2.31" in verdict.reasons[0]
        assert verdict.build == f"apachews build --apache {report.version} --glibc 2.31"
