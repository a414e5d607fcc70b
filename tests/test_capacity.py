"""Capacity (#19, guard first): how many WebSockets an MPM holds, what it leaves for HTTP, the sizing for N.

The arithmetic is checked against httpd itself (its `-t` warnings where it adjusts MPM settings), the sizing
files against golden files and a real `httpd -t`, doctor against a copy of Debian's tree, and the verify
check `capacity` against a real Apache: red on Debian's stock event MPM (150 workers) with 160 WebSockets open,
green on the same server sized by apachews.

Regenerate the golden files after an intended change: APACHEWS_REGEN_GOLDEN=1 pytest tests/test_capacity.py
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import __version__, capacity, config, distros, doctor, verify
from apachews.capacity import Settings
from apachews.cli import main
from apachews.distros import trees
from apachews.errors import BadInput, JobFailed
from apachews.httpd import Httpd, ServerRoot
from tests import debian_tree

GOLDEN = Path(__file__).parent / "golden" / "capacity"
DEBIAN_STOCK = Settings("2.4", "event", thread_limit=64, threads_per_child=25, max_workers=150)


def _drop_sizing(files: dict[str, str]) -> dict[str, str]:
    """The same verify with the MPM sizing left out: the server keeps its stock workers."""
    return {name: text for name, text in files.items() if "apachews-capacity" not in name}


# -- the arithmetic -------------------------------------------------------------------------------------------
def test_httpd_defaults_per_family_and_mpm() -> None:
    assert capacity.compute(capacity.defaults("2.4", "event")).workers == 400  # 16 x 25
    assert capacity.compute(capacity.defaults("2.4", "worker")).processes == 16
    assert capacity.compute(capacity.defaults("2.4", "prefork")).workers == 256
    assert capacity.compute(capacity.defaults("2.2", "prefork")).workers == 256
    assert capacity.compute(capacity.defaults("2.2", "worker")).workers == 400
    # Without MaxRequestWorkers, 2.4 keeps 400 workers whatever ThreadsPerChild says; 2.2 keeps 16 children.
    assert capacity.compute(Settings("2.4", "event", threads_per_child=50)).workers == 400
    assert capacity.compute(Settings("2.2", "worker", threads_per_child=50)).workers == 800
    stock = capacity.compute(DEBIAN_STOCK)
    assert (stock.workers, stock.processes, stock.adjustments) == (150, 6, ())
    with pytest.raises(BadInput, match="MPM 'winnt'"):
        capacity.defaults("2.4", "winnt")


# Settings httpd adjusts at start, with the workers it ends up with (it says so in `httpd -t`).
ADJUSTED = [
    ("event", "MaxRequestWorkers 77", 75),
    ("event", "MaxRequestWorkers 10", 25),
    ("event", "MaxRequestWorkers 1000", 400),
    ("event", "ThreadsPerChild 80", 384),
    ("worker", "ServerLimit 2\nMaxRequestWorkers 100", 50),
    ("prefork", "MaxRequestWorkers 300", 256),
]


def _parse(mpm: str, text: str) -> Settings:
    values = dict(line.split() for line in text.splitlines())
    as_int = {name: int(value) for name, value in values.items()}
    return Settings(
        "2.4",
        mpm,
        server_limit=as_int.get("ServerLimit"),
        thread_limit=as_int.get("ThreadLimit"),
        threads_per_child=as_int.get("ThreadsPerChild"),
        max_workers=as_int.get("MaxRequestWorkers"),
    )


@pytest.mark.parametrize(("mpm", "directives", "workers"), ADJUSTED)
def test_adjustments_are_the_ones_httpd_makes(system_httpd: Httpd, mpm: str, directives: str, workers: int) -> None:
    result = capacity.compute(_parse(mpm, directives))
    assert result.workers == workers and result.adjustments
    with ServerRoot(system_httpd, {"mpm.conf": directives + "\n"}, mpm=mpm) as root:
        said = root.syntax_check()
    assert said.ok and said.warnings, said.output  # httpd adjusts it too, and says so
    assert str(workers) in " ".join(said.warnings), said.warnings


def test_settings_httpd_takes_as_they_are_need_no_adjustment(system_httpd: Httpd) -> None:
    with ServerRoot(system_httpd, {"mpm.conf": "ThreadsPerChild 25\nMaxRequestWorkers 150\n"}, mpm="event") as root:
        assert root.syntax_check().clean
    assert capacity.compute(DEBIAN_STOCK).adjustments == ()


def test_what_n_websockets_leave_for_http() -> None:
    stock = capacity.compute(DEBIAN_STOCK)
    assert stock.http_left(100) == 50
    assert stock.http_left(150) == 0  # every worker held: plain HTTP stops
    assert stock.http_left(160) == -10  # and 10 WebSockets wait as well
    assert stock.websockets_leaving(25) == 125
    prefork = capacity.compute(Settings("2.2", "prefork", max_workers=150))
    assert prefork.http_left(150) == 0 and not prefork.threaded
    # With handoff, a child's event loop holds (soft limit - 64) / 2 tunnels; only the rest hold workers.
    handed = capacity.compute(Settings("2.4", "event", max_workers=150, handoff=True, open_files=2048))
    assert handed.loop_tunnels_per_child == 992
    assert handed.http_left(1000) == 150 - 8
    # Under prefork the tunnel keeper (one process, the same loop) holds them: 1000 leave all 150 for HTTP.
    keeper = capacity.compute(Settings("2.2", "prefork", max_workers=150, handoff=True, open_files=65536))
    assert keeper.handoff and keeper.loop_tunnels_per_child == 32736 and keeper.http_left(1000) == 150


def test_sizing_for_1000_on_debian_stock() -> None:
    sizing = capacity.size(capacity.compute(DEBIAN_STOCK), 1000)
    # 46 children of 25; ServerLimit leaves as many slots again for children finishing their tunnels after a
    # graceful restart, beside their successors.
    assert sizing.directives() == [("ServerLimit", 92), ("ThreadsPerChild", 25), ("MaxRequestWorkers", 1150)]
    assert sizing.processes == 46
    assert sizing.http_reserve == 150  # default: what the server has now
    assert not sizing.open_files_raise  # a child holds 25 tunnels: 114 descriptors
    assert capacity.sized(sizing).http_left(1000) == 150
    small = capacity.size(capacity.compute(DEBIAN_STOCK), 10, http_reserve=10)
    assert small.max_workers == 25  # at least one child
    handed = capacity.size(capacity.compute(DEBIAN_STOCK), 1000, handoff=True)
    assert (handed.max_workers, handed.open_files) == (175, 3072)  # 150 HTTP + 25 handshakes; 2 x 1000 + 64
    assert capacity.sized(handed, handed.open_files).http_left(1000) == 175
    # Past 65536 open files a child's loop holds no more (the module's cap): the limit stops there.
    assert capacity.size(capacity.compute(DEBIAN_STOCK), 50_000, handoff=True).open_files == 65536


def test_22_sizing_orders_the_directives_as_22_reads_them() -> None:
    # 2.2 applies each directive as it reads it: ThreadLimit before ThreadsPerChild, both before MaxClients.
    current = capacity.compute(Settings("2.2", "worker", thread_limit=128, threads_per_child=100))
    names = [name for name, _ in capacity.size(current, 2000).directives()]
    assert names == ["ThreadLimit", "ServerLimit", "ThreadsPerChild", "MaxClients"]


def test_every_sizing_holds_its_websockets_and_needs_no_adjustment() -> None:
    chance = random.Random(19)
    for _ in range(500):
        family, mpm = chance.choice(list(capacity.LIMITS))
        threads = chance.choice([None, 16, 25, 50, 64])
        settings = Settings(
            family, mpm, threads_per_child=threads, max_workers=chance.choice([None, 50, 150, 400, 1000])
        )
        current = capacity.compute(settings)
        wanted = chance.randint(1, 5000 if current.threaded else 600)
        reserve = chance.choice([None, 1, 25, 200])
        try:
            sizing = capacity.size(current, wanted, reserve)
        except BadInput as error:
            assert not current.threaded and "prefork processes" in error.message
            continue
        after = capacity.sized(sizing)
        assert after.adjustments == (), (settings, wanted, after.adjustments)  # httpd would say nothing
        assert after.http_left(wanted) >= sizing.http_reserve >= (reserve or capacity.MIN_HTTP_RESERVE)
        assert after.threads_per_child == current.threads_per_child  # kept
        assert sizing.server_limit == sizing.processes * (capacity.GRACEFUL_SLOTS if current.threaded else 1)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("0", "at least 1"),
        ("-5", "whole number"),
        ("1e3", "whole number"),
        ("1000\nServerLimit 1", "whole number"),
        (True, "not a number"),
        ("100001", "ephemeral ports"),
    ],
)
def test_max_websockets_is_validated(value: object, said: str) -> None:
    with pytest.raises(BadInput) as refused:
        capacity.validate_websockets(value)
    assert said in refused.value.message + (refused.value.hint or "")


def test_prefork_of_thousands_of_processes_is_refused() -> None:
    prefork = capacity.compute(capacity.defaults("2.2", "prefork"))
    assert capacity.size(prefork, 700).max_workers == 956
    with pytest.raises(BadInput) as refused:
        capacity.size(prefork, 1000)
    assert "1256 prefork processes" in refused.value.message and "worker or event" in (refused.value.hint or "")
    with pytest.raises(BadInput, match="open files in the tunnel keeper"):
        capacity.size(prefork, 40_000, handoff=True)


def test_prefork_with_the_keeper_keeps_its_processes_for_http_and_handshakes() -> None:
    stock = capacity.compute(Settings("2.2", "prefork", max_workers=150))
    sizing = capacity.size(stock, 1000, handoff=True)
    assert dict(sizing.directives()) == {"ServerLimit": 150, "MaxClients": 150}  # the stock 150 stay
    assert (sizing.http_reserve, sizing.handshake_workers, sizing.open_files) == (125, 25, 3072)
    assert capacity.sized(sizing).http_left(1000) == 150
    assert capacity.size(stock, 1000, http_reserve=300, handoff=True).max_workers == 325
    one_thread = capacity.compute(Settings("2.4", "worker", threads_per_child=1, max_workers=25))
    with pytest.raises(BadInput, match="compiled-in maximum"):
        capacity.size(one_thread, 100_000)


def test_the_rendered_file_says_what_it_was_made_for() -> None:
    sizing = capacity.size(capacity.compute(DEBIAN_STOCK), 1000)
    text = capacity.render(sizing, __version__, "2.4.71")
    assert capacity.parse_marker(text.splitlines()[0]) == {
        "websockets": "1000",
        "http_reserve": "150",
        "handoff": "off",
        "mpm": "event",
    }
    assert capacity.parse_marker("# something else") is None


# -- config: golden files, notes, httpd -t ----------------------------------------------------------------------
GOLDEN_CASES = {
    "generic-2.4.69-debian-event-1000": ("generic", "2.4.69", "debian", "event", 1000, False, None),
    "gateone-2.2.31-rhel-worker-500": ("gateone", "2.2.31", "rhel", "worker", 500, False, None),
    "generic-2.2.31-generic-prefork-200": ("generic", "2.2.31", "generic", "prefork", 200, False, None),
    "jupyter-2.4.4-gentoo-event-1000-handoff": ("jupyter", "2.4.4", "gentoo", "event", 1000, True, None),
    "novnc-2.4.46-debian-worker-300-handoff": ("novnc", "2.4.46", "debian", "worker", 300, True, "apachews"),
    "balancer-2.2.31-debian-worker-5000-handoff": ("balancer", "2.2.31", "debian", "worker", 5000, True, None),
}


def _golden_rendering(name: str) -> config.Rendering:
    preset, version, distro, mpm, wanted, handoff, prefer = GOLDEN_CASES[name]
    family = version.rsplit(".", 1)[0]
    sizing = capacity.size(capacity.compute(capacity.defaults(family, mpm)), wanted, handoff=handoff)
    backends = ("ws://127.0.0.1:9001/", "ws://127.0.0.1:9002/") if preset == "balancer" else ()
    return config.render(
        preset, apache=version, distro=distro, sizing=sizing, handoff=handoff, prefer=prefer, backends=backends
    )


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden(name: str) -> None:
    rendering = _golden_rendering(name)
    files = {n: t.replace(f"apachews {__version__}:", "apachews VERSION:") for n, t in rendering.files.items()}
    where = GOLDEN / name
    if os.environ.get("APACHEWS_REGEN_GOLDEN"):
        rendering.files = files
        config.write(rendering, where, force=True)
    for file_name, text in files.items():
        assert (where / file_name).read_text() == text, f"{where / file_name} differs (regenerate if intended)"
    assert {str(p.relative_to(where)) for p in where.rglob("*") if p.is_file()} == set(files)


def test_the_sizing_file_goes_where_each_distribution_reads_it_after_its_mpm() -> None:
    sizing = capacity.size(capacity.compute(DEBIAN_STOCK), 1000)
    names = {d: config.render("generic", apache="2.4.69", distro=d, sizing=sizing).capacity_file for d in distros.NAMES}
    assert names == {
        "generic": "apachews-capacity.conf",
        "debian": "conf-available/apachews-capacity.conf",
        "rhel": "conf.d/apachews-capacity.conf",
        "gentoo": "modules.d/76_apachews_capacity.conf",
    }
    sizing_22 = capacity.size(capacity.compute(capacity.defaults("2.2", "worker")), 100)
    assert config.render("generic", apache="2.2.31", distro="debian", sizing=sizing_22).capacity_file == (
        "conf.d/apachews-capacity.conf"
    )
    with pytest.raises(BadInput, match="sizing is for Apache 2.2"):
        config.render("generic", apache="2.4.69", sizing=sizing_22)


def test_notes_say_what_changes_the_restart_and_the_open_files_limit() -> None:
    handed = capacity.size(capacity.compute(capacity.defaults("2.4", "event")), 20_000, handoff=True)
    for distro, where in [
        ("debian", "APACHE_ULIMIT_MAX_FILES='ulimit -n 40960' in /etc/apache2/envvars"),
        ("rhel", "LimitNOFILE=40960"),
        ("gentoo", 'rc_ulimit="-n 40960"'),
        ("generic", "ulimit -n 40960"),
    ]:
        notes = " ".join(config.render("generic", apache="2.4.4", distro=distro, sizing=handed, handoff=True).notes)
        assert where in notes and ("full restart" in notes or "apachectl -k stop" in notes), notes
        assert "MaxRequestWorkers 425" in notes and "under prefork in the tunnel keeper" in notes
    plain = config.render(
        "generic", apache="2.4.69", distro="debian", sizing=capacity.size(capacity.compute(DEBIAN_STOCK), 1000)
    )
    said = " ".join(plain.notes)
    assert "a2enconf apachews-capacity" in said and "systemctl restart apache2" in said
    assert "the usual limit of 1024 is enough" in said
    centos = capacity.size(capacity.compute(capacity.defaults("2.2", "worker")), 20_000, handoff=True)
    notes = " ".join(config.render("generic", apache="2.2.31", distro="rhel", sizing=centos, handoff=True).notes)
    assert "/etc/sysconfig/httpd" in notes and "service httpd restart" in notes


def test_handoff_goes_on_the_modules_routes_only() -> None:
    jupyter = config.render("jupyter", apache="2.2.31", handoff=True).files["apachews-jupyter.conf"]
    assert jupyter.count("ProxyWebsocketHandoff On") == 1  # the one route the module upgrades
    gateone = config.render("gateone", apache="2.4.4", handoff=True).files["apachews-gateone.conf"]
    ws_block = gateone[gateone.index('<Location "/gateone/ws">') :]
    http_block = gateone[gateone.index('<Location "/gateone">') : gateone.index('<Location "/gateone/ws">')]
    assert "ProxyWebsocketHandoff On" in ws_block and "ProxyWebsocketHandoff" not in http_block
    assert "ProxyWebsocketHandoff" not in config.render("gateone", apache="2.4.4").text()
    for version, prefer in [("2.4.69", None), ("2.4.69", "wstunnel"), ("2.4.46", None)]:
        with pytest.raises(BadInput) as refused:
            config.render("generic", apache=version, prefer=prefer, handoff=True)
        assert "--prefer apachews" in (refused.value.hint or "")


@pytest.mark.parametrize("mpm", capacity.MPMS)
@pytest.mark.parametrize("distro", distros.NAMES)
def test_every_24_sizing_passes_httpd_t_without_warnings(system_httpd: Httpd, mpm: str, distro: str) -> None:
    current = capacity.compute(capacity.defaults("2.4", mpm))
    sizing = capacity.size(current, 500 if mpm == "prefork" else 3000)
    rendering = config.render("generic", apache="2.4.69", distro=distro, sizing=sizing)
    assert config.check(rendering).clean
    # A value off by one is what httpd warns about (and lowers): the check can see it.
    name = rendering.capacity_file
    line = f"{sizing.directive} {sizing.max_workers}\n"
    rendering.files[name] = rendering.files[name].replace(line, f"{sizing.directive} {sizing.max_workers + 1}\n")
    assert not config.check(rendering).clean


def test_config_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "conf"
    result = runner.invoke(
        main, ["--json", "config", "gateone", "--apache", "2.4.69", "--distro", "rhel", "--max-websockets", "1000",
               "--mpm", "worker", "--http-reserve", "100", "-o", str(out)]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["capacity"]["directives"] == {"ServerLimit": 88, "ThreadsPerChild": 25, "MaxRequestWorkers": 1100}
    assert data["capacity"]["file"] == "conf.d/apachews-capacity.conf"
    assert (out / "conf.d" / "apachews-capacity.conf").read_text().endswith("MaxRequestWorkers 1100\n")
    assert any("httpd's defaults for the 2.4 worker MPM" in note for note in data["notes"])
    for argv, said in [
        (["--apache", "2.4.69", "--max-websockets", "0"], "at least 1"),
        (["--apache", "2.4.69", "--max-websockets", "9\nServerLimit 1"], "whole number"),
        (["--apache", "2.4.69", "--mpm", "worker"], "go with --max-websockets"),
        (["--apache", "2.4.69", "--handoff"], "--prefer apachews"),
        (["--apache", "2.2.31", "--max-websockets", "2000"], "prefork processes"),
        (["--apache", "2.2.31", "--max-websockets", "40000", "--handoff", "--mpm", "prefork"], "tunnel keeper"),
    ]:
        refused = runner.invoke(main, ["config", "generic", *argv, "-o", str(tmp_path / "nothing")])
        assert refused.exit_code == 2 and said in refused.output, (argv, refused.output)
        assert "Traceback" not in refused.output and not (tmp_path / "nothing").exists()


def test_config_without_apache_sizes_from_the_server_here(system_httpd: Httpd) -> None:
    if trees.default_layout(system_httpd) != "debian":
        pytest.skip("the system Apache is not Debian's apache2")
    result = CliRunner().invoke(main, ["--json", "config", "generic", "--max-websockets", "1000"])
    data = json.loads(result.stdout)
    stock = capacity.compute(trees.stock_settings("debian", system_httpd))  # this machine's /etc/apache2
    assert data["capacity"]["http_reserve"] == max(stock.workers, 25)
    assert any("sized from the settings of the server at" in note for note in data["notes"])


# -- doctor ------------------------------------------------------------------------------------------------------
needs_debian = pytest.mark.skipif(debian_tree.available() is not None, reason=str(debian_tree.available()))


@needs_debian
def test_doctor_warns_on_stock_settings_and_is_quiet_once_sized(tmp_path: Path) -> None:
    tree = debian_tree.make(tmp_path / "server")
    stock = doctor.examine(tree.ctl)
    assert stock.capacity is not None and stock.capacity["workers"] == 150
    assert any("150 open WebSockets take every worker" in w for w in stock.warnings)
    assert "125 leave 25 for HTTP" in stock.text()
    wanted = doctor.examine(tree.ctl, max_websockets=1000)
    assert any("1000 WebSockets need 1000 workers, there are 150" in w for w in wanted.warnings)
    assert wanted.capacity["sizing"]["directives"]["MaxRequestWorkers"] == 1150  # type: ignore[index]
    assert len(wanted.text().splitlines()) <= 25
    # Size it the way a user does (config, placed like install), start it: doctor reads the new limits back.
    sizing = capacity.size(capacity.compute(doctor.server_settings(tree.ctl)), 1000)
    rendering = config.render("generic", apache=stock.version, distro="debian", sizing=sizing)
    distros.place(rendering, tree.conf_root, modules_dir=tree.modules_dir)
    tree.start()
    try:
        sized = doctor.examine(tree.ctl)
        assert tree.run("-t").returncode == 0
    finally:
        tree.stop()
    assert sized.capacity is not None and sized.capacity["workers"] == 1150
    assert sized.capacity["websockets"] == 1000 and sized.capacity["http_left"] == 150
    assert sized.capacity["open_files_known"]  # read from the running server's /proc/PID/limits
    assert not any("WebSockets" in w for w in sized.warnings), sized.warnings
    assert "by apachews for 1000 WebSockets" in sized.text()


@needs_debian
def test_doctor_cli_json_carries_the_figures(tmp_path: Path) -> None:
    tree = debian_tree.make(tmp_path / "server")
    argv = ["doctor", "--apachectl", str(tree.ctl), "--json", "--max-websockets", "100", "--http-reserve", "40"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)["capacity"]
    assert (figures["workers"], figures["websockets"], figures["http_left"]) == (150, 100, 50)
    assert figures["sizing"]["http_reserve"] == 40 and "capacity_lines" not in json.loads(result.stdout)
    refused = CliRunner().invoke(main, ["doctor", "--apachectl", str(tree.ctl), "--http-reserve", "5"])
    assert refused.exit_code == 2 and "--max-websockets" in refused.output


# -- verify's capacity check -------------------------------------------------------------------------------------
def test_capacity_is_skipped_without_max_websockets(system_httpd: Httpd) -> None:
    report = verify.run(system_httpd, checks=["capacity"])
    assert report.checks[0].skipped and "--max-websockets" in report.checks[0].detail


def test_verify_layouts_find_out_their_stock_workers(system_httpd: Httpd) -> None:
    # Nothing in verify lowers the MPM: Debian's tree keeps its 150, the skeletons and the lab root httpd's 400.
    if trees.default_layout(system_httpd) == "debian":
        assert capacity.compute(trees.stock_settings("debian", system_httpd)).workers == 150
    for layout in ("rhel", "gentoo", "bare"):
        assert capacity.compute(trees.stock_settings(layout, system_httpd)).workers == 400
    # verify --mpm prefork: Debian's mpm_prefork.conf as a2enmod enables it, the lab root httpd's default 256.
    if trees.default_layout(system_httpd) == "debian":
        debian_prefork = capacity.compute(trees.stock_settings("debian", system_httpd, "prefork"))
        assert (debian_prefork.mpm, debian_prefork.workers) == ("prefork", 150)
    assert capacity.compute(trees.stock_settings("bare", system_httpd, "prefork")).workers == 256
    with pytest.raises(BadInput, match="with the rhel layout"):
        trees.stock_settings("rhel", system_httpd, "prefork")


@pytest.mark.parametrize("layout", ["debian", "rhel", "gentoo", "bare"])
def test_each_layout_reads_the_sizing_file(system_httpd: Httpd, layout: str) -> None:
    if layout == "debian" and trees.default_layout(system_httpd) != "debian":
        pytest.skip("the system Apache is not Debian's apache2")
    with verify.running_proxy(system_httpd, setup=verify.ServerSetup(layout=layout, max_websockets=50)) as proxy:
        server = proxy.server
        dumped = subprocess.run(
            server.argv("-t", "-D", "DUMP_INCLUDES"), capture_output=True, text=True, env={**os.environ, **server.env}
        ).stdout
        assert proxy.sizing is not None and re.search(r"apachews[-_]capacity\.conf", dumped), dumped
        assert "sized for 50 WebSockets" in proxy.target.server_capacity


def test_capacity_is_red_on_debian_stock_and_green_once_sized(system_httpd: Httpd) -> None:
    if trees.default_layout(system_httpd) != "debian":
        pytest.skip("the system Apache is not Debian's apache2")
    # Debian's event MPM as shipped: 150 workers. 160 WebSockets take them all and plain HTTP waits.
    red = verify.run(system_httpd, checks=["capacity"], setup=verify.ServerSetup(max_websockets=160), edit=_drop_sizing)
    check = red.checks[0]
    assert not check.passed, red.table()
    # Never more tunnels than workers (on a busy machine a few may not be taken up within the check's wait).
    opened = re.search(r"(\d+)/160 WebSockets open", check.detail)
    assert opened and int(opened.group(1)) <= 150 and "plain HTTP answered 0/" in check.detail, check.detail
    assert "150 workers" in check.detail and "not sized" in check.detail
    sockets_before = _open_sockets()
    green = verify.run(
        system_httpd, checks=["capacity", "error-log-clean"], setup=verify.ServerSetup(max_websockets=160)
    )
    assert green.ok, green.table()
    check = green.checks[0]
    assert "160/160 WebSockets open" in check.detail and "answered 20/20" in check.detail
    assert check.figure is not None and check.figure < verify.PLAIN_GET_TIMEOUT
    assert green.capacity is not None and green.capacity["max_workers"] == 325  # 160 + 150, in whole children
    assert _open_sockets() <= sockets_before  # every client and backend socket of the 160 closed again


def _open_sockets() -> int:
    """This process's open sockets."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


