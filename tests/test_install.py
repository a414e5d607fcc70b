"""Placement (the shared API), `apachews install` / `uninstall` and `verify --live`.

The server under test is a throwaway copy of this machine's Debian apache2 tree (/etc/apache2 copied to a temp
dir and started on a free 127.0.0.1 port with its own run/lock/log dirs: tests/debian_tree.py). The machine's
own /etc/apache2 is never written.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from apachews import build, catalogue, config, distros, doctor, images, install, live, serverbuild, verify
from apachews.cli import main
from apachews.distros import placement
from apachews.errors import BadInput
from apachews.lab.echo import EchoServer
from apachews.plan import BuildPlan
from apachews.sources import SourceOptions
from tests import debian_tree
from tests.cli_process import start_cli, wait_for_line

pytestmark = pytest.mark.skipif(debian_tree.available() is not None, reason=str(debian_tree.available()))


@pytest.fixture
def tree(tmp_path: Path) -> debian_tree.DebianServer:
    return debian_tree.make(tmp_path / "server")


@pytest.fixture
def fake_module(tmp_path: Path) -> Path:
    # Placement only copies bytes; the real apxs-built module is used where Apache loads it.
    so = tmp_path / "mod_proxy_wstunnel.so"
    so.write_bytes(b"\x7fELF not really")
    return so


def test_debian_placement_enables_like_a2enmod_and_unplace_restores(tree, fake_module) -> None:
    before = debian_tree.snapshot(tree.conf_root)
    rendering = config.render("jupyter", apache="2.4.71", distro="debian", prefer=install.module_style())
    placed = distros.place(rendering, tree.conf_root, module_so=fake_module, modules_dir=tree.modules_dir)
    etc = tree.conf_root
    assert os.readlink(etc / "mods-enabled/proxy.load") == "../mods-available/proxy.load"
    assert os.readlink(etc / "mods-enabled/proxy.conf") == "../mods-available/proxy.conf"
    assert (etc / "mods-enabled/proxy_wstunnel_apachews.load").resolve() == (
        etc / "mods-available/proxy_wstunnel_apachews.load"
    )
    assert (
        str(tree.modules_dir / placement.MODULE_FILE)
        in (etc / "mods-available/proxy_wstunnel_apachews.load").read_text()
    )
    assert (etc / "conf-enabled/apachews-jupyter.conf").is_file()
    assert (tree.modules_dir / placement.MODULE_FILE).read_bytes() == fake_module.read_bytes()
    assert set(placed) == {Path(c["path"]) for c in placed.changes}
    # The record survives a round trip through JSON (install's manifest).
    distros.unplace(distros.Placement.from_dict(placed.to_dict()))
    assert debian_tree.snapshot(tree.conf_root) == before
    assert not (tree.modules_dir / placement.MODULE_FILE).exists()


def test_stock_wstunnel_is_disabled_while_ours_is_installed_and_back_after(tree, fake_module) -> None:
    etc = tree.conf_root
    (etc / "mods-enabled/proxy.load").symlink_to("../mods-available/proxy.load")
    (etc / "mods-enabled/proxy_wstunnel.load").symlink_to("../mods-available/proxy_wstunnel.load")
    before = debian_tree.snapshot(etc)
    rendering = config.render("generic", apache="2.4.71", distro="debian", prefer=install.module_style())
    placed = distros.place(rendering, etc, module_so=fake_module, modules_dir=tree.modules_dir)
    assert not os.path.lexists(etc / "mods-enabled/proxy_wstunnel.load")
    # proxy.load was enabled already: not ours, so not recorded and not removed later.
    assert etc / "mods-enabled/proxy.load" not in set(placed)
    distros.unplace(placed)
    assert debian_tree.snapshot(etc) == before


def test_a_failing_step_rolls_back_every_earlier_one(tree, fake_module) -> None:
    etc = tree.conf_root
    # The last step (the a2enconf link) cannot be made: conf-enabled is a file here.
    for entry in (etc / "conf-enabled").iterdir():
        entry.unlink()
    (etc / "conf-enabled").rmdir()
    (etc / "conf-enabled").write_text("not a directory\n")
    before = debian_tree.snapshot(etc)
    rendering = config.render("gateone", apache="2.4.71", distro="debian", prefer=install.module_style())
    with pytest.raises(OSError):
        distros.place(rendering, etc, module_so=fake_module, modules_dir=tree.modules_dir / "new" / "dir")
    assert debian_tree.snapshot(etc) == before
    assert not (tree.modules_dir / "new").exists()  # directories it made are gone too


def test_refuses_to_overwrite_and_to_remove_edited_files(tree) -> None:
    etc = tree.conf_root
    rendering = config.render("generic", apache="2.4.71", distro="debian")
    (etc / "conf-available/apachews-generic.conf").write_text("# the admin's own\n")
    with pytest.raises(BadInput, match="would overwrite"):
        distros.place(rendering, etc)
    (etc / "conf-available/apachews-generic.conf").unlink()
    placed = distros.place(rendering, etc)
    (etc / "conf-available/apachews-generic.conf").write_text("# edited after install\n")
    with pytest.raises(BadInput, match="changed since install"):
        distros.unplace(placed)
    assert (etc / "conf-available/apachews-generic.conf").read_text() == "# edited after install\n"


@pytest.mark.parametrize("distro", ["rhel", "gentoo", "generic"])
def test_other_layouts_place_the_rendering_files_with_our_module_path(tmp_path, distro, fake_module) -> None:
    root = tmp_path / "conf"
    root.mkdir()
    rendering = config.render("generic", apache="2.4.6", distro=distro)
    placed = distros.place(rendering, root, module_so=fake_module, modules_dir=tmp_path / "mods")
    text = "".join((root / name).read_text() for name in rendering.files)
    assert f'LoadModule proxy_wstunnel_module "{tmp_path / "mods" / placement.MODULE_FILE}"' in text
    assert sorted(placed.paths) == sorted(
        [root / n for n in rendering.files] + [tmp_path / "mods" / placement.MODULE_FILE]
    )
    distros.unplace(placed)
    assert list(root.iterdir()) == []


# -- the whole story against a running copy of the Debian server ------------------------------------------
@pytest.fixture
def server(tmp_path: Path) -> Iterator[debian_tree.DebianServer]:
    with debian_tree.running(tmp_path / "server") as running:
        yield running


@pytest.fixture(scope="module")
def apxs_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("apxs") is None:
        pytest.skip("no apxs (apt-get install apache2-dev)")
    return serverbuild.build_for_server(out_dir=tmp_path_factory.mktemp("dist")).module


def _mapped(pid: int) -> str:
    """The files the Apache parent has mapped: proof of which .so it really loaded."""
    return Path(f"/proc/{pid}/maps").read_text()


async def _echo_through(port: int, path: str) -> str:
    async with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10) as ws:
        await ws.send("through the installed route")
        return await asyncio.wait_for(ws.recv(), 10)


def test_doctor_install_live_verify_uninstall(server, apxs_module, tmp_path) -> None:
    etc = server.conf_root
    before = debian_tree.snapshot(etc)
    pid = server.pid()
    states = tmp_path / "state"
    assert doctor.examine(server.ctl).distro == "debian"
    with EchoServer("echo") as backend:
        options = dict(
            apachectl=server.ctl,
            module=apxs_module,
            modules_dir=server.modules_dir,
            backends=[backend.url],
            states=states,
        )
        planned = install.install("gateone", dry_run=True, **options)
        assert debian_tree.snapshot(etc) == before and not states.exists()
        assert any("mods-enabled/proxy_wstunnel_apachews.load" in step for step in planned.plan)

        done = install.install("gateone", **options)
        assert done.reloaded and server.pid() == pid  # a graceful reload: same parent
        maps = _mapped(pid)
        assert str(server.modules_dir / placement.MODULE_FILE) in maps
        assert "/usr/lib/apache2/modules/mod_proxy_wstunnel.so" not in maps  # ours, not the stock one
        # The installed route works on the server's own port, through our module.
        assert asyncio.run(_echo_through(server.port, "/gateone/ws")) == "through the installed route"

        installed_tree = debian_tree.snapshot(etc)
        report = live.live_verify(server.ctl)
        assert report.ok, report.table()
        # Through mod_proxy_wstunnel (the one loaded: ours), not mod_proxy_http's upgrade.
        assert "upgrade" not in report.tunnelling and len(report.checks) == len(verify.CHECKS)
        assert debian_tree.snapshot(etc) == installed_tree  # the temporary route is gone again
        assert asyncio.run(_echo_through(server.port, "/gateone/ws")) == "through the installed route"

    result = CliRunner().invoke(main, ["uninstall", "--apachectl", str(server.ctl), "--state-dir", str(states)])
    assert result.exit_code == 0, result.output
    assert debian_tree.snapshot(etc) == before
    assert list(server.modules_dir.iterdir()) == [] and list(states.iterdir()) == []
    assert server.pid() == pid
    assert str(server.modules_dir / placement.MODULE_FILE) not in _mapped(pid)  # unloaded by the reload


@pytest.fixture
def unloadable_module(tmp_path: Path) -> Path:
    """A real ELF module for this server's architecture, glibc and MMN (so install's checks pass) that
    dlopen still refuses: it calls a function nothing defines."""
    if shutil.which("gcc") is None or not Path("/usr/include/apache2/ap_mmn.h").exists():
        pytest.skip("needs gcc and the Apache headers (apt-get install apache2-dev)")
    source = tmp_path / "unloadable.c"
    source.write_text(
        '#include "ap_mmn.h"\nextern void apachews_nowhere(void);\n'
        "struct { int version; int minor_version; } proxy_wstunnel_module = "
        "{MODULE_MAGIC_NUMBER_MAJOR, MODULE_MAGIC_NUMBER_MINOR};\n"
        "void apachews_call(void) { apachews_nowhere(); }\n"
    )
    so = tmp_path / "mod_proxy_wstunnel.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-I/usr/include/apache2", "-o", str(so), str(source)],
        check=True,
        capture_output=True,
    )
    return so


def test_install_refuses_a_module_this_server_cannot_load(server, fake_module, tmp_path) -> None:
    before = debian_tree.snapshot(server.conf_root)
    with pytest.raises(BadInput, match="not an ELF"):
        install.install("generic", apachectl=server.ctl, module=fake_module, states=tmp_path / "state")
    assert debian_tree.snapshot(server.conf_root) == before and not (tmp_path / "state").exists()


def test_a_config_apachectl_rejects_is_rolled_back_and_never_loaded(server, unloadable_module, tmp_path) -> None:
    etc = server.conf_root
    before = debian_tree.snapshot(etc)
    pid = server.pid()
    log_before = server.error_log.read_bytes()
    # A module file Apache cannot load: the real apachectl -t fails on it after the files are placed.
    result = CliRunner().invoke(
        main,
        [
            "install", "generic", "--apachectl", str(server.ctl), "--module", str(unloadable_module),
            "--modules-dir", str(server.modules_dir), "--state-dir", str(tmp_path / "state"),
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "apachectl -t rejected the new config" in result.output and "proxy_wstunnel" in result.output
    assert debian_tree.snapshot(etc) == before
    assert list(server.modules_dir.iterdir()) == [] and not (tmp_path / "state").exists()
    # Never reloaded: same parent, no restart in the log, still serving.
    assert server.pid() == pid
    assert b"graceful restart" not in server.error_log.read_bytes()[len(log_before) :]
    assert debian_tree.wait_for_port(server.port, 2)


def test_live_verify_restores_the_config_on_ctrl_c(server) -> None:
    etc = server.conf_root
    before = debian_tree.snapshot(etc)
    live_conf = etc / "conf-enabled" / "apachews-live-verify.conf"
    process = start_cli(
        *["live-verify", "--apachectl", str(server.ctl)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0
    )
    try:
        # The idle check outwaits mod_reqtimeout's body limit (seconds, by design): Ctrl-C lands inside the run.
        said = wait_for_line(process.stderr, "check idle")
        temporary_port = int(re.search(r"Listen 127.0.0.1:(\d+)", live_conf.read_text()).group(1))
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        err = said.encode() + err
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err.decode()
    assert debian_tree.snapshot(etc) == before
    assert server.pid() is not None
    # Reloaded after the restore: the temporary listener is closed, the server's own port still serves.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", temporary_port), timeout=2).close()
    assert debian_tree.wait_for_port(server.port, 2)


def test_uninstall_that_would_break_the_config_puts_everything_back(server, tmp_path) -> None:
    etc = server.conf_root
    states = tmp_path / "state"
    install.install("generic", apachectl=server.ctl, states=states)
    # Since the install, the admin added a route of their own that needs the mod_proxy it enabled.
    (etc / "conf-enabled" / "zz-admin.conf").write_text('ProxyPass "/admin-app" "http://127.0.0.1:9/"\n')
    installed = debian_tree.snapshot(etc)
    manifests = sorted(states.iterdir())
    result = CliRunner().invoke(main, ["uninstall", "--apachectl", str(server.ctl), "--state-dir", str(states)])
    assert result.exit_code == 1 and "apachectl -t fails without the apachews files" in result.output
    assert debian_tree.snapshot(etc) == installed and sorted(states.iterdir()) == manifests


def test_build_with_the_servers_apxs(tmp_path) -> None:
    if shutil.which("apxs") is None:
        pytest.skip("no apxs (apt-get install apache2-dev)")
    built = serverbuild.build_for_server(out_dir=tmp_path / "dist")
    info = json.loads((built.dist / "build.json").read_text())
    assert info["builder"] == "apxs" and info["mmn_major"] == doctor.inspect_apxs(info["apxs"], "", None).mmn_major
    assert built.module == built.dist / "modules" / "mod_proxy_wstunnel.so" and built.module.stat().st_size > 0
    result = CliRunner().invoke(main, ["build", "--apxs", shutil.which("apxs"), "-o", str(tmp_path / "cli"), "--json"])
    assert result.exit_code == 0, result.output
    assert Path(json.loads(result.output)["module"]).is_file()


# -- a vanilla 2.2 server (the generic layout, no DUMP_RUN_CFG): built from the release tag -----------------
@pytest.fixture(scope="module")
def httpd22(base_image: str, httpd_git: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Apache 2.2.31 install (`apachews build --with-httpd`), with our backport module beside it."""
    out = tmp_path_factory.mktemp("dist22")
    plan = BuildPlan(catalogue.load().get("2.2.31"), source=SourceOptions(git=httpd_git), with_httpd=True, out_dir=out)
    return build.build(plan).dist


