"""One error path for every failure, through the real command line: usage errors included, --json before or
after the sub-command, exit codes 0/1/2 (130/143 interrupted), no traceback unless --debug."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import catalogue
from apachews.cli import main
from tests.cli_process import start_cli

ENV_ISSUES = ("Traceback", 'File "')


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apachews", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def one_json_object(stdout: str) -> dict:
    data = json.loads(stdout)  # raises if stdout holds anything else
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "matrix"],  # a missing option
        ["matrix", "--json"],
        ["fetch", "--json", "--tarball"],  # an option without its value
        ["--json", "patch", "apply", "--patch", "/nonexistent"],  # click's own file check
        ["versions", "--no-such-option", "--json"],
        ["--json", "no-such-command"],
        ["--json", "cache", "prune", "--older-than", "-3"],  # a range check
        ["config", "gateone", "--distro", "plan9", "--json"],
    ],
)
def test_usage_errors_are_one_json_object_and_exit_2(args: list[str]):
    done = run(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    data = one_json_object(done.stdout)
    assert data["ok"] is False and data["error"] and data["error_type"] == "UsageError"
    assert "--help" in data["hint"]
    assert not any(marker in done.stderr for marker in ENV_ISSUES), done.stderr


def test_usage_error_for_humans_says_error_and_hint_on_stderr():
    done = run("matrix")
    assert done.returncode == 2 and done.stdout == ""
    assert "error: Missing option '--apache'" in done.stderr and "apachews matrix --help`" in done.stderr
    # build reads the release from --source/--tarball, so without them it asks for --apache itself
    build = run("build", "--from-pypi")
    assert build.returncode == 2 and "error: which Apache release? give --apache V" in build.stderr
    unknown = run("versions", "--no-such-option")
    assert unknown.returncode == 2 and "error: No such option '--no-such-option'" in unknown.stderr
    assert "apachews versions --help`" in unknown.stderr


@pytest.mark.parametrize("image", ["Bad Image!", "UPPER/case", "debian:bookworm:extra", "-debian"])
def test_bad_base_image_is_bad_input_with_a_hint(image: str):
    done = run("build", "--apache", "2.4.69", "--from-pypi", "--base-image", image, "--json")
    assert done.returncode == 2, done.stderr
    data = one_json_object(done.stdout)
    assert data["error_type"] == "BadInput" and "not a Docker image reference" in data["error"]
    assert "apachews/base:bookworm" in data["hint"] and "image bootstrap" in data["hint"]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "image",
    ["apachews/base:bookworm", "centos:7", "registry.local:5000/team/httpd-build:2.2", "ubuntu@sha256:" + "a" * 64],
)
def test_good_image_references_pass_the_check(image: str):
    # --builder local refuses any --base-image, after the reference was accepted while parsing
    result = CliRunner().invoke(main, ["build", "--apache", "2.4.69", "--builder", "local", "--base-image", image])
    assert result.exit_code == 2 and "--base-image applies to the docker builder only" in result.output


def test_unexpected_error_has_no_traceback_but_debug_shows_it(monkeypatch: pytest.MonkeyPatch):
    def broken() -> None:
        raise RuntimeError("catalogue exploded")

    monkeypatch.setattr(catalogue, "load", broken)
    quiet = CliRunner().invoke(main, ["versions", "--json"])
    assert quiet.exit_code == 1
    data = one_json_object(quiet.stdout)
    assert data["error"] == "internal error: RuntimeError: catalogue exploded" and "--debug" in data["hint"]
    assert "Traceback" not in quiet.output
    debug = CliRunner().invoke(main, ["versions", "--debug"])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr and "catalogue exploded" in debug.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_before_or_after_the_sub_command(where: str):
    flags = ["-v", "--json"]
    args = (
        [*flags, "versions", "--apache", "2.2.31"] if where == "before" else ["versions", "--apache", "2.2.31", *flags]
    )
    done = run(*args)
    assert done.returncode == 0, done.stderr
    assert one_json_object(done.stdout)["release"]["version"] == "2.2.31"
    both = run("versions", "-q", "-v") if where == "after" else run("-q", "versions", "-v")
    assert both.returncode == 2 and "-q and -v contradict each other" in both.stderr


def _silent_server() -> socket.socket:
    """A listener on 127.0.0.1 that never answers: a download from it hangs until interrupted."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(60)
    return server


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_interrupted_download_exits_cleanly(tmp_path: Path, sig: int, code: int, said: str):
    server = _silent_server()
    cache = tmp_path / "cache"
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/"
        process = start_cli(
            *["fetch", "--apache", "2.2.31", "--mirror", url, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "APACHEWS_CACHE": str(cache)},
        )
        try:
            connection, _ = server.accept()  # the download began: it connected, and waits for an answer
        except socket.timeout:
            process.kill()
            raise AssertionError(f"the download never connected: {process.communicate()}") from None
        with connection:
            process.send_signal(sig)
            stdout, stderr = process.communicate(timeout=60)
    finally:
        server.close()
    assert process.returncode == code, stderr
    data = one_json_object(stdout)
    assert data["ok"] is False and said in data["error"] and data["hint"]
    assert "Traceback" not in stderr
    leftovers = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert leftovers == [], leftovers  # nothing half-downloaded kept


def test_a_reader_that_goes_away_is_no_traceback():
    process = subprocess.Popen(
        [sys.executable, "-m", "apachews", "versions", "--all"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read().decode() if process.stderr else ""
    process.wait(timeout=30)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
