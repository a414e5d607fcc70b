"""Two builds of one release at once, through the real command line and a real Docker engine: they share one
build volume, which the build lock hands to one at a time (before it, they broke each other's `make install`).
Their stderr is a pipe, as in CI: line-based progress shows the build's make steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_process import wait_for_line
from tests.fixtures.sources import TEST_HTTPD


@pytest.mark.slow
def test_two_builds_of_one_release_at_once(base_image: str, httpd24_tarball: Path, tmp_path: Path):
    env = {**os.environ, "APACHEWS_CACHE": str(tmp_path / "cache")}  # one cache: one lock directory
    processes = {}
    for name in ("a", "b"):
        # --mpm worker: a workspace of their own, so other test runs building 2.4.69 on this engine do not wait
        args = ["build", "--apache", TEST_HTTPD, "--tarball", str(httpd24_tarball), "--with-httpd", "--mpm", "worker"]
        processes[name] = subprocess.Popen(
            [sys.executable, "-m", "apachews", *args, "-o", str(tmp_path / name), "--json", "-v"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env=env,
        )
    # Each printed its first progress step: both are running now.
    started = {name: wait_for_line(p.stderr, "] ") for name, p in processes.items()}
    assert all(p.poll() is None for p in processes.values()), "both builds must run at the same time"
    outputs = {}
    for name, process in processes.items():
        stdout, rest = process.communicate(timeout=1500)
        outputs[name] = (stdout, started[name] + rest.decode(errors="replace"))
    for name, process in processes.items():
        stdout, stderr = outputs[name]
        assert process.returncode == 0, stderr[-3000:]
        data = json.loads(stdout)
        assert data["ok"] is True and Path(data["module"]).is_file()
        assert Path(data["dist"]).parent == tmp_path / name
        assert (tmp_path / name / f"httpd-{TEST_HTTPD}" / "httpd" / "bin" / "httpd").is_file()  # make install ran
        assert json.loads((Path(data["dist"]) / "build.json").read_text())["apache"] == TEST_HTTPD
    stderr = outputs["a"][1] + outputs["b"][1]
    assert "waiting for another build of the same release and image" in stderr  # the lock handed it over
    assert "] build: make" in stderr and "\r" not in stderr
    assert "   make" in stderr, stderr[-3000:]  # the current make step, not a minute of silence
