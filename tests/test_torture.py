"""Issue 18, one test per defect, each run through a real Apache (Debian's apache2) against three targets:

- "stock": mod_proxy_http `upgrade=websocket`, which behaves correctly on every case here: the test passes;
- "apachews": our module as it is in module/ now: the test asserts the correct behaviour;
- "handoff": the same with ProxyWebsocketHandoff On (plain tunnels in the child's event loop, issue 19);
- "issue18": our module as issue 18 found it (commit ISSUE18_COMMIT), built from git: the case must catch
  the defect there, so every test is shown able to fail, in every run.

Figures (RSS, latencies, the soak and the flood) are printed by benchmarks/torture_bench.py, not asserted
here beyond the coarse bounds that separate streaming from buffering.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apachews import module, torture
from apachews.catalogue import Tunnelling, Version
from apachews.errors import BadInput
from apachews.httpd import Httpd
from apachews.progress import Progress

ISSUE18_COMMIT = module.BEFORE_FIXES  # module/mod_proxy_wstunnel.c when issue 18 was filed
TARGETS = ["stock", "apachews", "handoff", "issue18"]


def _issue18_source() -> str:
    try:
        return module.source_at(ISSUE18_COMMIT)
    except BadInput as error:
        pytest.skip(error.message)


@pytest.fixture(scope="module", params=TARGETS)
def target(
    request: pytest.FixtureRequest, system_httpd: Httpd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[torture.Context]:
    if system_httpd.version < Version(2, 4, 47):
        pytest.skip(f"stock upgrade=websocket needs Apache 2.4.47+, this is {system_httpd.version}")
    kind = request.param
    if kind == "stock":
        spec = torture.TargetSpec("stock", system_httpd, Tunnelling.HTTP_UPGRADE)
    else:
        source = _issue18_source() if kind == "issue18" else None
        so = torture.build_module(tmp_path_factory.mktemp(f"apxs-{kind}"), source)
        spec = torture.module_target(system_httpd, so, kind)
        spec.handoff = kind == "handoff"  # the same module, its plain tunnels in the child's event loop
    with torture.running_target(spec, torture.Settings(slow_seconds=3.0), Progress()) as ctx:
        yield ctx


def _case(ctx: torture.Context, name: str, defect: bool = True) -> torture.CaseResult:
    """Run a case; on the issue-18 module a defect case must FAIL, everywhere else it must pass."""
    result = torture.run_cases(ctx, [name], Progress())[0]  # a case that raises is a failed case
    if result.skipped:  # only for a module this httpd lacks (mod_ssl, mod_reqtimeout); any other skip fails
        lacking = re.search(r"no mod_(\w+) in this httpd", result.detail)
        assert lacking and not ctx.spec.httpd.has_module(lacking.group(1)), f"{ctx.spec.label}: {name} {result.detail}"
        pytest.skip(f"{ctx.spec.label}: {result.detail}")
    if defect and ctx.spec.label == "issue18":
        assert not result.passed, f"the issue-18 module should show the defect: {result}"
    else:
        assert result.passed, f"{ctx.spec.label}: {result.name}: {result.detail}"
    return result


def test_defect_1_tls_record_in_tcp_pieces(target: torture.Context) -> None:
    _case(target, "tls-12k-12-pieces")


def test_defect_1_tls_record_in_slow_pieces(target: torture.Context) -> None:
    _case(target, "tls-3k-8-pieces")  # the issue's 4 pieces are in the table; 8 fail the issue-18 module every time


def test_defect_2_refused_body_streamed(target: torture.Context) -> None:
    result = _case(target, "refused-big")
    assert result.figure is not None


def test_defect_2_endless_refusal_bounded(target: torture.Context) -> None:
    _case(target, "slow-reader-forever")


# Defect 3 (starvation under a flood) has no test: it is a latency figure, printed per target by
# benchmarks/torture_bench.py (flood-starvation row). Measured here, the issue-18 module's worst delay over a
# 10 s flood was 0.8 to 2.8 s from run to run (stock: 0.2 to 0.35 s); over 3 s, 0.6 s. No bound separates
# them reliably on a shared 2-core machine, and a timed assertion that flakes proves nothing.


def test_defect_4_half_close(target: torture.Context) -> None:
    _case(target, "half-close")


@pytest.mark.parametrize("name", ["orphans-fin", "orphans-rst"])
def test_vanished_clients_free_a_backend_that_never_closes(target: torture.Context, name: str) -> None:
    # Clients that leave (a killed browser's FIN, a cut network's reset) a backend that never closes on EOF, as
    # broadwayd does. The module resets the backend within its fin timeout (worker-held and handoff); stock and
    # the issue-18 module close it with a FIN (after a reset at once, after a FIN at their idle limit), which
    # leaves its socket in CLOSE-WAIT: the case is red there, in every run.
    result = torture.run_cases(target, [name], Progress())[0]
    if target.spec.label in ("apachews", "handoff"):
        assert result.passed, f"{target.spec.label}: {result.detail}"
    else:
        assert not result.passed and "CLOSE-WAIT" in result.detail, f"{target.spec.label}: {result.detail}"


def test_defect_5_101_without_upgrade_is_502(target: torture.Context) -> None:
    _case(target, "no-upgrade-101")


def test_defect_6_interim_100_then_101(target: torture.Context) -> None:
    _case(target, "interim-100")


def test_defect_7_101_with_120_headers(target: torture.Context) -> None:
    _case(target, "headers-120")


def test_defect_8_post_upgrade_keeps_its_method(target: torture.Context) -> None:
    _case(target, "post-upgrade")


def test_defect_9_reqtimeout_gone_once_tunnelling(target: torture.Context) -> None:
    _case(target, "reqtimeout-idle")


@pytest.mark.parametrize(
    "name",
    [
        "wrong-accept",
        "never-answers",
        "reset-after-101",
        "reset-mid-stream",
        "pipelined-frame",
        "slowloris",
        "smuggle-te",
        "smuggle-cl-te",
    ],
)
def test_what_already_held_keeps_holding(target: torture.Context, name: str) -> None:
    # Not defects of issue 18: every target, the issue-18 module included, must pass these.
    _case(target, name, defect=False)


@pytest.mark.parametrize("name", ["tls-1mib-echo", "tls-reset-after-101", "tls-reset-mid-stream"])
def test_tls_resets_and_a_big_echo_hold(target: torture.Context, name: str) -> None:
    # Orphans and a 1 MiB message through the TLS front; the issue-18 module's TLS defect is defect 1's test.
    if target.spec.label == "issue18":
        pytest.skip("the issue-18 module's TLS path is test_defect_1's")
    _case(target, name, defect=False)


def test_refused_upgrade_delivers_the_announced_body(target: torture.Context) -> None:
    # Found by the smuggle-cl case (not in issue 18's list): the issue-18 module forwards the client's
    # Content-Length on a refused upgrade but never the body, so the backend waits for it (2 s here).
    _case(target, "smuggle-cl")


def test_error_log_has_no_crash(target: torture.Context) -> None:
    _case(target, "error-log-clean", defect=False)


@pytest.mark.slow
def test_soak_byte_exact(system_httpd: Httpd, tmp_path: Path) -> None:
    so = torture.build_module(tmp_path)
    spec = torture.module_target(system_httpd, so)
    report = torture.run_target(spec, ["soak", "error-log-clean"], torture.Settings(soak_clients=200, soak_seconds=20))
    assert report.ok, torture.details([report])


def test_side_by_side_table_marks_each_cell() -> None:
    # The table's shape on fixed results: a failing cell says FAIL with its figure, a skipped one n/a.
    a = torture.TargetReport("2.4.71", "x", None, "t", label="A")
    a.checks = [torture.CaseResult("half-close", True, 0.2, "s"), torture.skipped("tls-3k-4-pieces", "no mod_ssl")]
    b = torture.TargetReport("2.4.71", "x", "m.so", "t", label="B")
    b.checks = [torture.CaseResult("half-close", False, None, "", "nothing after the FIN")]
    table = torture.side_by_side([a, b]).splitlines()
    assert table[0].split() == ["case", "|", "A", "|", "B"]
    row = next(line for line in table if line.startswith("half-close"))
    assert "pass 0.2 s" in row and "FAIL" in row
    assert "n/a" in next(line for line in table if line.startswith("tls-3k"))
    assert a.ok and not b.ok  # a skipped case does not fail a target


def test_cli_json_and_exit_codes(system_httpd: Httpd, tmp_path: Path) -> None:
    # What a user runs: one JSON object, exit 0 when the tested target passes, 1 when a case fails.
    so = torture.build_module(tmp_path, _issue18_source())
    argv = [sys.executable, "-m", "apachews", "torture", "--json", "--case", "no-upgrade-101"]
    good = subprocess.run([*argv, "--target", "stock-http"], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    data = json.loads(good.stdout)
    assert data["ok"] and data["targets"][0]["checks"][0]["name"] == "no-upgrade-101"
    bad = subprocess.run([*argv, "--target", "apachews", "--module", str(so)], capture_output=True, text=True)
    assert bad.returncode == 1 and json.loads(bad.stdout)["ok"] is False
    unknown = subprocess.run([*argv[:-1], "no-such-case", "--target", "stock-http"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "no-such-case" in json.loads(unknown.stdout)["error"]
