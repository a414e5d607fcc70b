"""wsload (benchmarks/wsload/wsload.c), the C echo backend and client of the capacity benchmark: it compiles
without warnings, its echo answers the handshake as RFC 6455 says, and its counts are right. Loopback only."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

SOURCE = Path(__file__).resolve().parent.parent / "benchmarks" / "wsload" / "wsload.c"

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")


@pytest.fixture(scope="module")
def wsload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("wsload") / "wsload"
    result = subprocess.run(
        ["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    return binary


def start_echo(wsload: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([str(wsload), "echo", "-p", "0", "-t", "60"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = json.loads(process.stdout.readline())["listening"]
    return process, f"ws://127.0.0.1:{port}"


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture
def echo(wsload: Path) -> Iterator[str]:
    process, url = start_echo(wsload)
    try:
        yield url
    finally:
        stop(process)


def load(wsload: Path, url: str, *args: str) -> tuple[int, dict]:
    result = subprocess.run(
        [str(wsload), "load", "-u", url, "-t", "15", *args], capture_output=True, text=True, timeout=30, check=False
    )
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("size", [0, 100, 70_000, 300_000])  # 7-bit, 16-bit and 64-bit frame lengths
def test_load_counts_every_round_trip(wsload: Path, echo: str, size: int) -> None:
    rc, figures = load(wsload, echo + "/ws", "-c", "3", "-n", "20", "-s", str(size))
    assert rc == 0, figures
    assert figures["round_trips"] == 60
    assert figures["errors"] == 0 and figures["complete"] is True
    assert figures["opened"] == 3
    assert figures["bytes_per_s"] == pytest.approx(figures["msgs_per_s"] * size, rel=1e-3)
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]


def test_echo_handshake_is_what_a_strict_client_expects(echo: str) -> None:
    async def talk() -> tuple[str, bytes]:
        async with connect(echo + "/x", compression=None) as ws:  # websockets checks Sec-WebSocket-Accept
            await ws.send("hello")
            text = await ws.recv()
            await ws.send(b"\x00\xff" * 5000)
            data = await ws.recv()
            await asyncio.wait_for(await ws.ping(), 5)  # a ping comes back as a pong
            return str(text), bytes(data)

    text, data = asyncio.run(talk())
    assert text == "hello" and data == b"\x00\xff" * 5000


def test_idle_opens_and_holds_n_connections(wsload: Path, echo: str) -> None:
    holder = subprocess.Popen(
        [str(wsload), "idle", "-u", echo + "/ws", "-c", "200", "-t", "20"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        opened = json.loads(holder.stdout.readline())
        assert opened["open"] == 200 and opened["failed"] == 0
        holder.stdin.close()  # stdin closing ends the hold
        summary = json.loads(holder.stdout.readline())
        assert holder.wait(timeout=10) == 0
    finally:
        stop(holder)
    assert summary["open"] == 200 and summary["errors"] == 0 and summary["until"] == "stdin closed"


def test_a_peer_that_goes_away_is_an_error_not_a_crash(wsload: Path) -> None:
    process, url = start_echo(wsload)
    try:
        client = subprocess.Popen(
            [str(wsload), "load", "-u", url, "-c", "5", "-n", "100000000", "-s", "64", "-d", "10", "-t", "15"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        assert client.stdout is not None and client.stderr is not None
        try:
            said = client.stderr.readline().decode()
            assert "5 of 5 connections open" in said, said  # the round trips are under way
            process.kill()
            out, _ = client.communicate(timeout=15)
        finally:
            stop(client)
    finally:
        stop(process)
    assert client.returncode == 1  # not a signal (a negative returncode)
    figures = json.loads(out)
    assert figures["errors"] == 5 and figures["first_error"].startswith("the server")


def test_refused_and_non_loopback(wsload: Path, echo: str) -> None:
    rc, figures = load(wsload, "ws://127.0.0.1:9/ws", "-c", "2", "-n", "1")
    assert rc == 1 and figures["connect_errors"] == 2 and "connect" in figures["first_error"]
    result = subprocess.run(
        [str(wsload), "load", "-u", "ws://192.0.2.1:80/"], capture_output=True, text=True, timeout=10, check=False
    )
    assert result.returncode == 2 and "not on this machine" in result.stderr