def _after_graceful_restart(system_httpd: Httpd, sizing: capacity.Sizing, server_limit: int) -> list[float | None]:
    """40 WebSockets open in a server of 2 children of 25 (both hold some), a graceful restart, then a plain GET."""
    text = capacity.render(sizing, __version__, str(system_httpd.version))
    text = text.replace(f"ServerLimit {sizing.server_limit}\n", f"ServerLimit {server_limit}\n")

    def small(files: dict[str, str]) -> dict[str, str]:
        return {name: text if "apachews-capacity" in name else body for name, body in files.items()}

    async def run(proxy: verify.Proxy) -> list[float | None]:
        opened, pending, _, _ = await verify.open_many(proxy.target, 40)
        try:
            assert len(opened) == 40 and not pending
            assert proxy.server.process is not None
            log = proxy.server.error_log
            offset = log.stat().st_size
            os.kill(proxy.server.process.pid, signal.SIGUSR1)  # apachectl -k graceful
            deadline = time.monotonic() + 30
            while b"resuming normal operations" not in log.read_bytes()[offset:]:  # the new generation may start
                assert time.monotonic() < deadline, "no graceful restart in the error log after 30 s"
                await asyncio.sleep(0.05)
            return [await verify.timed_get(proxy.target)]
        finally:
            await verify.close_all(opened)

    with verify.running_proxy(system_httpd, setup=verify.ServerSetup(max_websockets=40), edit=small) as proxy:
        return asyncio.run(run(proxy))


