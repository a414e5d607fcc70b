"""`apachews config`: golden files for every preset x version class x distro, hostile input refused,
atomic writes, and every 2.4 rendering accepted by a real `httpd -t`.

Regenerate the golden files after an intended change: APACHEWS_REGEN_GOLDEN=1 pytest tests/test_config.py
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import __version__, config, distros
from apachews.cli import main
from apachews.errors import BadInput
from apachews.httpd import Httpd
from apachews.tunnelling import Tunnelling

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


def _unversioned(text: str) -> str:
    """The golden files name no apachews version: a release must not rewrite all of them."""
    return text.replace(f"apachews {__version__}:", "apachews VERSION:")


@pytest.mark.parametrize("distro", distros.NAMES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("preset", PRESETS)
def test_golden(preset: str, version: str, distro: str) -> None:
    rendering = _render(preset, version, distro)
    rendering.files = {name: _unversioned(text) for name, text in rendering.files.items()}
    where = GOLDEN / preset / version / distro
    if os.environ.get("APACHEWS_REGEN_GOLDEN"):
        config.write(rendering, where, force=True)
    for name, text in rendering.files.items():
        assert (where / name).read_text() == text, f"{where / name} differs (regenerate if intended)"
    on_disk = {str(p.relative_to(where)) for p in where.rglob("*") if p.is_file()}
    assert on_disk == set(rendering.files)


def test_version_decides_the_tunnelling() -> None:
    assert _render("generic", "2.2.31", "generic").tunnelling is Tunnelling.APACHEWS
    assert _render("generic", "2.4.4", "generic").tunnelling is Tunnelling.APACHEWS
    assert _render("generic", "2.4.46", "generic").tunnelling is Tunnelling.WSTUNNEL
    upgrade = _render("generic", "2.4.69", "generic")
    assert upgrade.tunnelling is Tunnelling.HTTP_UPGRADE
    assert "upgrade=websocket" in upgrade.files["apachews-generic.conf"] and "proxy_wstunnel" not in upgrade.modules
    assert "ws://" in _render("generic", "2.4.69", "generic", prefer="wstunnel").files["apachews-generic.conf"]
    with pytest.raises(BadInput):
        _render("generic", "2.4.46", "generic", prefer="http-upgrade")
    with pytest.raises(BadInput, match="no stock mod_proxy_wstunnel"):
        _render("generic", "2.4.4", "generic", prefer="wstunnel")


def test_access_control_syntax_per_family() -> None:
    old = _render("generic", "2.2.31", "generic").files["apachews-generic.conf"]
    new = _render("generic", "2.4.69", "generic").files["apachews-generic.conf"]
    assert "Allow from 10.0.0.0/8" in old and "Require" not in old
    assert "Require ip 10.0.0.0/8" in new and "Order" not in new


@pytest.mark.parametrize(("version", "websocket_first"), [("2.2.31", True), ("2.4.4", False), ("2.4.46", False)])
def test_the_websocket_route_wins_where_paths_nest(version: str, websocket_first: bool) -> None:
    # 2.2 uses the first matching ProxyPass in the file; 2.4 the last <Location> merged.
    text = _render("gateone", version, "generic").files["apachews-gateone.conf"]
    assert (text.index('<Location "/gateone/ws">') < text.index('<Location "/gateone">')) is websocket_first


def test_no_double_slash_between_path_and_backend() -> None:
    text = _render("novnc", "2.4.46", "generic").files["apachews-novnc.conf"]
    assert 'ProxyPass "http://127.0.0.1:6080"' in text and 'ProxyPass "http://127.0.0.1:6080/"' not in text
    root = _render("jupyter", "2.4.69", "generic").files["apachews-jupyter.conf"]
    assert 'ProxyPass "http://127.0.0.1:8888/"' in root  # <Location "/">: both ends keep their slash
    assert config.proxy_target("/vnc", "http://h:1/") == "http://h:1"
    assert config.proxy_target("/vnc/", "http://h:1") == "http://h:1/"


def test_upgrade_style_never_shares_a_worker_with_different_parameters() -> None:
    # AH01146: two ProxyPass to URLs of one worker with different parameters; the second's upgrade= is ignored.
    for preset in ("gateone", "broadway", "novnc"):
        text = _render(preset, "2.4.69", "generic").files[f"apachews-{preset}.conf"]
        targets = re.findall(r'ProxyPass "([^"]+)"( upgrade=websocket)?', text)
        assert len(targets) == 1 and targets[0][1], text


def test_one_path_apps_on_old_releases_use_the_apachews_module() -> None:
    for version in ("2.2.31", "2.4.4"):
        rendering = _render("jupyter", version, "generic")
        text = rendering.files["apachews-jupyter.conf"]
        assert "ProxyWebsocketUpgrade On" in text and "RewriteRule" not in text
    with pytest.raises(BadInput) as refused:
        _render("jupyter", "2.4.6", "generic", prefer="wstunnel")  # stock 2.4.6: no ws:// in mod_rewrite
    assert "--prefer apachews" in (refused.value.hint or "")
    default = _render("jupyter", "2.4.6", "generic")  # 2.4.6-2.4.9: the apachews module by default
    assert "ProxyWebsocketUpgrade On" in default.files["apachews-jupyter.conf"]
    rewrite = _render("jupyter", "2.4.46", "generic")
    assert "RewriteRule" in rewrite.files["apachews-jupyter.conf"]
    assert any("<VirtualHost>" in note for note in rewrite.notes)


def test_cve_2019_17567_is_named_on_stock_releases_that_have_it() -> None:
    assert any("CVE-2019-17567" in note for note in _render("generic", "2.4.46", "generic").notes)
    assert not any("CVE-2019-17567" in note for note in _render("generic", "2.4.69", "generic").notes)


def test_notes_name_the_real_values() -> None:
    jupyter = config.render("jupyter", apache="2.4.69", path="/notebook")
    assert 'ProxyPass "http://127.0.0.1:8888/notebook"' in jupyter.proxy_conf
    assert any("--ServerApp.base_url=/notebook" in note for note in jupyter.notes)
    novnc = config.render("novnc", apache="2.4.69", path="/desk")
    assert any("/desk/vnc.html?path=desk/websockify" in note for note in novnc.notes)
    assert not any("<path>" in note or "{" in note for r in (jupyter, novnc) for note in r.notes)


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
    ("--allow", "all"),
    ("--allow", "env=trusted"),
    ("--backend", "ws://[zz]/"),
    ("--backend", "ws://[::1]x/"),
]


@pytest.mark.parametrize(("option", "value"), HOSTILE)
def test_hostile_values_are_refused_and_nothing_is_written(option: str, value: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["config", "generic", option, value, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert repr(value) in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_options_that_do_not_apply_are_refused() -> None:
    result = CliRunner().invoke(main, ["config", "generic", "--sticky"])
    assert result.exit_code == 2 and "balancer" in result.output


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


STYLES = {"2.4.4": (None,), "2.4.46": (None, "apachews"), "2.4.69": (None, "wstunnel")}


@pytest.mark.parametrize("distro", ("generic", "debian", "rhel", "gentoo"))
@pytest.mark.parametrize("version", ("2.4.4", "2.4.46", "2.4.69"))
def test_every_24_rendering_passes_httpd_t_without_warnings(system_httpd: Httpd, version: str, distro: str) -> None:
    # The apachews module's own directives (ProxyWebsocketUpgrade) need it: checked where it is built.
    for preset in PRESETS:
        for prefer in STYLES[version]:
            rendering = _render(preset, version, distro, prefer=prefer)
            if "ProxyWebsocketUpgrade" in rendering.text():
                continue
            result = config.check(rendering)
            assert result.clean, f"{preset} {version} {distro} {prefer}: {result.output}"


def test_check_fails_on_a_worker_sharing_warning(system_httpd: Httpd) -> None:
    rendering = _render("gateone", "2.4.69", "generic")
    name = next(iter(rendering.files))
    # What apachews rendered before: a second ProxyPass into the HTTP route's worker, with upgrade= on it.
    rendering.files[name] += (
        '<Location "/gateone/ws">\n    ProxyPass "http://127.0.0.1:8000/gateone/ws" upgrade=websocket\n</Location>\n'
    )
    result = config.check(rendering)
    assert result.ok and not result.clean
    assert any("AH01146" in warning for warning in result.warnings)


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


def test_without_apache_the_server_here_decides(system_httpd: Httpd) -> None:
    # doctor's reading of this machine's Apache is config's default (version and layout), said in a note.
    result = CliRunner().invoke(main, ["--json", "config", "generic"])
    payload = json.loads(result.stdout)
    assert payload["apache"] == str(system_httpd.version)
    assert "no --apache given" in payload["notes"][0] and str(system_httpd.version) in payload["notes"][0]


# ---- the named TLS cases: a wss:// backend verified per version, routes inside the layout's TLS vhost -------
CASES = {
    "gateone-wss": ("gateone", {"backends": ["wss://127.0.0.1:8000/gateone"], "backend_ca": "/etc/gateone/ssl/ca.crt"}),
    "broadway-ssl": ("broadway", {"vhost": "tls"}),
}


@pytest.mark.parametrize("distro", distros.NAMES)
@pytest.mark.parametrize("version", ("2.2.15", *VERSIONS))
@pytest.mark.parametrize("case", CASES)
def test_golden_tls_cases(case: str, version: str, distro: str) -> None:
    preset, options = CASES[case]
    rendering = _render(preset, version, distro, **options)
    rendering.files = {name: _unversioned(text) for name, text in rendering.files.items()}
    where = GOLDEN / case / version / distro
    if os.environ.get("APACHEWS_REGEN_GOLDEN"):
        config.write(rendering, where, force=True)
    for name, text in rendering.files.items():
        assert (where / name).read_text() == text, f"{where / name} differs (regenerate if intended)"
    on_disk = {str(p.relative_to(where)) for p in where.rglob("*") if p.is_file()}
    assert on_disk == set(rendering.files)


@pytest.mark.parametrize(
    ("version", "peer_name"), [("2.2.15", False), ("2.2.34", False), ("2.4.4", False), ("2.4.5", True)]
)
def test_a_tls_backend_is_verified_with_the_directives_the_release_has(version: str, peer_name: bool) -> None:
    text = _render("gateone", version, "generic", tls=True, backend_ca="/etc/ca.pem").proxy_conf
    for line in ("SSLProxyEngine on", "SSLProxyVerify require", 'SSLProxyCACertificateFile "/etc/ca.pem"'):
        assert line in text
    assert ("SSLProxyCheckPeerName on" in text) is peer_name  # 2.4.5+; 2.2 has SSLProxyCheckPeerCN only
    assert "SSLProxyCheckPeerCN on" in text and "wss://127.0.0.1:8000/gateone/ws" in text
    bundle = _render("gateone", version, "rhel", tls=True).proxy_conf
    assert 'SSLProxyCACertificateFile "/etc/pki/tls/certs/ca-bundle.crt"' in bundle
    assert any("--backend-ca" in note for note in _render("gateone", version, "rhel", tls=True).notes)


def test_routes_inside_the_tls_vhost_go_where_each_layout_has_it() -> None:
    rhel = _render("broadway", "2.2.15", "rhel", vhost="tls")
    assert rhel.tls_include == "conf.d/apachews-broadway-ssl.include"
    assert "ProxyPass" in rhel.files[rhel.tls_include] and "LoadModule" not in rhel.files[rhel.tls_include]
    assert "ProxyPass" not in rhel.files["conf.d/apachews-broadway.conf"]  # server level: the modules only
    assert any("<VirtualHost _default_:443> in conf.d/ssl.conf" in note for note in rhel.notes)
    debian = _render("broadway", "2.4.69", "debian", vhost="tls")
    assert debian.tls_include == "sites-available/apachews-broadway-ssl.include"
    assert any("default-ssl" in note for note in debian.notes)
    with pytest.raises(BadInput, match="--backend-ca"):
        _render("broadway", "2.4.69", "debian", backend_ca="/etc/ca.pem")
    with pytest.raises(BadInput, match="not an absolute file path"):
        _render("gateone", "2.4.69", "debian", tls=True, backend_ca='/etc/ca.pem"\nSSLProxyVerify none')


def test_config_command_takes_the_tls_options() -> None:
    args = ["config", "gateone", "--apache", "2.2.15", "--distro", "rhel", "--backend", "wss://127.0.0.1:8000/gateone"]
    result = CliRunner().invoke(main, [*args, "--backend-ca", "/etc/gateone/ca.crt", "--json"])
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert 'SSLProxyCACertificateFile "/etc/gateone/ca.crt"' in files["conf.d/apachews-gateone.conf"]
    vhost = CliRunner().invoke(main, ["config", "broadway", "--apache", "2.2.15", "--distro", "rhel", "--vhost", "tls"])
    assert vhost.exit_code == 0 and "conf.d/apachews-broadway-ssl.include" in vhost.output