BUILT_PREFIX = "/opt/apachews/httpd"  # where `apachews build` installs httpd in its container


def _vanilla_server(dist: Path, root: Path) -> tuple[Path, Path, int]:
    """A copy of the built install run from root: its own httpd.conf on a free port, an apachectl wrapper that
    passes -d (2.2's -V shows only the compiled-in root, so doctor gets the config file with --config)."""
    prefix = root / "httpd"
    shutil.copytree(dist / "httpd", prefix, symlinks=True)
    conf = prefix / "conf" / "httpd.conf"
    port = debian_tree.free_port()
    for extra in (prefix / "conf" / "extra").glob("*.conf"):  # the install's own paths, where it now is
        extra.write_text(extra.read_text().replace(BUILT_PREFIX, str(prefix)))
    text = conf.read_text().replace(BUILT_PREFIX, str(prefix))
    text = re.sub(r"(?m)^Listen .*$", f"Listen 127.0.0.1:{port}", text)
    text = text.replace("#Include conf/extra/httpd-mpm.conf", "Include conf/extra/httpd-mpm.conf")
    if os.geteuid() == 0:
        text = re.sub(r"(?m)^User .*$", "User nobody", text)
        text = re.sub(r"(?m)^Group .*$", "Group nogroup", text)
    conf.write_text(text + "ServerName 127.0.0.1\n")
    ctl = root / "apachectl"
    ctl.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH="{prefix}/lib" exec "{prefix}/bin/httpd" -d "{prefix}" "$@"\n')
    ctl.chmod(0o755)
    return ctl, conf, port


