"""The throwaway-ServerRoot runner against a real Apache."""

from __future__ import annotations

import os
import socket

import pytest

from apachews import httpd
from apachews.errors import BadInput, JobFailed

PROXY = (
    "LoadModule proxy_module modules/mod_proxy.so\n"
    "LoadModule proxy_http_module modules/mod_proxy_http.so\n"
    "ProxyPass /app http://127.0.0.1:9/\n"
)


def test_locate_system(system_httpd: httpd.Httpd) -> None:
    assert system_httpd.version.family in ("2.2", "2.4")
    assert (system_httpd.modules_dir / "mod_proxy.so").exists()


def test_locate_rejects_a_non_httpd(tmp_path) -> None:
    with pytest.raises(BadInput):
        httpd.locate(prefix=tmp_path)


def test_syntax_ok(system_httpd: httpd.Httpd) -> None:
    with httpd.ServerRoot(system_httpd, {"proxy.conf": PROXY}) as root:
        assert root.syntax_check().ok


def test_syntax_error_names_file_and_line(system_httpd: httpd.Httpd) -> None:
    with httpd.ServerRoot(system_httpd, {"proxy.conf": PROXY + "ProxyPassBogus /x\n"}) as root:
        result = root.syntax_check()
    assert not result.ok
    assert (result.file, result.line) == ("proxy.conf", 4)
    assert "ProxyPassBogus" in (result.error or "")


def test_start_serves_and_stop_leaves_nothing(system_httpd: httpd.Httpd) -> None:
    with httpd.ServerRoot(system_httpd, {"proxy.conf": PROXY}) as root:
        root.start()
        with socket.create_connection(("127.0.0.1", root.port), timeout=5) as conn:
            conn.sendall(b"GET /app HTTP/1.0\r\n\r\n")
            assert conn.recv(64).startswith(b"HTTP/1.1 503")  # nothing listens on :9
        pid_dir, port = root.root, root.port
    assert not pid_dir.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_start_failure_reports_and_cleans_up(system_httpd: httpd.Httpd) -> None:
    with pytest.raises(JobFailed) as caught:
        with httpd.ServerRoot(system_httpd, {"bad.conf": "Nonsense here\n"}) as root:
            made = root.root
            root.start()
    assert "bad.conf" in caught.value.message
    assert not os.path.exists(made)
