"""WebSockets over HTTP/2 (RFC 8441): `config --h2` renders H2WebSockets where mod_http2 has it, and verify's
h2-websocket check opens one with an extended CONNECT (PyPI's h2 as the client) through a real Apache."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from apachews import config, tunnelling, verify
from apachews.cli import main
from apachews.distros import trees
from apachews.errors import BadInput
from apachews.httpd import Httpd
from apachews.tunnelling import Tunnelling


def test_h2_renders_h2websockets_from_2_4_58_only() -> None:
    new = config.render("jupyter", apache="2.4.58", distro="debian", h2=True)
    text = new.files["conf-available/apachews-jupyter.conf"]
    assert "H2WebSockets on" in text and "http2" in new.modules and new.h2
    assert any("a2enmod" in note and "http2" in note for note in new.notes)
    old = config.render("jupyter", apache="2.4.57", distro="debian", h2=True)
    assert "H2WebSockets" not in old.text() and "http2" not in old.modules and not old.h2
    assert any("fall back" in note or "over HTTP/1.1" in note for note in old.notes)
    assert "H2WebSockets" not in config.render("jupyter", apache="2.4.71").text()  # only when asked


def test_h2_with_the_apachews_module_is_refused() -> None:
    with pytest.raises(BadInput, match="HTTP/2"):
        config.render("generic", apache="2.4.71", prefer="apachews", h2=True)
    # Before 2.4.58 there is nothing to render for HTTP/2, so nothing to refuse.
    assert config.render("generic", apache="2.4.4", h2=True).tunnelling.value == "apachews"


def test_config_cli_h2() -> None:
    result = CliRunner().invoke(main, ["config", "generic", "--apache", "2.4.71", "--h2"])
    assert result.exit_code == 0 and "H2WebSockets on" in result.output


@pytest.fixture
def h2_httpd(system_httpd: Httpd) -> Httpd:
    if system_httpd.version < tunnelling.H2_WEBSOCKETS_SINCE or not system_httpd.has_module("http2"):
        pytest.skip(f"the system Apache {system_httpd.version} has no mod_http2 with H2WebSockets")
    return system_httpd


def test_h2_websocket_is_green_on_the_system_apache(h2_httpd: Httpd) -> None:
    report = verify.run(h2_httpd, preset="jupyter", checks=["h2-websocket", "handshake", "error-log-clean"])
    assert report.ok, report.table()
    [check] = [c for c in report.checks if c.name == "h2-websocket"]
    assert not check.skipped and "h2c" in check.detail
    if trees.default_layout(h2_httpd) == "debian":  # Debian's tree has mod_ssl: the TLS front speaks h2 too
        assert "h2 over TLS" in check.detail


def test_h2_websocket_goes_red_without_h2websockets(h2_httpd: Httpd) -> None:
    def drop(files: dict[str, str]) -> dict[str, str]:
        return {name: text.replace("H2WebSockets on", "H2WebSockets off") for name, text in files.items()}

    report = verify.run(h2_httpd, checks=["h2-websocket"], edit=drop)
    [check] = report.checks
    assert not check.passed and "SETTINGS_ENABLE_CONNECT_PROTOCOL" in check.detail, report.table()


def test_h2_websocket_is_skipped_where_the_server_cannot(h2_httpd: Httpd) -> None:
    assert verify.h2_unavailable(h2_httpd, "debian", Tunnelling.HTTP_UPGRADE) == ""
    assert "apachews module" in verify.h2_unavailable(h2_httpd, "debian", Tunnelling.APACHEWS)
    report = verify.run(h2_httpd, checks=["h2-websocket"], setup=verify.ServerSetup(h2=False))
    assert report.checks[0].skipped and "not asked for" in report.checks[0].detail


@pytest.mark.parametrize("distro", ("generic", "debian", "rhel", "gentoo"))
def test_h2_renderings_pass_httpd_t(h2_httpd: Httpd, distro: str) -> None:
    for preset in ("generic", "jupyter", "balancer"):
        rendering = config.render(preset, apache=str(h2_httpd.version), distro=distro, h2=True)
        result = config.check(rendering)
        assert result.clean, f"{preset} {distro}: {result.output}"