def test_vanilla_22_doctor_install_live_verify_uninstall(httpd22: Path, tmp_path: Path) -> None:
    ctl, conf, port = _vanilla_server(httpd22, tmp_path)
    prefix = conf.parent.parent
    trees = (prefix / "conf", prefix / "modules")
    before = {tree: debian_tree.snapshot(tree) for tree in trees}
    report = doctor.examine(ctl, config_file=conf)
    assert (report.version, report.distro, report.mpm) == ("2.2.31", "generic", "prefork")
    assert report.server_root == str(prefix) and report.modules_dir == str(prefix / "modules")
    assert report.max_workers == 150 and report.max_workers_source == "MaxClients 150"  # extra/httpd-mpm.conf
    assert report.needs.startswith("the apachews mod_proxy_wstunnel (Apache 2.2.31 has none)")
    # This machine's apxs has 2.4 headers: a module built with them would not load into this 2.2 server.
    with pytest.raises(BadInput, match="would not load"):
        serverbuild.build_for_server(out_dir=tmp_path / "apxs-dist", apachectl=str(ctl))
    assert not (tmp_path / "apxs-dist").exists()
    subprocess.run([str(ctl), "-k", "start"], check=True, capture_output=True)
    try:
        assert debian_tree.wait_for_port(port, 15)
        states = tmp_path / "state"
        module = httpd22 / "modules" / "mod_proxy_wstunnel.so"
        # The built install loads its own mod_proxy_wstunnel first: install says so rather than be ignored...
        with pytest.raises(BadInput, match="already loads a mod_proxy_wstunnel"):
            install.install("generic", apachectl=ctl, config_file=conf, module=module, states=states)
        # ...and the admin comments it out, as the hint says.
        load = "LoadModule proxy_wstunnel_module modules/mod_proxy_wstunnel.so"
        conf.write_text(conf.read_text().replace(load, f"#{load}"))
        before[prefix / "conf"] = debian_tree.snapshot(prefix / "conf")
        done = install.install("generic", apachectl=ctl, config_file=conf, module=module, states=states)
        assert done.reloaded and conf.read_text().endswith(f'Include "{prefix / "conf" / "apachews-generic.conf"}"\n')
        pid = int((prefix / "logs" / "httpd.pid").read_text())
        assert str(prefix / "modules" / placement.MODULE_FILE) in _mapped(pid)
        report = live.live_verify(ctl, config_file=conf)
        assert report.ok, report.table()
        install.uninstall(apachectl=ctl, config_file=conf, states=states)
        assert {tree: debian_tree.snapshot(tree) for tree in trees} == before
    finally:
        subprocess.run([str(ctl), "-k", "stop"], capture_output=True)


