"""`apachews config`: golden files for every preset x version class x distro, hostile input refused,
atomic writes, and every 2.4 rendering accepted by a real `httpd -t`.

Regenerate the golden files after an intended change: APACHEWS_REGEN_GOLDEN=1 pytest tests/test_config.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import config, distros
from apachews.cli import main
from apachews.errors import BadInput
from apachews.httpd import Httpd

GOLDEN = Path(__file__).parent / "golden"
# One release per behaviour: 2.2 backport, early-2.4 backport, 2.4 stock wstunnel, 2.4.47+ http upgrade.
VERSIONS = ("2.2.31", "2.4.4", "2.4.46", "2.4.69")
PRESETS = tuple(p.name for p in config.list_presets())
BALANCER_BACKENDS = ("ws://127.0.0.1:9001/", "ws://127.0.0.1:9002/")


def _render(preset: str, version: str, distro: str, **options) -> config.Rendering:
    if preset == "balancer":
        options.setdefault("backends", BALANCER_BACKENDS)
        options.setdefault("sticky", True)
    return config.render(preset, apache=version, distro=distro, allow=["10.0.0.0/8", "127.0.0.1"], **options)


@pytest.mark.parametrize("distro", distros.NAMES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("preset", PRESETS)
def test_golden(preset: str, version: str, distro: str) -> None:
    rendering = _render(preset, version, distro)
    where = GOLDEN / preset / version / distro
    if os.environ.get("APACHEWS_REGEN_GOLDEN"):
        config.write(rendering, where, force=True)
    for name, text in rendering.files.items():
        assert (where / name).read_text() == text, f"{where / name} differs (regenerate if intended)"
    on_disk = {str(p.relative_to(where)) for p in where.rglob("*") if p.is_file()}
    assert on_disk == set(rendering.files)


def test_version_decides_the_tunnelling() -> None:
    assert "proxy_wstunnel" in _render("generic", "2.2.31", "generic").modules
    assert "backported" in _render("generic", "2.4.4", "generic").tunnelling
    assert _render("generic", "2.4.46", "generic").tunnelling == "stock mod_proxy_wstunnel"
    upgrade = _render("generic", "2.4.69", "generic")
    assert "upgrade=websocket" in upgrade.files["apachews-generic.conf"] and "proxy_wstunnel" not in upgrade.modules
    assert "ws://" in _render("generic", "2.4.69", "generic", prefer="wstunnel").files["apachews-generic.conf"]
    with pytest.raises(BadInput):
        _render("generic", "2.4.46", "generic", prefer="http-upgrade")


def test_access_control_syntax_per_family() -> None:
    old = _render("generic", "2.2.31", "generic").files["apachews-generic.conf"]
    new = _render("generic", "2.4.69", "generic").files["apachews-generic.conf"]
    assert "Allow from 10.0.0.0/8" in old and "Require" not in old
    assert "Require ip 10.0.0.0/8" in new and "Order" not in new


def test_websocket_location_comes_after_the_http_one() -> None:
    text = _render("gateone", "2.2.31", "generic").files["apachews-gateone.conf"]
    assert text.index('<Location "/gateone">') < text.index('<Location "/gateone/ws">')


HOSTILE = [
    ("--backend", "ws://a/\nProxyPass / http://evil/"),
    ("--backend", 'ws://a/"x'),
    ("--backend", "ws://a/>"),
    ("--backend", "ws://a/#x"),
    ("--backend", "ws://a/\x00"),
    ("--backend", "ws://a b/"),
    ("--backend", "javascript:alert(1)"),
    ("--backend", "ws://127.0.0.1:0/"),
    ("--backend", "ws://127.0.0.1:70000/"),
    ("--backend", "ftp://127.0.0.1/"),
    ("--path", "/ws\nRequire all granted"),
    ("--path", "/../etc"),
    ("--path", "ws"),
    ("--allow", "10.0.0.0/33"),
    ("--allow", "all\nRequire all granted"),
    ("--allow", "host name"),
]


@pytest.mark.parametrize(("option", "value"), HOSTILE)
def test_hostile_values_are_refused_and_nothing_is_written(option: str, value: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["config", "generic", option, value, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert repr(value) in result.output
    assert not out.exists()


def test_write_refuses_to_overwrite_and_is_all_or_nothing(tmp_path: Path) -> None:
    rendering = _render("gateone", "2.4.69", "rhel")
    taken = tmp_path / "conf.d" / "apachews-gateone.conf"
    taken.parent.mkdir()
    taken.write_text("mine\n")
    result = CliRunner().invoke(main, ["config", "gateone", "--distro", "rhel", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "--force" in result.output
    assert taken.read_text() == "mine\n"
    assert not (tmp_path / "conf.modules.d").exists()
    written = config.write(rendering, tmp_path, force=True)
    assert taken.read_text() == rendering.files["conf.d/apachews-gateone.conf"] and len(written) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".apachews-config-")]


def test_list_and_json() -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["config", "--list"])
    assert listed.exit_code == 0 and all(name in listed.output for name in PRESETS)
    assert runner.invoke(main, ["config", "nosuch"]).exit_code == 2


@pytest.mark.parametrize("distro", ("generic", "debian", "rhel", "gentoo"))
@pytest.mark.parametrize("version", ("2.4.4", "2.4.46", "2.4.69"))
def test_every_24_rendering_passes_httpd_t(system_httpd: Httpd, version: str, distro: str) -> None:
    for preset in PRESETS:
        for prefer in (None, "wstunnel"):
            result = config.check(_render(preset, version, distro, prefer=prefer))
            assert result.ok, f"{preset} {version} {distro} {prefer}: {result.output}"


def test_check_reports_the_line_of_an_error(system_httpd: Httpd) -> None:
    rendering = _render("generic", "2.4.69", "gentoo")
    name = next(iter(rendering.files))
    rendering.files[name] = rendering.files[name].replace("</IfDefine>", "    ProxyPass\n</IfDefine>")
    result = config.check(rendering)
    assert not result.ok and result.line is not None and "ProxyPass" in (result.error or "")


def test_check_with_cli(system_httpd: Httpd) -> None:
    result = CliRunner().invoke(main, ["config", "jupyter", "--check"])
    assert result.exit_code == 0 and "Syntax OK" in result.output


def test_check_of_a_22_config_needs_a_22_httpd(system_httpd: Httpd) -> None:
    if system_httpd.version.family == "2.2":
        pytest.skip("the system Apache is 2.2 itself")
    with pytest.raises(BadInput, match="is for Apache 2.2.31"):
        config.check(_render("generic", "2.2.31", "generic"))
