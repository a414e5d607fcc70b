"""verify on a real older distribution: Debian 11's own apache2 2.4.62 (glibc 2.31), from Debian's packages, run
in a container of its root on this host's loopback, in Debian's layout with mod_reqtimeout as shipped.

The tunnel is proven there (every preset, every style that applies), not only that the module loads; a module
that needs the build host's newer glibc is refused, and Debian 11's own loader refuses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import binary, config, images, target, verify
from apachews.cli import main
from apachews.errors import BadInput
from apachews.httpd import Httpd, Mount
from apachews.progress import Progress
from tests.fixtures.sources import TEST_HTTPD
from tests.fixtures.target import TARGET

PRESETS = [p.name for p in config.list_presets()]
# The builds users make run every preset in test_every_preset_is_green_on_debian11_with_a_module_built_for_the_floor;
# the other modules and styles run these (one of each route shape: ws, http+ws, mixed, balancer, balanced),
# or every preset with APACHEWS_TEST_ALL_PRESETS=1 (the README's table was taken that way).
SHAPES = ["generic", "gateone", "jupyter", "balancer", "socketio-balanced"]
SOME_PRESETS = PRESETS if os.environ.get("APACHEWS_TEST_ALL_PRESETS") else SHAPES


def _our_containers(engine, owner: int | None = None) -> list[str]:
    """The target containers a run (this process, or `owner`) made and has not removed."""
    labels = [f"{images.LABEL}={target.RUN_LABEL}", f"{target.OWNER_LABEL}={owner or os.getpid()}"]
    return [c.name for c in engine.containers.list(all=True, filters={"label": labels})]


def test_the_target_is_debian11s_own_apache_with_an_older_glibc(debian11_target: Httpd) -> None:
    assert str(debian11_target.version) == "2.4.62"
    assert debian11_target.runner is not None
    runner = debian11_target.runner
    assert isinstance(runner, target.ContainerRunner)
    assert runner.glibc == binary.GlibcVersion.parse("2.31")
    assert runner.glibc < binary.GlibcVersion.parse(os.confstr("CS_GNU_LIBC_VERSION").split()[-1])
    assert (runner.conf_tree / "mods-enabled" / "reqtimeout.load").is_symlink()  # as Debian ships it
    assert debian11_target.has_module("ssl") and not debian11_target.has_module("no_such_thing")


def test_the_tunnel_runs_inside_debian11s_apache_and_libc(
    debian11_target: Httpd, floor_module: Path, docker_engine
) -> None:
    """The module loaded by Debian 11's apache2 with Debian 11's libc carries WebSockets, through a graceful
    restart signalled from this host; nothing is left running after."""
    assert binary.inspect_module(floor_module).glibc_floor <= binary.GlibcVersion.parse("2.17")
    with verify.running_proxy(
        debian11_target, preset="jupyter", setup=verify.ServerSetup(module=floor_module)
    ) as proxy:
        conf = proxy.server.server_root
        assert (conf / "mods-enabled" / "reqtimeout.load").is_symlink()
        assert (conf / "sites-enabled" / "000-default.conf").is_symlink()
        process = proxy.server.process
        assert process is not None
        # Apache reads its config twice when it starts, unloading the modules in between: past the second read
        # it says "resuming normal operations".
        log = proxy.server.error_log.read_text
        assert _wait(lambda: "resuming normal operations" in log())
        maps = Path(f"/proc/{process.pid}/maps").read_text()
        assert "mod_proxy_wstunnel_apachews.so" in maps  # this host sees the container's Apache
        assert "libc-2.31.so" in maps  # ... and the libc it runs on is Debian 11's
        names = ["handshake", "echo-1mib", "abrupt-disconnect", "idle", "app-routes", "tls-front"]
        checks = asyncio.run(verify.run_checks(proxy.target, names, Progress()))
        assert all(c.passed for c in checks), [(c.name, c.detail) for c in checks if not c.passed]
        os.kill(process.pid, signal.SIGUSR1)  # apache2ctl graceful, from this host
        assert _wait(lambda: "resuming normal operations" in log().partition("SIGUSR1")[2])
        again = asyncio.run(verify.run_checks(proxy.target, ["echo-text"], Progress()))
        assert again[0].passed, again[0].detail
    assert _our_containers(docker_engine) == []


def _wait(predicate, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_every_preset_is_green_on_debian11_with_a_module_built_for_the_floor(
    debian11_target: Httpd, floor_module: Path
) -> None:
    reports = verify.run_presets(debian11_target, PRESETS, setup=verify.ServerSetup(module=floor_module))
    assert all(r.ok for r in reports), verify.summary(reports)
    assert {r.tunnelling for r in reports} == {"apachews"} and {r.layout for r in reports} == {"debian"}


def _build_side() -> None:
    """The modules users get come from the build side's glibc floor (apachews.floor) and --dev-package."""
    if importlib.util.find_spec("apachews.floor") is None or importlib.util.find_spec("apachews.devpackage") is None:
        pytest.skip("this checkout builds no module for a glibc floor yet (apachews.floor, build --dev-package)")


