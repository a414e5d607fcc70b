"""apachews.matrix: one row per version, failures isolated, results cached by the plan's key, versions in threads.

The sources come from the loopback mirror (tests/fixtures/mirror.py): httpd-2.4.69 is the real release
tarball, 2.4.66 / 2.4.65 are small derived trees (include/ only) and 2.4.64 has no checksum anywhere, so
each fails at a known stage for a real reason. The full row (build, httpd -t, WebSocket suite) runs in
Docker on the real 2.4.69.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import catalogue, matrix, resources, sources, verify
from apachews.cli import main
from apachews.errors import BadInput
from apachews.plan import BuildPlan
from tests.fixtures.mirror import HttpdMirror
from tests.fixtures.sources import TEST_HTTPD


def _plans(spec: str, mirror: str, out: Path, backport: bool = False) -> list[BuildPlan]:
    options = sources.SourceOptions(mirror=mirror)
    return [
        BuildPlan(release, source=options, out_dir=out, backport=backport) for release in catalogue.load().expand(spec)
    ]


# ---- the cache key ---------------------------------------------------------------------------------------

BASE = BuildPlan(catalogue.load().get("2.2.31"), source=sources.SourceOptions(mirror="http://127.0.0.1:9/"))
CHANGES = {
    "another release": {"release": catalogue.load().get("2.2.34")},
    "other sources": {"source": sources.SourceOptions(mirror="http://127.0.0.1:9/other/")},
    "backport": {"backport": True},
    "local builder": {"builder": "local"},
    "with httpd": {"with_httpd": True},
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_result_key_follows_every_input(change: str):
    assert dataclasses.replace(BASE, **CHANGES[change]).cache_key("img") != BASE.cache_key("img")


def test_keys_ignore_where_the_output_goes_and_follow_the_image():
    assert dataclasses.replace(BASE, out_dir=Path("/elsewhere"), jobs=7).cache_key("img") == BASE.cache_key("img")
    assert BASE.cache_key("another image") != BASE.cache_key("img")
    # The build workspace is shared by plans that differ only in sources and module: rebuilds stay warm.
    other = dataclasses.replace(BASE, **CHANGES["other sources"], backport=True)
    assert other.cache_key("img", scope="workspace") == BASE.cache_key("img", scope="workspace")
    assert BASE.cache_key("img", scope="workspace") != BASE.cache_key("img")


def test_a_releases_second_mpm_starts_after_every_first_one():
    """Side by side, two MPMs of one release would both miss the compiler cache."""
    other = dataclasses.replace(BASE, release=catalogue.load().get("2.2.34"))
    plans = [
        dataclasses.replace(BASE, mpm="prefork"),
        dataclasses.replace(BASE, mpm="worker"),
        dataclasses.replace(other, mpm="prefork"),
        dataclasses.replace(other, mpm="worker"),
    ]
    assert matrix.start_order(plans) == [0, 2, 1, 3]


def test_two_builds_into_one_output_directory_are_refused(tmp_path: Path):
    plans = [dataclasses.replace(BASE, mpm=mpm, out_dir=tmp_path) for mpm in ("prefork", "worker")]
    with pytest.raises(BadInput, match="would write"):
        matrix.run(plans)
    assert not list(tmp_path.iterdir())


def test_result_key_follows_the_series_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Editing a patch of the series changes the key of every release it serves (the patch files are read)."""
    patches = tmp_path / "patches"
    shutil.copytree(resources.patches_dir(), patches)
    before = BASE.cache_key("img")
    monkeypatch.setattr("apachews.patches.patches_dir", lambda: patches)  # a checkout with an edited series
    assert BASE.cache_key("img") == before
    glue = patches / "wstunnel-2.2" / "0002-build-glue-2.2.patch"
    glue.write_text(glue.read_text() + "\n")
    assert BASE.cache_key("img") != before


# ---- failure isolation and threads, no Docker needed -----------------------------------------------------


