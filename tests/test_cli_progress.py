"""Progress through a real subprocess whose stderr is a pipe (as in CI), and a local directory or file:// URL
as the Apache mirror."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apachews.progress import LineProgress, Progress, TerminalProgress, describe_build_line, for_terminal
from tests.fixtures.sources import TEST_HTTPD


def run(*args: str, cache: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apachews", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "APACHEWS_CACHE": str(cache), **(env or {})},
        timeout=300,
    )


@pytest.fixture
def local_mirror(tmp_path: Path, httpd24_tarball: Path) -> Path:
    """A directory laid out like dist/httpd/, holding one release (no HTTP server)."""
    mirror = tmp_path / "mirror dir"  # a space: the file:// URL must quote it
    mirror.mkdir()
    shutil.copy(httpd24_tarball, mirror / httpd24_tarball.name)
    return mirror


@pytest.mark.parametrize("form", ["dir", "file-url"])
def test_local_directory_or_file_url_as_mirror(local_mirror: Path, tmp_path: Path, form: str):
    cache = tmp_path / "cache"
    mirror = str(local_mirror) if form == "dir" else local_mirror.as_uri()
    done = run("fetch", "--apache", TEST_HTTPD, "--mirror", mirror, "--json", cache=cache)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["version"] == TEST_HTTPD and data["origin"].startswith("mirror:file://")
    assert "sha256 (apachews catalogue)" in str(data["checksum"])


def test_missing_release_on_a_local_mirror_is_a_404_with_the_other_sources(local_mirror: Path, tmp_path: Path):
    missing = run("fetch", "--apache", "2.4.66", "--json", cache=tmp_path, env={"APACHEWS_MIRROR": str(local_mirror)})
    assert missing.returncode == 1
    error = json.loads(missing.stdout)
    assert error["urls"] == [
        f"{local_mirror.as_uri()}/httpd-2.4.66.tar.bz2",
        f"{local_mirror.as_uri()}/httpd-2.4.66.tar.gz",
    ]
    assert "answered 404 Not Found" in error["error"]
    for alternative in ("--tarball", "--git", "--from-pypi", "APACHEWS_MIRROR"):
        assert alternative in error["hint"]


def test_not_a_mirror_is_bad_input(tmp_path: Path):
    done = run("fetch", "--apache", TEST_HTTPD, "--mirror", str(tmp_path / "nowhere"), "--json", cache=tmp_path)
    assert done.returncode == 2 and "nor a directory" in json.loads(done.stdout)["error"]


def test_offline_hint_names_the_other_sources(tmp_path: Path):
    # port 9 on 127.0.0.1: nothing listens, as when the archive is out of reach
    done = run("fetch", "--apache", "2.2.31", "--mirror", "http://127.0.0.1:9/", "--json", cache=tmp_path)
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["error"].startswith("cannot reach")
    for alternative in ("--tarball", "--git", "--from-pypi", "APACHEWS_MIRROR"):
        assert alternative in data["hint"]


def test_line_progress_on_a_pipe_and_quiet(local_mirror: Path, tmp_path: Path):
    piped = run("fetch", "--apache", TEST_HTTPD, "--mirror", str(local_mirror), cache=tmp_path / "a")
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr  # whole lines: a CI log shows them as they are
    lines = piped.stderr.splitlines()
    assert any(line.endswith(f"downloading {local_mirror.as_uri()}/httpd-{TEST_HTTPD}.tar.gz") for line in lines)
    assert any(f"httpd-{TEST_HTTPD}.tar.gz:" in line and line.endswith("(100%) done") for line in lines), lines
    # again, from the cache filled above (quick): still a progress line on a pipe, none with -q or --json
    again = run("fetch", "--apache", TEST_HTTPD, "--mirror", str(local_mirror), cache=tmp_path / "a")
    assert "reusing the unpacked tree" in again.stderr
    quiet = run("fetch", "--apache", TEST_HTTPD, "--mirror", str(local_mirror), "-q", cache=tmp_path / "a")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout.strip().endswith(f"httpd-{TEST_HTTPD}")
    as_json = run("--json", "fetch", "--apache", TEST_HTTPD, "--mirror", str(local_mirror), cache=tmp_path / "a")
    assert as_json.returncode == 0 and as_json.stderr == ""  # --json alone: machine output, nothing else
    verbose = run("fetch", "--apache", TEST_HTTPD, "--mirror", str(local_mirror), "--json", "-v", cache=tmp_path / "a")
    assert "reusing the unpacked tree" in verbose.stderr and "INFO apachews.sources" in verbose.stderr
    json.loads(verbose.stdout)


BUILD_LINES = [
    "Making all in srclib",
    "/build/src/srclib/apr/libtool --silent --mode=compile gcc -g -O2 -I. -c mod_proxy.c && touch mod_proxy.slo",
    "/build/src/srclib/apr/libtool --silent --mode=link gcc -g -O2 -o mod_proxy_wstunnel.la -rpath /x -module",
    "checking for working mkdir -p... yes",
    "some other line",
]


def test_build_lines_say_what_make_is_at():
    assert [describe_build_line(line) for line in BUILD_LINES] == [
        "make all: srclib",
        "make: compiling mod_proxy.c",
        "make: linking mod_proxy_wstunnel.la",
        "configure: checking for working mkdir -p",
        None,
    ]


def test_line_progress_throttles_make_detail():
    stream = io.StringIO()
    progress = LineProgress(stream)
    progress.step("build: make")
    for line in BUILD_LINES * 50:
        progress.output(line)
    shown = stream.getvalue().splitlines()
    assert shown[0].endswith("] build: make") and len(shown) == 2  # the first detail at once, then every 5 s
    assert shown[1].endswith("make all: srclib")


def test_which_progress():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert type(for_terminal(False, Tty())) is TerminalProgress
    assert type(for_terminal(False, Tty(), verbose=1)) is LineProgress  # -v: lines, interleaved with logs
    assert type(for_terminal(False, io.StringIO())) is LineProgress  # a pipe
    assert type(for_terminal(False, Tty(), quiet=True)) is Progress
    assert type(for_terminal(True, Tty())) is Progress
    assert type(for_terminal(True, io.StringIO(), verbose=1)) is LineProgress


def test_terminal_shows_the_make_step_on_one_status_line():
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.step("build: make")
    progress.output(BUILD_LINES[1])
    assert stream.getvalue().endswith("make: compiling mod_proxy.c") and "\r\x1b[K" in stream.getvalue()
    progress.step("build: collect")  # the status line is cleared, the step gets a line of its own
    assert "make: compiling mod_proxy.c\r\x1b[K[" in stream.getvalue()
    assert stream.getvalue().endswith("] build: collect\n")
