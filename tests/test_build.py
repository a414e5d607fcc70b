"""`apachews build` for real: a bootstrapped image, a Docker build of httpd 2.4 from PyPI's sources,
the module loaded by a real Apache and one WebSocket round trip through it."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import build, catalogue, httpd, images, sources, toolchain
from apachews.binary import GlibcVersion
from apachews.cli import main
from apachews.dist import Dist
from apachews.distros import catalogue as distros
from apachews.errors import BadInput, JobFailed
from apachews.plan import BuildPlan
from apachews.sources.openssl import OpenSSLOptions
from tests.fixtures.distros import loads_in
from tests.fixtures.sources import TEST_HTTPD

# Markers come from the fixtures each test uses (tests/conftest.py): docker_engine/base_image -> docker.
FROM_PYPI = sources.SourceOptions(from_pypi=True)


@pytest.fixture(scope="module")
def release() -> catalogue.Release:
    return catalogue.load().get(TEST_HTTPD)


@pytest.fixture(scope="module")
def stock_dist(
    base_image: str, release: catalogue.Release, tmp_path_factory: pytest.TempPathFactory
) -> build.BuildResult:
    out = tmp_path_factory.mktemp("dist")
    return build.build(BuildPlan(release, source=FROM_PYPI, with_httpd=True, out_dir=out))


def test_dist_layout_and_build_json(stock_dist: build.BuildResult) -> None:
    info = json.loads((stock_dist.dist / "build.json").read_text())
    assert stock_dist.dist.name == f"httpd-{TEST_HTTPD}"
    assert stock_dist.module.exists() and stock_dist.module.stat().st_size > 10_000
    assert info["apache"] == TEST_HTTPD and info["kind"] == "stock" and info["builder"] == "docker"
    assert info["compiler"].startswith("gcc")
    assert info["image"]["id"].startswith("sha256:")
    for relative, digest in info["artifacts"].items():
        assert sources.sha256_file(stock_dist.dist / relative) == digest
    assert "==> apachews done" in (stock_dist.dist / "build.log").read_text()
    assert not [p for p in stock_dist.dist.parent.iterdir() if p.name.startswith(".apachews-build-")]


def test_built_httpd_runs_the_module(stock_dist: build.BuildResult) -> None:
    from apachews import verify

    server = httpd.locate(prefix=stock_dist.dist / "httpd")
    assert str(server.version) == TEST_HTTPD
    report = verify.run(server, setup=verify.ServerSetup(module=stock_dist.module), checks=["handshake", "echo-text"])
    assert report.ok, report.table()
    assert report.tunnelling == "apachews"


def test_backport_build_runs_the_full_suite(stock_dist: build.BuildResult, release, tmp_path: Path) -> None:
    from apachews import module, verify

    # Built after the stock one, in the same workspace volume: only our module's source changed.
    result = build.build(BuildPlan(release, source=FROM_PYPI, backport=True, with_httpd=True, out_dir=tmp_path))
    assert "files changed" in (result.dist / "build.log").read_text()
    info = json.loads((result.dist / "build.json").read_text())
    assert info["kind"] == "backport" and info["backport"] is True
    assert info["patches"][0]["sha256"] == hashlib.sha256(module.source_text().encode()).hexdigest()
    assert sources.sha256_file(result.module) != sources.sha256_file(stock_dist.module)
    report = verify.run(httpd.locate(prefix=result.dist / "httpd"), setup=verify.ServerSetup(module=result.module))
    assert report.ok, report.table()


def test_module_loads_into_the_system_apache(stock_dist: build.BuildResult, system_httpd: httpd.Httpd) -> None:
    snippet = {
        "m.conf": "LoadModule proxy_module modules/mod_proxy.so\n"
        "LoadModule proxy_wstunnel_module modules/mod_proxy_wstunnel.so\n"
    }
    with httpd.ServerRoot(system_httpd, snippet, extra_modules={"proxy_wstunnel": stock_dist.module}) as root:
        result = root.syntax_check()
    assert result.ok, result.output


def test_compile_error_names_the_step_and_leaves_nothing(
    base_image: str, release, httpd24_tree: Path, tmp_path: Path
) -> None:
    (httpd24_tree / "modules/proxy/mod_proxy_wstunnel.c").write_text("this is not C;\n")
    out = tmp_path / "dist"
    with pytest.raises(JobFailed) as caught:
        build.build(BuildPlan(release, source=sources.SourceOptions(source=httpd24_tree), out_dir=out))
    error = caught.value
    assert error.details["step"] == "module"
    assert "mod_proxy_wstunnel.c" in (error.hint or "")
    assert Path(str(error.details["log"])).exists()
    assert list(out.iterdir()) == []
    # Its container is gone (other builds may run on this engine at the same time: look for this one only).
    assert images.client().containers.list(all=True, filters={"name": f"^/{error.details['container']}$"}) == []


def test_no_docker_engine_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    result = CliRunner().invoke(main, ["build", "--apache", TEST_HTTPD, "--from-pypi", "--json"])
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and "--builder local" in payload["hint"]


def test_unknown_version_changes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["build", "--apache", "2.3.99", "-o", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "base, family, says",
    [
        ("centos:6", "yum", "yum install"),
        ("ubuntu:12.04", "apt", "dpkg -s"),
        ("apachews/base:bookworm", "apt", "dpkg -s"),
    ],
)
def test_dockerfile_templates_per_family(base: str, family: str, says: str) -> None:
    assert distros.build_base().family_of(base) == family
    assert says in images.render_dockerfile(base)


class _Images:
    def __init__(self, labels: dict[str, str] | None) -> None:
        self.labels = labels

    def get(self, tag: str):
        if self.labels is None:
            raise images.ImageNotFound(tag)
        return type("Image", (), {"labels": self.labels, "id": "sha256:x"})()


def test_a_base_made_from_another_package_list_is_stale() -> None:
    """libssl-dev joined the build packages: a base bootstrapped before that is made again, not reused."""
    assert "libssl-dev" in images.BUILD_PACKAGES
    current = images.packages_fingerprint(images.BUILD_PACKAGES)
    engine = type("Engine", (), {})()
    for labels, stale in (
        ({images.LABEL: "base", images.PACKAGES_LABEL: current}, False),
        ({images.LABEL: "base", images.PACKAGES_LABEL: images.packages_fingerprint(("build-essential",))}, True),
        ({images.LABEL: "base"}, True),  # made before the label
        (None, False),  # no image: not stale, missing (bootstrap makes it)
    ):
        engine.images = _Images(labels)
        assert images.is_stale(engine, "apachews/base:bookworm") is stale, labels


def test_the_base_image_is_labelled_with_its_package_list(docker_engine, base_image: str) -> None:
    assert not images.is_stale(docker_engine, base_image)
    assert images.image_packages(docker_engine, base_image) == images.packages_fingerprint(images.BUILD_PACKAGES)


def test_a_24_build_has_mod_ssl_with_openssl_linked_in_and_its_tls_checks_pass(
    stock_dist: build.BuildResult,
) -> None:
    """2.4.52+ builds mod_ssl against the image's OpenSSL 3 (libssl-dev), its static libraries linked in."""
    from apachews import verify

    info = json.loads((stock_dist.dist / "build.json").read_text())
    assert info["ssl"]["mode"] == "system" and info["ssl"]["mod_ssl"] and info["ssl"]["linked"] == "static"
    assert "OpenSSL: the image's 3." in (stock_dist.dist / "build.log").read_text()
    mod_ssl = stock_dist.dist / "httpd" / "modules" / "mod_ssl.so"
    needed = subprocess.run(["readelf", "-d", str(mod_ssl)], capture_output=True, text=True, check=True).stdout
    assert "libssl" not in needed and "libcrypto" not in needed  # the dist needs no OpenSSL of the server
    server = httpd.locate(prefix=stock_dist.dist / "httpd")
    tls = ["tls-front", "tls-backend", "tls-abrupt-disconnect", "tls-backend-abrupt-disconnect"]
    report = verify.run(server, checks=tls)
    assert report.ok and [check.name for check in report.checks if check.skipped] == [], report.table()