def test_vanilla_22_name_based_vhosts_install_into_one(httpd22: Path, tmp_path: Path) -> None:
    """2.2's NameVirtualHost layout, both vhosts in httpd.conf: install --vhost puts one Include line in one of
    them (and the module's LoadModule at the end of httpd.conf), a WebSocket with its Host gets through, the
    other's does not; uninstall restores every file byte for byte."""
    ctl, conf, port = _vanilla_server(httpd22, tmp_path)
    prefix = conf.parent.parent
    load = "LoadModule proxy_wstunnel_module modules/mod_proxy_wstunnel.so"
    sites = "".join(
        f"<VirtualHost 127.0.0.1:{port}>\n    ServerName {name}\n</VirtualHost>\n" for name in ("one.test", "two.test")
    )
    conf.write_text(conf.read_text().replace(load, f"#{load}") + f"NameVirtualHost 127.0.0.1:{port}\n{sites}")
    trees = (prefix / "conf", prefix / "modules")
    before = {tree: debian_tree.snapshot(tree) for tree in trees}
    subprocess.run([str(ctl), "-k", "start"], check=True, capture_output=True)

    async def echo(name: str) -> str:
        async with connect(f"ws://{name}:{port}/ws", host="127.0.0.1", port=port, open_timeout=10) as ws:
            await ws.send(name)
            return str(await asyncio.wait_for(ws.recv(), 10))

    try:
        assert debian_tree.wait_for_port(port, 15)
        states, module = tmp_path / "state", httpd22 / "modules" / "mod_proxy_wstunnel.so"
        with EchoServer("echo") as backend:
            options = dict(apachectl=ctl, config_file=conf, module=module, states=states, backends=[backend.url])
            with pytest.raises(BadInput, match="no VirtualHost answers to three.test"):
                install.install("generic", vhost="three.test", **options)
            done = install.install("generic", vhost="one.test", **options)
            assert done.vhost is not None and done.vhost["name"] == "one.test" and done.reloaded
            lines = conf.read_text().splitlines()
            at = lines.index(f'    Include "{prefix / "conf" / "apachews" / "generic.conf"}"')
            assert lines[at - 1] == "    ServerName one.test" and lines[at + 1] == "</VirtualHost>"
            assert asyncio.run(echo("one.test")) == "one.test"
            with pytest.raises(InvalidStatus):
                asyncio.run(echo("two.test"))
        install.uninstall(apachectl=ctl, config_file=conf, states=states)
        assert {tree: debian_tree.snapshot(tree) for tree in trees} == before
    finally:
        subprocess.run([str(ctl), "-k", "stop"], capture_output=True)