def test_failures_are_isolated_per_version_and_never_cached(
    apachews_cache: Path, httpd_mirror: HttpdMirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # builds fail: no engine
    seen: list[list[str]] = []
    report = matrix.run(
        _plans("2.4.64,2.4.65,2.4.66", httpd_mirror.url("good"), tmp_path / "dist"),
        jobs=3,
        on_change=lambda rows: seen.append([row.status for row in rows]),
    )
    rows = {row.version: row for row in report.rows}
    assert list(rows) == ["2.4.64", "2.4.65", "2.4.66"] and not report.ok
    assert rows["2.4.64"].failed_stage == "fetch" and rows["2.4.64"].error.startswith("cannot verify")
    for version in ("2.4.65", "2.4.66"):  # fetched and checked, then the build found no engine
        assert rows[version].failed_stage == "build" and rows[version].error.startswith("no Docker engine")
        assert rows[version].patch == "stock module" and set(rows[version].stages) == {"fetch", "patch"}
    assert seen[-1] == ["failed"] * 3 and len(seen) >= 3 * 2
    assert not (apachews_cache / "matrix").exists()
    assert "FAILED at fetch" in matrix.text_table(report.rows)


def test_matrix_command_exit_code_and_json(apachews_cache: Path, httpd_mirror: HttpdMirror, tmp_path: Path):
    args = ["matrix", "--apache", "2.4.64", "--mirror", httpd_mirror.url("good"), "-o", str(tmp_path), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and payload["versions"][0]["failed_stage"] == "fetch"
    unknown = CliRunner().invoke(main, ["matrix", "--apache", "2.4.64,2.2.99", "--json"])
    assert unknown.exit_code == 2 and json.loads(unknown.stdout)["error_type"] == "BadInput"


def test_a_log_gets_a_line_per_stage_of_each_version(apachews_cache: Path, httpd_mirror: HttpdMirror, tmp_path: Path):
    # stderr a pipe (CI, `make demo | tee`): no table is redrawn, yet the log shows every version moving.
    args = ["--apache", "2.4.64,2.4.65", "--mirror", httpd_mirror.url("good"), "-o", str(tmp_path / "dist")]
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}  # builds fail: no engine
    done = subprocess.run(
        [sys.executable, "-m", "apachews", "matrix", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    for said in ("Apache 2.4.64 (event): running fetch", "Apache 2.4.65 (event): running build"):
        assert any(line.endswith(said) for line in lines), done.stderr
    assert any("Apache 2.4.65 (event): failed: no Docker engine" in line for line in lines), done.stderr
    assert all(line.startswith(("[", "note:", "error:", "hint:")) for line in lines if line), done.stderr


def test_every_mpm_gives_each_its_row_and_its_own_output(tmp_path: Path):
    plans = matrix.every_mpm([dataclasses.replace(BASE, out_dir=tmp_path), BuildPlan("2.4.4", out_dir=tmp_path)])
    assert [(plan.version, plan.mpm) for plan in plans] == [
        ("2.2.31", "prefork"),
        ("2.2.31", "worker"),
        ("2.4.4", "event"),
        ("2.4.4", "prefork"),
        ("2.4.4", "worker"),
    ]
    assert plans[1].dist == tmp_path / "worker" / "httpd-2.2.31"


def test_matrix_command_every_mpm(apachews_cache: Path, httpd_mirror: HttpdMirror, tmp_path: Path):
    args = ["matrix", "--apache", "2.4.64", "--mirror", httpd_mirror.url("good"), "-o", str(tmp_path), "--json"]
    result = CliRunner().invoke(main, [*args, "--every-mpm"])
    rows = json.loads(result.stdout)["versions"]
    assert [row["mpm"] for row in rows] == ["event", "prefork", "worker"]
    assert all(row["failed_stage"] == "fetch" for row in rows)
    both = CliRunner().invoke(main, [*args, "--every-mpm", "--mpm", "worker"])
    assert both.exit_code == 2 and "--every-mpm and --mpm" in json.loads(both.stdout)["error"]


# ---- a real row: build in Docker, httpd -t, the WebSocket suite; then the cache -------------------------


def test_real_row_then_cached(base_image: str, apachews_cache: Path, httpd_mirror: HttpdMirror, tmp_path: Path):
    # Our module (--backport): the stock one leaves a backend that never closes on EOF half-open, which
    # verify's abrupt-disconnect reports (a stock row is red by design).
    plans = _plans(f"2.4.64,{TEST_HTTPD}", httpd_mirror.url("good"), tmp_path / "dist", backport=True)
    first = matrix.run(plans, jobs=2)
    failed, built = first.rows
    assert failed.failed_stage == "fetch" and built.ok and not built.cached, built.error
    assert built.checks_total and built.checks_passed == built.checks_total
    assert built.build_seconds and built.orphan_close_seconds is not None
    assert (tmp_path / "dist" / f"httpd-{TEST_HTTPD}" / "build.json").is_file()
    [kept] = (apachews_cache / "matrix").glob(f"{TEST_HTTPD}-*.json")

    again = matrix.run(plans, jobs=2)
    failed_again, cached = again.rows
    assert failed_again.failed_stage == "fetch"  # failures are retried, never cached
    assert cached.cached and cached.ok and cached.stages == built.stages
    assert cached.checks_passed == built.checks_passed and again.seconds < first.seconds
    assert [p.name for p in (apachews_cache / "matrix").iterdir()] == [kept.name]
    # Anything that decides the result misses the cache (here: the stock module instead of ours).
    assert matrix.cache_file(dataclasses.replace(plans[1], with_httpd=True)).exists()
    assert not matrix.cache_file(dataclasses.replace(plans[1], backport=False, with_httpd=True)).exists()


def _report(preset: str, *checks: verify.Check) -> verify.VerifyReport:
    report = verify.VerifyReport("2.2.31", "httpd", None, "apachews", preset=preset)
    report.checks = list(checks)
    return report


def test_the_tls_column_and_when_a_row_is_green_on_tls() -> None:
    front = verify.Check("tls-front", True, 1.0, "ms")
    orphans = verify.Check("tls-abrupt-disconnect", True, 0.05, "s")
    backend_orphans = verify.Check("abrupt-disconnect", True, 0.2, "s")  # gateone-wss: through a TLS backend
    plain = verify.Check("abrupt-disconnect", True, 0.9, "s")
    row = matrix.Row("2.2.31")
    reports = [_report("generic", front, orphans, plain), _report("gateone-wss", backend_orphans)]
    assert matrix._tls_column(row, reports, {"mode": "static"}) is None
    assert row.tls == "3/3" and row.tls_orphan_close_seconds == 0.2
    failing = [_report("broadway-ssl", verify.Check("tls-front", False))]
    assert matrix._tls_column(row, failing, {"mode": "static"}) is None  # verify's own failure reports it
    assert row.tls == "0/1 (broadway-ssl:tls-front)"
    none = [_report("generic", verify.skipped("no mod_ssl"))]
    assert "needs OpenSSL" in (matrix._tls_column(row, none, {"mode": "missing", "openssl": "1.0.2"}) or "")
    assert matrix._tls_column(row, none, {"mode": "off"}) is None and row.tls == "off (--without-ssl)"
    assert "has no mod_ssl" in (matrix._tls_column(row, none, {"mode": "static"}) or "")
    # 2.4.26+ takes the image's OpenSSL: a build without mod_ssl there is red too, unless --without-ssl
    assert "no OpenSSL headers" in (matrix._tls_column(row, none, {"mode": "system"}) or "")
    assert "--without-ssl" in (matrix._tls_column(row, none, {}) or "")
    headers = matrix._headers([row])
    assert "tls" in headers and "tls orphan close s" in headers