@pytest.mark.slow
def test_every_preset_is_green_on_debian11_with_the_default_backport_build(
    debian11_target: Httpd, base_image: str, tmp_path: Path
) -> None:
    """`apachews build --apache 2.4.69 --from-pypi --backport`, as a user runs it, then verify --dist on Debian 11."""
    _build_side()
    built = CliRunner().invoke(
        main, ["build", "--apache", TEST_HTTPD, "--from-pypi", "--backport", "-o", str(tmp_path)]
    )
    assert built.exit_code == 0, built.output
    dist = tmp_path / f"httpd-{TEST_HTTPD}"
    presets = "all" if SOME_PRESETS == PRESETS else ",".join(SOME_PRESETS)
    result = CliRunner().invoke(
        main, ["verify", "--target", TARGET, "--dist", str(dist), "--preset", presets, "--json"]
    )
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)["reports"]
    assert [r["preset"] for r in reports][: len(SOME_PRESETS)] == SOME_PRESETS
    assert all(r["tunnelling"] == "apachews" for r in reports)
    assert all(r["passed"] == r["total"] - r["skipped"] > 0 for r in reports), result.stdout


@pytest.mark.slow
def test_every_preset_is_green_on_debian11_with_its_own_dev_packages(
    debian11_target: Httpd, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`apachews build --dev-package` with Debian 11's apache2-dev, libapr1-dev and libaprutil1-dev."""
    _build_side()
    debs = request.getfixturevalue("debian11_dev_packages")
    built = CliRunner().invoke(main, ["build", "--dev-package", *map(str, debs), "-o", str(tmp_path)])
    assert built.exit_code == 0, built.output
    (dist,) = tmp_path.glob(f"{TARGET}-*")
    reports = verify.run_presets(
        debian11_target, SOME_PRESETS, setup=verify.ServerSetup(module=dist / "modules" / "mod_proxy_wstunnel.so")
    )
    assert all(r.ok for r in reports), verify.summary(reports)


@pytest.mark.slow
@pytest.mark.parametrize("style", ["wstunnel", "http-upgrade"])
def test_debian11s_own_styles_pass_all_but_the_half_open_backend(debian11_target: Httpd, style: str) -> None:
    # Stock tunnels close the backend with a FIN only, so a backend that never closes on EOF (broadwayd) is
    # left in CLOSE-WAIT: abrupt-disconnect is red there by design, every other check green.
    reports = verify.run_presets(debian11_target, SOME_PRESETS, setup=verify.ServerSetup(prefer=style))
    failed = {(r.preset, c.name) for r in reports for c in r.checks if not c.passed}
    details = [f"{r.preset} {c.name}: {c.detail}" for r in reports for c in r.checks if not c.passed]
    assert failed == {(r.preset, "abrupt-disconnect") for r in reports}, "\n".join([verify.summary(reports), *details])
    assert {r.tunnelling for r in reports} == {style}


def test_a_module_built_on_this_host_is_refused_naming_glibc_and_the_build_to_make(
    debian11_target: Httpd, host_module: Path, docker_engine
) -> None:
    assert binary.inspect_module(host_module).glibc_floor > binary.GlibcVersion.parse("2.31")
    with pytest.raises(BadInput) as refused:
        verify.run(debian11_target, setup=verify.ServerSetup(module=host_module), checks=["handshake"])
    assert "GLIBC_2.34" in refused.value.message and "pthread_create" in refused.value.message
    assert refused.value.hint is not None and "--target debian11" in refused.value.hint
    # Debian 11's own loader says the same.
    loaded = debian11_target.run(
        "-t",
        "-f",
        "/dev/null",
        "-C",
        "LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so",
        "-C",
        f"LoadModule proxy_wstunnel_module {host_module}",
        mounts=[Mount(host_module, read_only=True)],
    )
    assert loaded.returncode != 0 and "version `GLIBC_2.34' not found" in loaded.stderr
    assert _our_containers(docker_engine) == []


def test_a_config_apache_rejects_leaves_no_container(debian11_target: Httpd, floor_module: Path, docker_engine) -> None:
    def broken(files: dict[str, str]) -> dict[str, str]:
        return {name: text + "\nNoSuchDirective on\n" for name, text in files.items()}

    with pytest.raises(Exception, match="NoSuchDirective"):
        verify.run(debian11_target, setup=verify.ServerSetup(module=floor_module), edit=broken, checks=["handshake"])
    assert _our_containers(docker_engine) == []


def _serving(engine, owner: int) -> bool:
    labels = [f"{images.LABEL}={target.RUN_LABEL}", f"{target.OWNER_LABEL}={owner}"]
    running = engine.containers.list(filters={"label": labels})
    return any(c.attrs["HostConfig"]["NetworkMode"] == "host" for c in running)


def test_sigterm_mid_run_removes_the_container(floor_module: Path, debian11_target: Httpd, docker_engine) -> None:
    argv = [sys.executable, "-m", "apachews", "verify", "--target", TARGET, "--module", str(floor_module)]
    cli = subprocess.Popen([*argv, "--check", "idle"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert _wait(lambda: _serving(docker_engine, cli.pid), 60)  # Apache is up, on this host's network
        cli.send_signal(signal.SIGTERM)
        cli.wait(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 143, cli.stdout.read().decode() if cli.stdout else ""
    assert _our_containers(docker_engine, cli.pid) == []


def test_cli_verify_target_with_a_build_output(debian11_target: Httpd, floor_module: Path, tmp_path: Path) -> None:
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "mod_proxy_wstunnel.so").write_bytes(floor_module.read_bytes())
    (tmp_path / "build.json").write_text('{"apache": "2.4.69", "backport": true}')
    result = CliRunner().invoke(main, ["verify", "--target", TARGET, "--dist", str(tmp_path), "--check", "handshake"])
    assert result.exit_code == 0, result.output
    assert "Apache 2.4.62 (/usr/sbin/apache2 in Debian 11" in result.output
    assert "tunnelling via apachews" in result.output


def test_cli_target_refuses_what_does_not_go_with_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["verify", "--target", TARGET, "--httpd", "/usr/sbin/apache2"])
    assert result.exit_code == 2 and "--target" in result.output
    result = CliRunner().invoke(main, ["verify", "--target", TARGET, "--dist", str(tmp_path)])
    assert result.exit_code == 2 and "no build.json" in result.output


def test_containers_of_a_killed_run_are_removed_by_the_next(debian11_target: Httpd, docker_engine) -> None:
    """A run killed with SIGKILL cleans nothing up: the next locate() removes what its dead process left."""
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid is now nobody's (until reused)
    labels = {images.LABEL: target.RUN_LABEL, target.OWNER_LABEL: str(dead.pid)}
    left = docker_engine.containers.create(images.target_tag(TARGET), ["sleep", "600"], labels=labels)
    left.start()
    try:
        assert left.name in target.remove_orphans(docker_engine)
        assert _our_containers(docker_engine, dead.pid) == []
    finally:
        with contextlib.suppress(Exception):
            left.remove(force=True)


def test_cli_target_names_the_targets_that_run() -> None:
    result = CliRunner().invoke(main, ["verify", "--target", "centos6"])
    assert result.exit_code == 2 and "CentOS 6" in result.output and "debian11" in result.output
    result = CliRunner().invoke(main, ["verify", "--target", "no-such-distro"])
    assert result.exit_code == 2 and "debian11" in result.output