def test_builder_image_follows_its_base(docker_engine, base_image: str) -> None:
    """A re-bootstrapped base (another image under the same name) gets a new builder, not the stale one."""
    name = "apachews/test-base:rebootstrapped"
    docker_engine.api.tag(base_image, "apachews/test-base", "rebootstrapped")
    try:
        first = images.builder_tag(name)
        dockerfile = f"FROM {name}\nLABEL apachews.test=rebootstrapped\n".encode()
        context = io.BytesIO(images.single_file_tar("Dockerfile", dockerfile))
        docker_engine.images.build(fileobj=context, custom_context=True, tag=name, network_mode="none", rm=True)
        assert images.builder_tag(name) != first
    finally:
        docker_engine.images.remove(name, force=True)


def test_verify_apache_reuses_the_build(stock_dist: build.BuildResult) -> None:
    args = ["verify", "--apache", TEST_HTTPD, "-o", str(stock_dist.dist.parent), "--check", "echo-text", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["httpd"] == str(stock_dist.dist / "httpd" / "bin" / "httpd")
    assert payload["apache"] == TEST_HTTPD


@pytest.mark.slow
def test_local_builder_uses_the_host_toolchain(release, tmp_path: Path, system_httpd: httpd.Httpd) -> None:
    result = build.build(BuildPlan(release, source=FROM_PYPI, builder="local", out_dir=tmp_path))
    info = json.loads((result.dist / "build.json").read_text())
    assert info["builder"] == "local" and info["base_image"] is None and info["image"] is None
    snippet = {"m.conf": "LoadModule proxy_module modules/mod_proxy.so\n"}
    with httpd.ServerRoot(system_httpd, snippet, extra_modules={"proxy_wstunnel": result.module}) as root:
        assert root.syntax_check().ok


# ---- early 2.2 quirks, MPMs, cache keys, unchanged builds -----------------------------------------------------
def _configure_in(httpd_git: Path, tag: str) -> str:
    git_dir = httpd_git / ".git" if (httpd_git / ".git").exists() else httpd_git
    argv = ["git", f"--git-dir={git_dir}", "show", f"{tag}:configure.in"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_shlibtool_quirk_covers_exactly_the_releases_that_need_it(httpd_git: Path) -> None:
    """Each 2.2 release whose configure.in links DSOs with libtool 1.4/1.5 only (else a shlibtool made by
    libtool 1.3's ltconfig) gets SH_LIBTOOL=$(LIBTOOL) from the data; the others get nothing."""
    for release in catalogue.load().expand("all-2.2"):
        text = _configure_in(httpd_git, str(release.version))
        needs = "*1.[[45]]*)" in text and "[[2-9]].[[0-9]]" not in text
        make_vars = dict(toolchain.recipe(release.version).make_vars)
        assert (make_vars == {"SH_LIBTOOL": "$(LIBTOOL)"}) == needs, release.version


def test_make_vars_reach_make_and_make_install() -> None:
    script = build.render_script(BuildPlan("2.2.3").recipe, 2, True)
    assert "make -j2 'SH_LIBTOOL=$(LIBTOOL)'" in script
    assert "make install DESTDIR=\"$ROOT/install\" 'SH_LIBTOOL=$(LIBTOOL)'" in script
    assert "SH_LIBTOOL" not in build.render_script(BuildPlan("2.2.11").recipe, 2, True)
    # Without the httpd install, only the module is made (its link needs the same variables).
    module_only = build.render_script(BuildPlan("2.2.3").recipe, 2, False)
    assert "make -C modules/proxy mod_proxy_wstunnel.la 'SH_LIBTOOL=$(LIBTOOL)'" in module_only
    assert "make -j2" not in module_only


@pytest.mark.parametrize(
    "version, mpm, expected",
    [
        ("2.2.31", "", "prefork"),
        ("2.2.31", "worker", "worker"),
        ("2.4.4", "", "event"),
        ("2.4.4", "prefork", "prefork"),
    ],
)
def test_mpm_default_and_choice(version: str, mpm: str, expected: str) -> None:
    plan = BuildPlan(version, mpm=mpm)
    assert plan.mpm == expected
    assert plan.recipe.configure_args[-1] == f"--with-mpm={expected}"
    assert plan.to_dict()["mpm"] == expected


def test_mpm_is_part_of_both_cache_keys_with_httpd_only_of_the_result() -> None:
    prefork, worker = BuildPlan("2.2.31"), BuildPlan("2.2.31", mpm="worker")
    for scope in ("result", "workspace"):
        assert prefork.cache_key("img", scope) != worker.cache_key("img", scope)  # type: ignore[arg-type]
    # `make install` is the only difference: one configured tree serves both.
    installed = BuildPlan("2.2.31", with_httpd=True)
    assert installed.cache_key("img", "workspace") == prefork.cache_key("img", "workspace")
    assert installed.cache_key("img") != prefork.cache_key("img")


def test_unknown_mpm_for_the_release_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="event MPM"):
        BuildPlan("2.2.31", mpm="event")
    result = CliRunner().invoke(main, ["build", "--apache", "2.2.31", "--mpm", "event", "--json", "-o", str(tmp_path)])
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert "--mpm prefork or --mpm worker" in payload["hint"]
    assert list(tmp_path.iterdir()) == []


def test_up_to_date_needs_the_same_inputs_and_intact_files(tmp_path: Path) -> None:
    dist = tmp_path / "httpd-2.2.31"
    (dist / "modules").mkdir(parents=True)
    so = dist / "modules" / "mod_proxy_wstunnel.so"
    so.write_bytes(b"module")
    info = {"input_digest": "abc", "artifacts": {"modules/mod_proxy_wstunnel.so": sources.sha256_file(so)}}
    (dist / "build.json").write_text(json.dumps(info))
    assert build._up_to_date(dist, "abc") == info
    assert build._up_to_date(dist, "abd") is None
    so.write_bytes(b"changed by hand")
    assert build._up_to_date(dist, "abc") is None
    so.unlink()
    assert build._up_to_date(dist, "abc") is None


def test_unchanged_build_is_not_rebuilt(stock_dist: build.BuildResult, release) -> None:
    before = (stock_dist.dist / "build.json").read_text()
    plan = BuildPlan(release, source=FROM_PYPI, with_httpd=True, out_dir=stock_dist.dist.parent)
    again = build.build(plan)
    assert again.info.get("reused") is True
    assert (stock_dist.dist / "build.json").read_text() == before


def _server_mpm(dist: Path) -> str:
    return Dist(dist).httpd().installation.mpm()


@pytest.mark.parametrize("version, mpm", [("2.2.3", ""), ("2.2.31", "worker")])
def test_git_release_builds_and_tunnels(base_image: str, httpd_git: Path, tmp_path: Path, version: str, mpm: str):
    """2.2.3 (RHEL/CentOS 5) needs the shlibtool quirk; 2.2.31 with the worker MPM. Both from git tags."""
    from apachews import verify

    plan = BuildPlan(version, source=sources.SourceOptions(git=httpd_git), with_httpd=True, mpm=mpm, out_dir=tmp_path)
    result = build.build(plan)
    info = Dist(result.dist).info()
    assert info["mpm"] == plan.mpm and _server_mpm(result.dist) == plan.mpm
    report = verify.run(
        httpd.locate(prefix=result.dist / "httpd"), setup=verify.ServerSetup(module=result.module), checks=["handshake"]
    )
    assert report.ok, report.table()


# ---- the glibc floor: every module loads on its family's oldest distribution -----------------------------------
def _objdump_highest_glibc(so: Path) -> GlibcVersion:
    """The highest GLIBC_x.y `objdump -T` lists (a second reader beside apachews.binary)."""
    text = subprocess.run(["objdump", "-T", str(so)], capture_output=True, text=True, check=True).stdout
    return max(GlibcVersion.parse(w.strip("()")) for w in text.split() if w.strip("()").startswith("GLIBC_"))


def _assert_within_family_floor(result: build.BuildResult, family: str) -> dict:
    info = json.loads((result.dist / "build.json").read_text())
    module_info = info["module"]
    asked = distros.family_floor(family)
    assert module_info["floor"]["glibc"] == str(asked) and module_info["floor"]["target"] is None
    needed = GlibcVersion.parse(module_info["glibc_floor"])
    assert needed <= asked, module_info
    assert _objdump_highest_glibc(result.module) == needed
    assert info["module_compiler"].startswith("zig ") and f"linux-gnu.{asked}" in info["module_compiler"]
    assert module_info["machine"] == "x86_64" and module_info["mmn"].split(":")[0] == str(
        distros.shipping(family)[0].mmn
    )
    return info


def test_pypi_backport_module_needs_at_most_the_24_floor(
    base_image: str, debian11_image: str, docker_engine, tmp_path: Path
) -> None:
    """`apachews build --apache 2.4.69 --from-pypi --backport`: the module binds to nothing above CentOS 7's
    glibc, per build.json and objdump; the text and --json say so; Debian 11's own apache2 loads it."""
    args = ["build", "--apache", TEST_HTTPD, "--from-pypi", "--backport", "-o", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    built = build.BuildResult(Path(payload["dist"]), Path(payload["module"]), payload["build"])
    info = _assert_within_family_floor(built, "2.4")
    assert payload["build"]["module"] == info["module"]
    text = CliRunner().invoke(main, args).output  # kept: same inputs
    assert f"module: x86_64, needs glibc >= {info['module']['glibc_floor']} (floor 2.17 asked" in text
    ok, output = loads_in(debian11_image, docker_engine, built.module)
    assert ok, output


def test_git_22_module_needs_at_most_the_22_floor(base_image: str, httpd_git: Path, tmp_path: Path) -> None:
    """`apachews build --apache 2.2.15 --git ...` (CentOS 6's release): within CentOS 5's glibc."""
    plan = BuildPlan("2.2.15", source=sources.SourceOptions(git=httpd_git), out_dir=tmp_path)
    info = _assert_within_family_floor(build.build(plan), "2.2")
    assert {"centos5", "centos6"} <= set(info["module"]["floor"]["loads_on"])


# ---- EL8 (2.4.37) and Ubuntu 20.04 (2.4.41): no upgrade=websocket, a stock mod_proxy_wstunnel ------------------
# No mod-wsgi-httpd sdist carries either release: their trees come from $APACHEWS_HTTPD_GIT, and their mod_ssl
# (before 2.4.52: no OpenSSL 3) from $APACHEWS_OPENSSL_GIT's 1.0.2 (skipped, saying so, without either).
# Each release is built twice in one workspace (the stock tree, then our module: only the module recompiles),
# and verified with every preset and TLS case in the style `config` and `install` choose for it.
STUCK_RELEASES = ("2.4.37", "2.4.41")
# The stock tunnel closes the backend with a FIN only: a backend that never closes on EOF (broadwayd) stays in
# CLOSE-WAIT, so the abrupt-disconnect checks are red there by design (the apachews module resets it).
STOCK_RED_BY_DESIGN = {"abrupt-disconnect", "tls-abrupt-disconnect", "tls-backend-abrupt-disconnect"}


@pytest.fixture(scope="module")
def stuck_dists(
    base_image: str, httpd_git: Path, openssl_git: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
):
    """Factory: stuck_dists("2.4.37", backport) -> that release's dist with mod_ssl, built once per module."""
    made: dict[tuple[str, bool], build.BuildResult] = {}

    def make(version: str, backport: bool) -> build.BuildResult:
        if (version, backport) not in made:
            out = tmp_path_factory.mktemp(f"{version}-{'backport' if backport else 'stock'}")
            source = sources.SourceOptions(git=httpd_git)
            openssl = OpenSSLOptions(git=openssl_git[0], ref=openssl_git[1])
            plan = BuildPlan(version, source=source, backport=backport, with_httpd=True, out_dir=out, openssl=openssl)
            made[version, backport] = build.build(plan)
            assert made[version, backport].info["ssl"]["linked"] == "static"
        return made[version, backport]

    return make


def _verify_all(server: httpd.Httpd, **options):
    """verify every preset and TLS case; prints the figures the README's table records (pytest -rP)."""
    import time

    from apachews import verify

    started = time.monotonic()
    reports = verify.run_presets(server, verify.setup_names("all"), **options)
    orphans = {
        name: max([c.figure for r in reports for c in r.checks if c.name == name and c.figure is not None] or [-1.0])
        for name in ("abrupt-disconnect", "tls-abrupt-disconnect", "tls-backend-abrupt-disconnect")
    }
    print(f"Apache {server.version}: {time.monotonic() - started:.0f} s, worst orphan close s: {orphans}")
    print(verify.summary(reports))
    return reports


@pytest.mark.slow
@pytest.mark.parametrize("version", STUCK_RELEASES)
def test_stuck_release_verifies_with_the_stock_wstunnel_config_chooses(stuck_dists, version: str) -> None:
    from apachews import config, install, verify

    built = stuck_dists(version, False)
    prefer, handoff, notes = install.tunnel_choice(version, str(built.info["mpm"]), None)
    assert (prefer, handoff) == (None, False) and "CVE-2019-17567" in notes[0] and "--backport" in notes[0]
    rendering = config.render("generic", apache=version)
    assert any("CVE-2019-17567" in note and "--prefer apachews --handoff" in note for note in rendering.notes)
    server = httpd.locate(prefix=built.dist / "httpd")
    assert str(server.version) == version and server.has_module("ssl")
    reports = _verify_all(server)
    assert {report.tunnelling for report in reports} == {"wstunnel"}
    failed = {check.name for report in reports for check in report.checks if not check.passed}
    assert failed <= STOCK_RED_BY_DESIGN, verify.summary(reports)
    tls = [c for r in reports for c in r.checks if c.name in ("tls-front", "tls-backend") and not c.skipped]
    assert tls and all(check.passed for check in tls), verify.summary(reports)


@pytest.mark.slow
@pytest.mark.parametrize("version", STUCK_RELEASES)
def test_stuck_release_verifies_with_the_apachews_module_and_handoff(stuck_dists, version: str) -> None:
    from apachews import install, verify

    stuck_dists(version, False)  # the stock build first: this one then recompiles only the module
    built = stuck_dists(version, True)
    prefer, handoff, notes = install.tunnel_choice(version, str(built.info["mpm"]), built.module)
    assert (prefer, handoff) == ("apachews", True) and "ProxyWebsocketHandoff On" in notes[0]
    server = httpd.locate(prefix=built.dist / "httpd")
    reports = _verify_all(server, setup=verify.ServerSetup(module=built.module, prefer=prefer, handoff=handoff))
    assert {report.tunnelling for report in reports} == {"apachews"}
    assert all(report.ok for report in reports), verify.summary(reports)
    skipped = {check.name for report in reports for check in report.checks if check.skipped}
    # capacity runs only with --max-websockets; h2-websocket only on 2.4.58+ (H2WebSockets)
    assert skipped <= {"capacity", "h2-websocket"}, verify.summary(reports)