def _image_with(engine, base: str, install: Path, tag: str) -> None:
    """An image = base + an httpd install at the prefix it was built for: its apxs and headers work there,
    like a distribution image with its dev package installed. Built from a local context, no network."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dockerfile = f"FROM {base}\nCOPY httpd {BUILT_PREFIX}\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        for part in ("bin", "build", "include", "lib", "modules"):
            tar.add(install / part, arcname=f"httpd/{part}")
    buffer.seek(0)
    engine.images.build(fileobj=buffer, custom_context=True, tag=tag, network_mode="none", rm=True)


def test_build_in_an_image_with_the_servers_headers(httpd22: Path, base_image: str, tmp_path: Path) -> None:
    engine = images.client()
    tag = f"apachews/test-apxs22:{os.getpid()}"
    _image_with(engine, base_image, httpd22 / "httpd", tag)
    try:
        ctl, conf, port = _vanilla_server(httpd22, tmp_path)
        built = serverbuild.build_in_image(
            tag, apxs=f"{BUILT_PREFIX}/bin/apxs", out_dir=tmp_path / "dist", apachectl=str(ctl)
        )
    finally:
        engine.images.remove(tag, force=True)
    assert built.info["headers"] == "2.2.31" and built.info["mmn_major"] == 20051115
    assert built.module == tmp_path / "dist" / "apxs-2.2.31" / "modules" / "mod_proxy_wstunnel.so"
    # It loads into that 2.2 server: install runs its apachectl -t (which loads every module) and reloads.
    load = "LoadModule proxy_wstunnel_module modules/mod_proxy_wstunnel.so"
    conf.write_text(conf.read_text().replace(load, f"#{load}"))
    subprocess.run([str(ctl), "-k", "start"], check=True, capture_output=True)
    try:
        assert debian_tree.wait_for_port(port, 15)
        states = tmp_path / "state"
        install.install("generic", apachectl=ctl, config_file=conf, module=built.module, states=states)
        pid = int((conf.parent.parent / "logs" / "httpd.pid").read_text())
        assert str(conf.parent.parent / "modules" / placement.MODULE_FILE) in _mapped(pid)
        install.uninstall(apachectl=ctl, config_file=conf, states=states)
    finally:
        subprocess.run([str(ctl), "-k", "stop"], capture_output=True)
