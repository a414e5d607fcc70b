"""`apachews package --deb`: the package installs with dpkg -i on this machine's Debian apache2, the module
loads, and dpkg -r removes it leaving /etc/apache2, /usr/lib/apache2/modules and /var/lib/apache2 (a2enmod's
state) byte for byte as before.

This is the one test that touches the machine's real apache2 tree (a package can only be installed into the
real system); the apache2 server is not started. Whatever happens, the test removes the package and puts
back every byte of those three trees from a snapshot taken first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import floor, module, packaging
from apachews.binary import inspect_module
from apachews.cli import main
from apachews.distros import catalogue as distros
from tests import debian_tree

TREES = (Path("/etc/apache2"), Path("/usr/lib/apache2/modules"), Path("/var/lib/apache2"))

pytestmark = [
    pytest.mark.skipif(debian_tree.available() is not None, reason=str(debian_tree.available())),
    pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("apxs") is None, reason="needs dpkg and apxs"),
    pytest.mark.skipif(os.geteuid() != 0, reason="dpkg -i needs root"),
]


def _installed() -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}", packaging.PACKAGE], capture_output=True, text=True, check=False
    )
    return "installed" in result.stdout and "not-installed" not in result.stdout


def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["apache2ctl", *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def built_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module as `build --apxs` makes it: apxs with zig cc at the 2.4 family's glibc floor."""
    return module.build_with_apxs(tmp_path_factory.mktemp("apxs"), glibc_floor=floor.resolve("2.4")).so


def test_deb_declares_libc6_floor_and_module_abi(tmp_path: Path, built_module: Path) -> None:
    """Depends names the module's measured glibc floor and the apache2 ABI; the members are xz, never zstd."""
    built = packaging.build_deb(built_module, tmp_path)
    needs = inspect_module(built_module)
    info = subprocess.run(["dpkg-deb", "-I", str(built.path)], capture_output=True, text=True, check=True).stdout
    mmn = packaging.mmn_major(None)[0]
    assert f"Depends: libc6 (>= {needs.glibc_floor}), apache2-api-{mmn}" in info
    assert needs.glibc_floor is not None and needs.glibc_floor <= distros.family_floor("2.4")
    members = subprocess.run(["ar", "t", str(built.path)], capture_output=True, text=True, check=True).stdout.split()
    assert members == ["debian-binary", "control.tar.xz", "data.tar.xz"]


@pytest.fixture
def system_guard():
    """Snapshots of the real trees; on the way out, the package is removed and any difference put back."""
    if _installed():
        pytest.skip(f"{packaging.PACKAGE} is already installed here: not touching it")
    before = {tree: debian_tree.snapshot(tree) for tree in TREES}
    marker = Path(packaging.MARKER).parent
    marker_existed = marker.exists()
    yield before
    if _installed():
        subprocess.run(["dpkg", "--purge", packaging.PACKAGE], capture_output=True, check=False)
    for tree, snap in before.items():
        debian_tree.restore(tree, snap)
    if not marker_existed and marker.exists():
        shutil.rmtree(marker)