def test_server_limit_headroom_keeps_http_through_a_graceful_restart(system_httpd: Httpd) -> None:
    # After a graceful restart the old children finish their tunnels in their scoreboard slots: with ServerLimit
    # at exactly the children MaxRequestWorkers needs there is no slot left for their successors.
    sizing = capacity.size(capacity.compute(Settings("2.4", "event", max_workers=50)), 25, http_reserve=25)
    assert (sizing.processes, sizing.server_limit, sizing.max_workers) == (2, 4, 50)
    assert all(latency is not None for latency in _after_graceful_restart(system_httpd, sizing, 4))
    assert all(latency is None for latency in _after_graceful_restart(system_httpd, sizing, 2))


def test_verify_refuses_what_it_cannot_do(system_httpd: Httpd) -> None:
    with pytest.raises(BadInput, match="at most 10000"):
        verify.validate_capacity_count(10_001)
    runner = CliRunner()
    live = runner.invoke(main, ["verify", "--live", "--max-websockets", "10"])
    assert live.exit_code == 2 and "doctor --max-websockets" in live.output
    stock = runner.invoke(main, ["--json", "verify", "--handoff", "--check", "handshake"])
    assert stock.exit_code == 1 and "--prefer apachews" in stock.output  # the stock modules have no handoff


