"""mod_ssl's OpenSSL: the --openssl-* origins, which OpenSSL each release takes (data), the cache keys that
follow it, and a real 2.2 build with OpenSSL 1.0.2 linked into mod_ssl whose TLS checks and cases pass.

The build tests need $APACHEWS_HTTPD_GIT and $APACHEWS_OPENSSL_GIT (skipped, saying so, when unset).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import build, httpd, sources, toolchain, verify
from apachews.catalogue import Version
from apachews.cli import main
from apachews.errors import BadInput
from apachews.plan import BuildPlan
from apachews.sources.openssl import OpenSSLOptions, detect_version
from tests.fixtures.apache import wrong_backend_ca

OPENSSL_RELEASES = [
    ("2.2.15", "1.0.2"),
    ("2.2.34", "1.0.2"),
    ("2.4.4", "1.0.2"),
    ("2.4.25", "1.0.2"),
    ("2.4.26", "1.0.2"),
    ("2.4.37", "1.0.2"),  # EL8
    ("2.4.51", "1.0.2"),  # ERR_GET_FUNC: no OpenSSL 3 before 2.4.52
    ("2.4.52", "system"),
    ("2.4.69", "system"),
]


@pytest.mark.parametrize(("version", "openssl"), OPENSSL_RELEASES)
def test_which_openssl_each_release_takes_is_data(version: str, openssl: str) -> None:
    recipe = toolchain.recipe(Version.parse(version))
    assert recipe.openssl == openssl
    # mod_ssl before 2.2.18 calls the SSLv2 methods unguarded: their OpenSSL is built with them.
    assert ("enable-ssl2" in recipe.openssl_config) is (Version.parse(version) < Version(2, 2, 18))


def test_origins_are_checked_before_anything_runs(tmp_path: Path) -> None:
    for bad, says in [
        ({"source": tmp_path, "git": tmp_path}, "one OpenSSL origin"),
        ({"ref": "v1"}, "--openssl-ref"),
        ({"tarball": tmp_path / "x.tar.gz"}, "--openssl-sha256"),
        ({"tarball": tmp_path / "x.tar.gz", "sha256": "abc"}, "64 hex digits"),
        ({"source": tmp_path, "without": True}, "--without-ssl"),
    ]:
        with pytest.raises(BadInput, match=says):
            OpenSSLOptions(**bad)
    with pytest.raises(BadInput, match="not an OpenSSL source tree"):
        OpenSSLOptions(source=tmp_path).provide()


def test_the_openssl_origin_is_part_of_both_cache_keys(tmp_path: Path) -> None:
    plain = BuildPlan("2.2.31")
    given = dataclasses.replace(plain, openssl=OpenSSLOptions(source=tmp_path))
    other = dataclasses.replace(plain, openssl=OpenSSLOptions(source=tmp_path / "other"))
    without = dataclasses.replace(plain, openssl=OpenSSLOptions(without=True))
    assert (plain.ssl, given.ssl, without.ssl, BuildPlan("2.4.69").ssl) == ("missing", "static", "off", "system")
    for scope in ("result", "workspace"):
        keys = {p.cache_key("image", scope) for p in (plain, given, other, without)}  # type: ignore[arg-type]
        assert len(keys) == 4


def test_build_command_takes_the_openssl_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["build", "--apache", "2.2.31", "--openssl-ref", "HEAD", "-o", str(tmp_path), "--json"]
    )
    assert result.exit_code == 2 and "--openssl-git" in json.loads(result.stdout)["hint"]


# ---- the real sources: $APACHEWS_OPENSSL_GIT ---------------------------------------------------------------------
def test_git_and_tarball_origins(openssl_git: tuple[Path, str], tmp_path: Path, apachews_cache: Path) -> None:
    repo, ref = openssl_git
    tree = OpenSSLOptions(git=repo, ref=ref).provide()
    assert tree.version.startswith("1.0.2") and detect_version(tree.path) == tree.version
    assert OpenSSLOptions(git=repo, ref=ref).provide().path == tree.path  # exported once
    with pytest.raises(BadInput, match="has no ref"):
        OpenSSLOptions(git=repo, ref="no-such-ref").provide()
    tarball = tmp_path / f"openssl-{tree.version}.tar.gz"
    with tarfile.open(tarball, "w:gz") as out:
        out.add(tree.path, arcname=f"openssl-{tree.version}")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert OpenSSLOptions(tarball=tarball, sha256=digest).provide().version == tree.version
    with pytest.raises(BadInput, match="sha256"):
        OpenSSLOptions(tarball=tarball, sha256="0" * 64).provide()


def _ssl_plan(httpd_git: Path, openssl_git: tuple[Path, str], out_dir: Path) -> BuildPlan:
    repo, ref = openssl_git
    return BuildPlan(
        "2.2.31",
        source=sources.SourceOptions(git=httpd_git),
        openssl=OpenSSLOptions(git=repo, ref=ref),
        with_httpd=True,
        out_dir=out_dir,
    )


@pytest.fixture(scope="module")
def ssl_dist(base_image: str, httpd_git: Path, openssl_git: tuple[Path, str], tmp_path_factory) -> build.BuildResult:
    return build.build(_ssl_plan(httpd_git, openssl_git, tmp_path_factory.mktemp("ssl-dist")))


def test_a_warm_rebuild_keeps_the_built_openssl(
    ssl_dist: build.BuildResult, httpd_git: Path, openssl_git: tuple[Path, str]
) -> None:
    again = build.build(_ssl_plan(httpd_git, openssl_git, ssl_dist.dist.parent), rebuild=True)
    log = (again.dist / "build.log").read_text()
    assert "==> apachews step: openssl" in log and "OpenSSL: 1.0.2" in log
    assert "making all in crypto" not in log  # OpenSSL was not compiled again: the workspace kept it


def test_mod_ssl_is_built_with_openssl_linked_in(ssl_dist: build.BuildResult) -> None:
    info = json.loads((ssl_dist.dist / "build.json").read_text())
    assert info["ssl"]["mode"] == "static" and info["ssl"]["mod_ssl"] and info["ssl"]["openssl"].startswith("1.0.2")
    mod_ssl = ssl_dist.dist / "httpd" / "modules" / "mod_ssl.so"
    needed = subprocess.run(["readelf", "-d", str(mod_ssl)], capture_output=True, text=True, check=True).stdout
    assert "libssl" not in needed and "libcrypto" not in needed  # the dist needs no OpenSSL of the server


def test_tls_checks_and_cases_pass_on_22(ssl_dist: build.BuildResult) -> None:
    server = httpd.locate(prefix=ssl_dist.dist / "httpd")
    tls = ["tls-front", "tls-backend", "tls-abrupt-disconnect", "tls-backend-abrupt-disconnect"]
    reports = verify.run_presets(server, ["generic"], setup=verify.ServerSetup(module=ssl_dist.module), checks=tls)
    reports += verify.run_presets(server, list(verify.CASES), setup=verify.ServerSetup(module=ssl_dist.module))
    for report in reports:
        skipped = [check.name for check in report.checks if check.skipped]
        # capacity: only with --max-websockets; h2-websocket: only on 2.4.58+
        assert report.ok and set(skipped) <= {"capacity", "h2-websocket"}, report.table()


def test_an_unverified_tls_backend_fails_with_the_error_users_see(ssl_dist: build.BuildResult) -> None:
    """gateone-wss with the backend's certificate not in SSLProxyCACertificateFile (a system bundle instead)."""
    server = httpd.locate(prefix=ssl_dist.dist / "httpd")
    edit = wrong_backend_ca
    report = verify.run(
        server, preset="gateone-wss", setup=verify.ServerSetup(module=ssl_dist.module), checks=["echo-text"], edit=edit
    )
    assert not report.ok and report.error_log is not None
    log = report.error_log.read_text(errors="replace")
    assert "Certificate Verification: Error (18): self signed certificate" in log
    assert "HTTP 502" in report.checks[0].detail
