"""The glibc floor: how a build's floor is chosen, the zig cc wrapper, the check that fails a module above
it, `build --apxs` and `build --dev-package` at a floor, and the proof on Debian 11's own apache2."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import devpackage, floor, module
from apachews.binary import GlibcVersion, inspect_module
from apachews.cli import main
from apachews.distros import catalogue as distros
from apachews.errors import BadInput, JobFailed
from apachews.plan import BuildPlan
from tests.fixtures.distros import loads_in

needs_apxs = pytest.mark.skipif(shutil.which("apxs") is None, reason="needs apxs (apt-get install apache2-dev)")


def _objdump_glibc(so: Path) -> GlibcVersion:
    """The highest GLIBC_x.y in `objdump -T` (a second reader, to check apachews.binary's)."""
    text = subprocess.run(["objdump", "-T", str(so)], capture_output=True, text=True, check=True).stdout
    found = [GlibcVersion.parse(word.strip("()")) for word in text.split() if word.strip("()").startswith("GLIBC_")]
    return max(found)


def test_the_default_floor_is_the_family_floor() -> None:
    assert str(BuildPlan("2.2.15").floor.glibc) == "2.5"  # CentOS 5
    assert str(BuildPlan("2.4.69").floor.glibc) == "2.17"  # CentOS 7
    assert {d.key for d in BuildPlan("2.2.15").floor.loads_on()} == {"centos5", "centos6", "debian7", "ubuntu1204"}


def test_target_and_glibc_narrow_the_floor_and_key_the_result() -> None:
    debian11 = BuildPlan("2.4.69", target="debian11")
    assert str(debian11.floor.glibc) == "2.31" and debian11.floor.target == distros.get("debian11")
    assert str(BuildPlan("2.2.15", glibc="2.12").floor.glibc) == "2.12"
    plain = BuildPlan("2.4.69")
    assert debian11.cache_key("img") != plain.cache_key("img")
    # the module is compiled afresh in every build: one configured tree serves every floor
    assert debian11.cache_key("img", "workspace") == plain.cache_key("img", "workspace")
    assert BuildPlan("2.4.69", glibc="2.17").cache_key("img") == plain.cache_key("img")


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"target": "centos6"}, "2.2 family"),
        ({"target": "debian99"}, "unknown target distribution"),
        ({"target": "debian11", "glibc": "2.31"}, "not both"),
        ({"glibc": "two"}, "not a glibc version"),
    ],
)
def test_bad_floors_are_bad_input(fields: dict[str, str], says: str) -> None:
    with pytest.raises(BadInput, match=says):
        BuildPlan("2.4.69", **fields)


def test_cli_refuses_a_target_of_the_other_family(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["build", "--apache", "2.4.69", "--target", "centos6", "--json", "-o", str(tmp_path)]
    )
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert "CentOS 6 runs Apache 2.2.15" in payload["error"] and "--apache 2.2.15" in payload["hint"]
    assert list(tmp_path.iterdir()) == []


def test_wrapper_pins_the_target_and_keeps_host_glibc_headers_out(tmp_path: Path) -> None:
    script = floor.write_wrapper(tmp_path, floor.resolve("2.2"), zig=Path("/opt/zig/zig")).read_text()
    assert "exec /opt/zig/zig cc -target x86_64-linux-gnu.2.5 " in script
    assert "-I/usr/include|-I/usr/include/|-mtune=generic) continue" in script
    assert script.rstrip().endswith("-U_FORTIFY_SOURCE")


# What RHEL's apxs passes (config_vars.mk CFLAGS of httpd-devel on el7-el9), gcc-only flags included.
RHEL_APXS_CFLAGS = (
    "-O2 -g -pipe -Wall -Wp,-D_FORTIFY_SOURCE=2 -fexceptions -fstack-protector-strong --param=ssp-buffer-size=4 "
    "-grecord-gcc-switches -specs=/usr/lib/rpm/redhat/redhat-hardened-cc1 -m64 -mtune=generic -I/usr/include"
).split()


def test_wrapper_takes_what_rhel_apxs_passes(tmp_path: Path) -> None:
    wrapper = floor.write_wrapper(tmp_path, floor.resolve("2.2"))
    (tmp_path / "t.c").write_text("#include <poll.h>\nint f(struct pollfd *p) { return poll(p, 1, 0); }\n")
    argv = [str(wrapper), *RHEL_APXS_CFLAGS, *floor.LINK_ARGS, str(tmp_path / "t.c"), "-o", str(tmp_path / "t.so")]
    done = subprocess.run(argv, capture_output=True, text=True, env=floor.zig_env(tmp_path), check=False)
    assert done.returncode == 0, done.stderr
    # fortify is off: poll stays poll (__poll_chk is glibc 2.16, and would not be versioned by the stubs)
    assert set(inspect_module(tmp_path / "t.so").glibc_symbols) == {"poll"}


@needs_apxs
def test_a_module_above_its_floor_fails_naming_the_symbols(tmp_path: Path) -> None:
    """apxs' own gcc links against this host's glibc: the check names what binds above the floor."""
    host_built = module.build_with_apxs(tmp_path / "gcc").so
    with pytest.raises(JobFailed) as caught:
        floor.check(host_built, floor.resolve("2.4"))
    above = inspect_module(host_built).symbols_above(GlibcVersion.parse("2.17"))
    assert above and all(f"{name} (GLIBC_{version})" in caught.value.message for name, version in above.items())