def test_verify_handoff_renders_the_directive_for_the_module(system_httpd: Httpd) -> None:
    # With the stock mod_proxy_wstunnel in the apachews style, httpd refuses the directive it does not know:
    # the rendering reached the server under test.
    with pytest.raises(JobFailed, match="ProxyWebsocketHandoff"):
        with verify.running_proxy(system_httpd, setup=verify.ServerSetup(prefer="apachews", handoff=True)):
            pass


@pytest.fixture(scope="module")
def handoff_module(host_module: Path) -> Path:
    """The apachews module built with this machine's apxs; a module that lacks the directive fails."""
    assert b"ProxyWebsocketHandoff" in host_module.read_bytes(), "the built module has no ProxyWebsocketHandoff"
    return host_module


@pytest.mark.slow
def test_with_handoff_1000_websockets_leave_http_served_on_175_workers(system_httpd: Httpd, handoff_module) -> None:
    if trees.default_layout(system_httpd) != "debian":
        pytest.skip("the system Apache is not Debian's apache2")
    checks = ["config-clean", "capacity", "error-log-clean"]
    handed = verify.run(
        system_httpd, setup=verify.ServerSetup(module=handoff_module, max_websockets=1000, handoff=True), checks=checks
    )
    assert handed.ok, handed.table()
    assert handed.capacity is not None and handed.capacity["max_workers"] == 175
    # The same 175 workers without the directive: the tunnels hold them all and plain HTTP stops.
    held = verify.run(
        system_httpd,
        setup=verify.ServerSetup(module=handoff_module, max_websockets=1000, handoff=True),
        checks=["capacity"],
        edit=lambda files: {n: t.replace("ProxyWebsocketHandoff On", "") for n, t in files.items()},
    )
    assert not held.ok and "plain HTTP answered 0/" in held.checks[0].detail, held.table()
