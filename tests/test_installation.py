"""`Installation`, the one code that asks httpd about itself: against this machine's real Apache, and the
parsers against what 2.2 and vendor builds print."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from apachews import httpd, installation
from apachews.errors import BadInput

# 2.2.15 as CentOS 6 prints it: "(Unix)", the MPM capitalised, the -D lines quoted
V_22 = """Server version: Apache/2.2.15 (Unix)
Server built:   Jun 19 2018 15:45:13
Server's Module Magic Number: 20051115:25
Server MPM:     Prefork
  threaded:     no
Server compiled with....
 -D HTTPD_ROOT="/etc/httpd"
 -D SERVER_CONFIG_FILE="conf/httpd.conf"
"""


def test_parse_v_of_a_22_build() -> None:
    info = installation.parse_v(V_22)
    assert (info.version, info.vendor, info.mpm, info.threaded) == ("2.2.15", None, "prefork", False)
    assert info.mmn == "20051115:25" and info.mmn_major == 20051115
    assert info.defines == {"HTTPD_ROOT": "/etc/httpd", "SERVER_CONFIG_FILE": "conf/httpd.conf"}
    with pytest.raises(BadInput):
        installation.parse_v("nginx version: nginx/1.22")


def test_header_values() -> None:
    text = (
        "#define AP_SERVER_MAJORVERSION_NUMBER 2\n#define AP_SERVER_MINORVERSION_NUMBER 4\n"
        "#define AP_SERVER_PATCHLEVEL_NUMBER 62\n#define MODULE_MAGIC_NUMBER_MAJOR 20120211\n"
    )
    assert installation.header_values(text) == ("2.4.62", 20120211)
    assert installation.header_values("") == (None, None)


def test_asks_the_system_httpd_each_question_once(system_httpd: httpd.Httpd) -> None:
    asked: list[tuple[str, ...]] = []

    def run(argv, timeout):  # noqa: ANN001, ANN202
        asked.append(tuple(argv[1:]))
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)

    server = installation.Installation(system_httpd.binary, run)
    assert server.version() == system_httpd.version
    info = server.info()
    assert info.version == str(system_httpd.version) and info.mpm in (
        "prefork",
        "worker",
        "event",
        "unknown",
    )  # unknown: a shared MPM, no config
    assert "core.c" in server.compiled_files() and "so" in server.compiled_in()
    assert server.compiled_in() == system_httpd.compiled_in()
    server.info(), server.compiled_files()
    assert sorted(asked) == sorted({("-v",), ("-V",), ("-l",)})


def test_find_control_and_headers_of_this_machine() -> None:
    if not Path("/usr/sbin/apache2ctl").exists():
        pytest.skip("no apache2ctl here (apt-get install apache2)")
    server = installation.Installation.find("/usr/sbin/apache2ctl")
    assert server.info().vendor == "Debian"
    if not Path("/usr/include/apache2/ap_mmn.h").exists():
        pytest.skip("no Apache headers here (apt-get install apache2-dev)")
    version, mmn = installation.read_headers("/usr/include/apache2")
    assert version == server.info().version and mmn == server.info().mmn_major