@needs_apxs
def test_apxs_build_at_the_floor(tmp_path: Path) -> None:
    """`build --apxs`: apxs -S CC=zig-cc compiles, zig links; build.json and the text say what it needs."""
    apxs = shutil.which("apxs") or "apxs"
    result = CliRunner().invoke(main, ["build", "--apxs", apxs, "-o", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    so = Path(payload["module"])
    needed = GlibcVersion.parse(payload["binary"]["glibc_floor"])
    assert needed <= GlibcVersion.parse("2.17") and _objdump_glibc(so) == needed
    assert payload["binary"]["floor"]["zig_target"] == "x86_64-linux-gnu.2.17"
    assert "__poll_chk" not in subprocess.run(["objdump", "-T", str(so)], capture_output=True, text=True).stdout
    text = CliRunner().invoke(main, ["build", "--apxs", apxs, "-o", str(tmp_path)]).output
    assert f"module: x86_64, needs glibc >= {needed} (floor 2.17 asked: loads on CentOS 7" in text


# -- dev packages -------------------------------------------------------------------------------------------
def test_distribution_from_package_versions() -> None:
    def packages(*versions: str) -> list[devpackage.DevPackage]:
        return [devpackage.DevPackage(Path(f"p{n}.deb"), f"p{n}", v) for n, v in enumerate(versions)]

    assert devpackage.detect(packages("2.4.62-1~deb11u1", "1.7.0-6+deb11u2"), "2.4.62").key == "debian11"
    assert devpackage.detect(packages("2.4.6-97.el7.centos.5"), "2.4.6").key == "centos7"
    assert devpackage.detect(packages("2.4.41-4ubuntu3.14"), "2.4.41").key == "ubuntu2004"
    with pytest.raises(BadInput, match="different distributions"):
        devpackage.detect(packages("2.4.62-1~deb11u1", "1.6.5-1+deb10u1"), "2.4.62")
    with pytest.raises(BadInput, match="cannot tell") as caught:
        devpackage.detect(packages("2.4.62-1"), "2.4.62")  # Debian 11 and 12 both ship 2.4.62
    assert "--target" in (caught.value.hint or "")


def test_dev_package_build_loads_into_debian11(
    debian11_dev_packages: list[Path], debian11_image: str, docker_engine, tmp_path: Path
) -> None:
    """Debian 11's own apache2-dev, libapr1-dev and libaprutil1-dev, compiled against here with zig at its
    glibc; its apache2 loads the result."""
    first, *rest = map(str, debian11_dev_packages)
    result = CliRunner().invoke(main, ["build", "--dev-package", first, *rest, "-o", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["target"] == "debian11" and payload["mmn_major"] == 20120211
    assert payload["dist"] == str(tmp_path / "debian11-2.4.62")
    info = json.loads((tmp_path / "debian11-2.4.62" / "build.json").read_text())
    needed = GlibcVersion.parse(info["module"]["glibc_floor"])
    assert needed <= GlibcVersion.parse("2.31") and info["module"]["mmn"].startswith("20120211:")
    assert info["module"]["floor"]["glibc"] == "2.31" and info["warnings"] == []
    ok, output = loads_in(debian11_image, docker_engine, Path(payload["module"]))
    assert ok, output


def test_dev_package_refuses_another_distributions_abi(debian11_dev_packages: list[Path], tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="MMN 20051115"):
        devpackage.build(debian11_dev_packages, tmp_path, target="centos6")
    with pytest.raises(BadInput, match="above Debian 11's glibc"):
        devpackage.build(debian11_dev_packages, tmp_path, glibc="2.34")
    with pytest.raises(BadInput, match="no apr.h") as caught:
        devpackage.build([p for p in debian11_dev_packages if "libapr1" not in p.name], tmp_path)
    assert "libapr1-dev" in (caught.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_readme_which_build_table_is_the_generated_one() -> None:
    from apachews.cli.versions import which_build_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert which_build_table() in readme, "regenerate README's table: apachews versions --distributions"
    result = CliRunner().invoke(main, ["versions", "--distributions", "--json"])
    payload = json.loads(result.stdout)
    assert payload["family_floors"] == {"2.2": "2.5", "2.4": "2.17"}
    debian11 = next(d for d in payload["distributions"] if d["target"] == "debian11")
    assert debian11["build"] == "apachews build --apache 2.4.62 --backport --target debian11"


@needs_apxs
@pytest.mark.skipif(shutil.which("rpmbuild") is None or shutil.which("rpm2cpio") is None, reason="needs rpm tools")
def test_rpm_files_unpack_in_python(tmp_path: Path) -> None:
    """An .rpm is read with rpm2cpio and unpacked by apachews' cpio reader: here the package `apachews
    package --rpm` makes, whose files and bytes are known."""
    from apachews import packaging

    so = module.build_with_apxs(tmp_path / "apxs", glibc_floor=floor.resolve("2.4")).so
    rpm = packaging.build_rpm(so, tmp_path / "rpm").path
    (unpacked,) = devpackage.unpack([rpm], tmp_path / "root")
    assert (unpacked.name, unpacked.version) == (packaging.RPM_NAME, "0.1.0-1")
    installed = tmp_path / "root" / packaging.RPM_MODULES.lstrip("/") / "mod_proxy_wstunnel_apachews.so"
    assert installed.read_bytes() == so.read_bytes()
    assert (tmp_path / "root" / packaging.RPM_LOAD_CONF.lstrip("/")).is_file()