@pytest.mark.parametrize("stock_enabled", [False, True], ids=["plain", "stock-wstunnel-enabled"])
def test_deb_installs_loads_and_removes_cleanly(tmp_path, built_module, system_guard, stock_enabled) -> None:
    if stock_enabled:
        # An admin who enabled the stock module: the package must hand over and give it back on removal.
        subprocess.run(["a2enmod", "-q", "proxy_wstunnel"], check=True, capture_output=True)
    before = {tree: debian_tree.snapshot(tree) for tree in TREES}
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["--json", "package", "--deb", "--module", str(built_module), "--preset", "jupyter", "-o", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    deb = tmp_path / f"{packaging.PACKAGE}_0.1.0-1_{_arch()}.deb"
    assert deb.exists()

    installed = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    enabled = Path("/etc/apache2/mods-enabled/proxy_wstunnel_apachews.load")
    assert enabled.is_symlink()
    assert Path("/etc/apache2/conf-enabled/apachews-jupyter.conf").is_symlink()
    assert not os.path.lexists("/etc/apache2/mods-enabled/proxy_wstunnel.load")  # ours, not the stock one
    # The module loads: -M makes apache2 dlopen every enabled module, ours included, and parse its config.
    modules = _ctl("-M")
    assert modules.returncode == 0, modules.stderr
    assert "proxy_wstunnel_module (shared)" in modules.stdout
    includes = _ctl("-t", "-D", "DUMP_INCLUDES").stdout
    assert str(enabled) in includes and "/etc/apache2/mods-enabled/proxy_wstunnel.load" not in includes

    removed = subprocess.run(["dpkg", "-r", packaging.PACKAGE], capture_output=True, text=True, check=False)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not _installed()
    for tree, snap in before.items():
        assert debian_tree.snapshot(tree) == snap, f"{tree} differs after dpkg -r"


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="no rpmbuild (apt-get install rpm)")
def test_rpm_carries_the_module_and_its_config_and_erases_cleanly(tmp_path, built_module) -> None:
    """No RHEL server here: the rpm is checked for what it carries and requires, then installed into and
    erased from a throwaway root with rpm itself (scripts off: they would reload a RHEL httpd)."""
    result = CliRunner().invoke(
        main, ["--json", "package", "--rpm", "--module", str(built_module), "--preset", "gateone", "-o", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    rpm = next(tmp_path.glob("*.rpm"))
    listed = subprocess.run(["rpm", "-qpl", str(rpm)], capture_output=True, text=True, check=True).stdout.split()
    assert listed == [
        "/etc/httpd/conf.d/apachews-gateone.conf",
        packaging.RPM_LOAD_CONF,
        f"{packaging.RPM_MODULES}/mod_proxy_wstunnel_apachews.so",
    ]
    requires = subprocess.run(["rpm", "-qp", "--requires", str(rpm)], capture_output=True, text=True, check=True)
    mmn = packaging.mmn_major(None)[0]
    assert f"httpd-mmn = {mmn}" in requires.stdout
    assert f"glibc >= {inspect_module(built_module).glibc_floor}" in requires.stdout
    assert "rpmlib(PayloadIsXz)" not in requires.stdout and "rpmlib(PayloadIsZstd)" not in requires.stdout
    compressor = ["rpm", "-qp", "--qf", "%{PAYLOADCOMPRESSOR}", str(rpm)]
    assert subprocess.run(compressor, capture_output=True, text=True, check=True).stdout == "gzip"
    root = tmp_path / "root"
    root.mkdir()
    rpm_root = ["rpm", "--root", str(root), "--dbpath", "/rpmdb"]
    subprocess.run([*rpm_root, "--initdb"], check=True, capture_output=True)
    before = debian_tree.snapshot(root)
    subprocess.run([*rpm_root, "-i", "--nodeps", "--noscripts", str(rpm)], check=True, capture_output=True)
    installed = root / packaging.RPM_MODULES.lstrip("/") / "mod_proxy_wstunnel_apachews.so"
    assert installed.read_bytes() == built_module.read_bytes()
    load = (root / packaging.RPM_LOAD_CONF.lstrip("/")).read_text()
    assert f"LoadModule proxy_wstunnel_module {packaging.RPM_MODULES}/mod_proxy_wstunnel_apachews.so" in load
    subprocess.run([*rpm_root, "-e", "--noscripts", packaging.RPM_NAME], check=True, capture_output=True)
    # Every file it brought is gone (the directories belong to httpd's own package on a real RHEL).
    left = {k for k, v in debian_tree.snapshot(root).items() if not k.startswith("rpmdb") and v[0] != "dir"}
    assert left == {k for k, v in before.items() if not k.startswith("rpmdb") and v[0] != "dir"} == set()
