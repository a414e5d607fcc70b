"""The module's raw tunnel and event loop (module/wstunnel_loop.c) on their own: tests/loop_test.c drives them
over socketpair()s, compiled with the system cc against APR (libapr1-dev) with -Wall -Wextra -Werror: no httpd
is needed, which is what keeps the loop file free of httpd's request API."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from apachews import module

TESTS = Path(__file__).resolve().parent
CASES = ["half-close", "fin-timeout", "reset", "idle-limit", "backpressure", "close-frames", "event-loop"]


def _apr_config(*options: str) -> list[str]:
    done = subprocess.run(["apr-1-config", *options], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.fixture(scope="module")
def loop_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cc") is None or shutil.which("apr-1-config") is None:
        pytest.skip("no cc or apr-1-config (apt-get install libapr1-dev)")
    module_dir = module.source_path().parent
    binary = tmp_path_factory.mktemp("loop") / "loop_test"
    argv = ["cc", "-Wall", "-Wextra", "-Werror", "-O1", "-pthread"]
    argv += _apr_config("--cflags", "--cppflags", "--includes")
    argv += [f"-I{module_dir}", str(module_dir / "wstunnel_loop.c"), str(module_dir / "wstunnel_frames.c")]
    argv += [str(TESTS / "loop_test.c"), "-o", str(binary), *_apr_config("--link-ld", "--libs")]
    built = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    assert "warning" not in built.stderr, built.stderr
    return binary


def test_the_loop_builds_without_httpd_headers(loop_test: Path) -> None:
    # The loop's files include wstunnel.h in its APR-only part: httpd's headers are not on the path above.
    for name in ("wstunnel_loop.c", "wstunnel_frames.c"):
        assert "#define PWS_LOOP_ONLY" in (module.source_path().parent / name).read_text()
    assert loop_test.exists()


def test_the_loop_over_socketpairs(loop_test: Path) -> None:
    done = subprocess.run([str(loop_test)], capture_output=True, text=True, timeout=120, check=False)
    results = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert sorted(results) == sorted(CASES), done.stdout + done.stderr
    failed = {case: detail for case, detail in results.items() if not detail.startswith("ok")}
    assert failed == {}, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
