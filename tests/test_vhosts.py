"""`install --vhost`: the server's own VirtualHosts read the way the server sees them (apachectl -S), the
routes placed inside one with a single Include line, and `uninstall` restoring every file byte for byte.

The server is a throwaway copy of this machine's Debian apache2 tree (tests/debian_tree.py) with name-based
vhosts: two plain ones (a.test with an alias, b.test), a TLS one (secure.test, mod_ssl with a certificate
made here), and certbot's layout for le.test: its redirecting :80 vhost and `le.test-le-ssl.conf` (the
<VirtualHost> inside <IfModule mod_ssl.c>, SSLEngine set in an included options file, linked into
sites-enabled by an absolute path). WebSockets go through each vhost with its Host header (and SNI).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from apachews import config, distros, install, vhosts
from apachews.cli import main
from apachews.distros import placement
from apachews.errors import BadInput
from apachews.httpd import free_port
from apachews.lab.certs import make_certificate
from apachews.lab.echo import EchoServer
from tests import debian_tree

pytestmark = pytest.mark.skipif(debian_tree.available() is not None, reason=str(debian_tree.available()))

WS_PATH = "/api/kernels/0c5e4c7a/channels"  # one of the jupyter preset's WebSocket paths


@dataclass
class Sites:
    server: debian_tree.DebianServer
    tls_port: int
    ca: Path

    @property
    def etc(self) -> Path:
        return self.server.conf_root

    @property
    def ctl(self) -> str:
        return str(self.server.ctl)


def _site(etc: Path, name: str, text: str, absolute: bool = False) -> None:
    (etc / "sites-available" / name).write_text(text)
    target = str(etc / "sites-available" / name) if absolute else f"../sites-available/{name}"
    (etc / "sites-enabled" / name).symlink_to(target)


def make_sites(root: Path) -> Sites:
    server = debian_tree.make(root)
    etc, port, tls = server.conf_root, server.port, free_port()
    with (etc / "ports.conf").open("a") as ports:
        ports.write(f"Listen 127.0.0.1:{tls}\n")
    cert, key = make_certificate(root)
    for action in distros.get("debian")._enable_modules(etc, ["ssl"], {}):  # what a2enmod ssl links
        os.symlink(str(action.target), action.path)
    docroot = root / "www"
    docroot.mkdir()
    _site(
        etc,
        "a.conf",
        f"<VirtualHost *:{port}>\n\tServerName a.test\n\tServerAlias www.a.test\n\tDocumentRoot {docroot}\n"
        "</VirtualHost>\n",
    )
    _site(etc, "b.conf", f"<VirtualHost *:{port}>\n  ServerName b.test\n  DocumentRoot {docroot}\n</VirtualHost>\n")
    _site(
        etc,
        "secure.conf",
        f"<VirtualHost *:{tls}>\n    ServerName secure.test\n    DocumentRoot {docroot}\n    SSLEngine on\n"
        f"    SSLCertificateFile {cert}\n    SSLCertificateKeyFile {key}\n</VirtualHost>\n",
    )
    # certbot --apache: the :80 vhost redirects, the -le-ssl copy serves TLS (its options file sets SSLEngine).
    letsencrypt = root / "letsencrypt"
    letsencrypt.mkdir()
    (letsencrypt / "options-ssl-apache.conf").write_text(
        "# This file contains important security parameters.\nSSLEngine on\nSSLProtocol all -SSLv2 -SSLv3\n"
    )
    _site(
        etc,
        "le.test.conf",
        f"<VirtualHost *:{port}>\n    ServerName le.test\n    DocumentRoot {docroot}\nRewriteEngine on\n"
        "RewriteCond %{SERVER_NAME} =le.test\nRewriteRule ^ https://%{SERVER_NAME}%{REQUEST_URI} [END,NE,R=permanent]\n"
        "</VirtualHost>\n",
    )
    _site(
        etc,
        "le.test-le-ssl.conf",
        f"<IfModule mod_ssl.c>\n<VirtualHost *:{tls}>\n    ServerName le.test\n    DocumentRoot {docroot}\n"
        f"Include {letsencrypt}/options-ssl-apache.conf\nSSLCertificateFile {cert}\nSSLCertificateKeyFile {key}\n"
        "</VirtualHost>\n</IfModule>\n",
        absolute=True,
    )
    (etc / "mods-enabled" / "rewrite.load").symlink_to("../mods-available/rewrite.load")
    return Sites(server, tls, cert)


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[Sites]:
    made = make_sites(tmp_path / "server")
    made.server.start()
    try:
        yield made
    finally:
        made.server.stop()


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


async def _echo(sites: Sites, name: str, tls: bool) -> str:
    """A WebSocket to the server on 127.0.0.1 with Host (and SNI) `name`: the vhost that answers it."""
    port = sites.tls_port if tls else sites.server.port
    context = None
    if tls:
        context = ssl.create_default_context(cafile=str(sites.ca))
        context.check_hostname = False  # the test certificate names 127.0.0.1; SNI still says `name`
    url = f"{'wss' if tls else 'ws'}://{name}:{port}{WS_PATH}"
    extra = {"ssl": context, "server_hostname": name} if tls else {}
    async with connect(url, host="127.0.0.1", port=port, open_timeout=10, **extra) as ws:
        await ws.send(f"through {name}")
        return str(await asyncio.wait_for(ws.recv(), 10))


def test_reads_the_vhosts_as_the_server_sees_them(sites) -> None:
    found = {(v.name, v.port): v for v in vhosts.read(sites.ctl)}
    port, tls, etc = sites.server.port, sites.tls_port, sites.etc
    assert set(found) >= {("a.test", port), ("b.test", port), ("le.test", port), ("secure.test", tls), ("le.test", tls)}
    assert found["a.test", port].aliases == ("www.a.test",) and not found["a.test", port].tls
    assert found["secure.test", tls].tls and found["le.test", tls].tls and not found["le.test", port].tls
    le_ssl = found["le.test", tls]
    assert le_ssl.file == str(etc / "sites-enabled/le.test-le-ssl.conf")
    assert le_ssl.real_file == str(etc / "sites-available/le.test-le-ssl.conf")
    assert (le_ssl.line, le_ssl.close_line) == (2, 8)  # inside <IfModule mod_ssl.c>


@pytest.mark.parametrize(
    ("spec", "name", "tls", "edited"),
    [
        ("www.a.test", "a.test", False, "a.conf"),  # by its alias
        ("secure.test", "secure.test", True, "secure.conf"),
        ("le.test:{tls}", "le.test", True, "le.test-le-ssl.conf"),  # certbot's
    ],
)
def test_install_into_a_vhost_and_uninstall_byte_for_byte(sites, tmp_path, spec, name, tls, edited) -> None:
    etc, states = sites.etc, tmp_path / "state"
    before = debian_tree.snapshot(etc)
    spec = spec.format(tls=sites.tls_port)
    with EchoServer("echo") as backend:
        common = ["--apachectl", sites.ctl, "--state-dir", str(states), "--backend", backend.url]
        code, out = _cli("install", "jupyter", "--vhost", spec, *common, "--diff")
        assert code == 0, out
        include = f'Include "{etc}/apachews/jupyter.conf"'
        assert f"+++ {etc}/sites-available/{edited}\n" in out and include in out
        assert f"--- /dev/null\n+++ {etc}/apachews/jupyter.conf\n" in out
        code, planned = _cli("install", "jupyter", "--vhost", spec, *common, "--dry-run", "--json")
        assert code == 0 and json.loads(planned)["diff"].rstrip("\n") in out
        assert debian_tree.snapshot(etc) == before and not states.exists()  # --diff, --dry-run change nothing

        code, out = _cli("install", "jupyter", "--vhost", spec, *common, "--json")
        assert code == 0, out
        result = json.loads(out)
        assert result["vhost"]["name"] == name and result["reloaded"]
        assert result["vhost"]["edited"] == str(etc / "sites-available" / edited)
        # One line, just before the vhost's </VirtualHost>; the routes are in the included file only.
        lines = (etc / "sites-available" / edited).read_text().splitlines()
        (at,) = [i for i, line in enumerate(lines) if include in line]
        assert lines[at + 1] == "</VirtualHost>"
        assert not (etc / "conf-enabled/apachews-jupyter.conf").exists()
        assert asyncio.run(_echo(sites, name, tls)) == f"through {name}"
        # Only that vhost has the routes: b.test on the same port serves its DocumentRoot (which Debian's
        # apache2.conf denies outside /var/www), and the backend never sees the request.
        seen = len(backend.requests)
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(_echo(sites, "b.test", False))
        assert refused.value.response.status_code == 403 and len(backend.requests) == seen

    # The admin edits their vhost meanwhile: uninstall still takes out only its own line (and keeps the edit).
    vhost_file = etc / "sites-available" / edited
    vhost_file.write_text(vhost_file.read_text().replace("DocumentRoot", "# the admin's comment\n    DocumentRoot", 1))
    edited_text = vhost_file.read_text()
    code, out = _cli("uninstall", "--apachectl", sites.ctl, "--state-dir", str(states))
    assert code == 0, out
    assert f"the line {include} from {etc}/sites-available/{edited}" in out
    assert vhost_file.read_text() == "".join(
        line for line in edited_text.splitlines(keepends=True) if include not in line
    )
    vhost_file.write_bytes(before[f"sites-available/{edited}"][1])  # type: ignore[arg-type]
    assert debian_tree.snapshot(etc) == before


@pytest.mark.parametrize(
    ("spec", "why"), [("nosuch.test", "no VirtualHost answers to nosuch.test"), ("le.test", "2 VirtualHosts")]
)
def test_refuses_no_match_and_several_matches_changing_nothing(sites, tmp_path, spec, why) -> None:
    before, states = debian_tree.snapshot(sites.etc), tmp_path / "state"
    code, out = _cli("install", "jupyter", "--vhost", spec, "--apachectl", sites.ctl, "--state-dir", str(states))
    assert code == 2 and why in out, out
    assert "le.test:" in out  # names the vhosts (or the matches) to choose from
    assert debian_tree.snapshot(sites.etc) == before and not states.exists()


def test_without_vhost_the_only_one_of_the_scheme_is_used_and_said(sites) -> None:
    found = vhosts.read(sites.ctl)
    # Certbot's usual server: one TLS vhost (-le-ssl) besides plain ones: the routes go there.
    certbot = [v for v in found if v.name != "secure.test"]
    choice = vhosts.choose(certbot, None)
    assert choice.vhost is not None and choice.vhost.file.endswith("le.test-le-ssl.conf")
    assert "the only https one" in choice.note
    # Two TLS vhosts: server level, and the note says how to pick one.
    choice = vhosts.choose(found, None)
    assert choice.vhost is None and "--vhost NAME[:PORT]" in choice.note
    # Only plain vhosts, one of them: that one.
    plain = [v for v in found if v.name == "a.test"]
    assert vhosts.choose(plain, None).vhost == plain[0]


def test_a_rewrite_based_config_goes_into_the_vhost_and_passes_apachectl(sites) -> None:
    """2.4.7-2.4.46's mixed routes (mod_rewrite ws://) only work inside a vhost: placed there, the note
    about including it by hand is not needed, and the server's own apachectl -t takes the result."""
    rendering = config.render("mixed", apache="2.4.41", distro="debian")
    assert config.VHOST_REWRITE_NOTE in rendering.notes and "RewriteRule" in rendering.proxy_conf
    (vhost,) = [v for v in vhosts.read(sites.ctl) if v.name == "b.test"]
    rest, actions = placement.into_vhost(
        rendering, sites.etc / "apachews/mixed.conf", Path(vhost.real_file), vhost.line - 1, vhost.close_line - 1
    )
    assert not any(name.startswith("conf-") for name in rest.files)  # no server-level routes left
    before = debian_tree.snapshot(sites.etc)
    enable, _ = distros.get("debian").plan(rest, sites.etc)  # a2enmod proxy proxy_http proxy_wstunnel rewrite
    placed = placement.apply(sites.etc, [*enable, *actions])
    assert (sites.etc / "sites-available/b.conf").read_text().splitlines()[-2] == (
        f'  Include "{sites.etc}/apachews/mixed.conf"'  # the vhost's own indentation
    )
    assert sites.server.run("-t").returncode == 0
    distros.unplace(placed)
    assert debian_tree.snapshot(sites.etc) == before


def test_el8_and_focal_releases_say_which_tunnel_and_why(tmp_path) -> None:
    """2.4.37 (EL8) and 2.4.41 (Ubuntu 20.04): no upgrade=websocket. Without a module, the stock
    mod_proxy_wstunnel with the CVE note; with one, the apachews module, with handoff on a threaded MPM."""
    so = tmp_path / "mod_proxy_wstunnel.so"
    so.write_bytes(b"\x7fELF")
    for version in ("2.4.37", "2.4.41"):
        prefer, handoff, notes = install.tunnel_choice(version, "event", None)
        assert (prefer, handoff) == (None, False) and "CVE-2019-17567" in notes[0]
        assert f"apachews build --apache {version} --backport" in notes[0]
        prefer, handoff, notes = install.tunnel_choice(version, "event", so)
        assert (prefer, handoff) == ("apachews", True) and "ProxyWebsocketHandoff On" in notes[0]
        rendering = config.render("jupyter", apache=version, distro="debian", prefer=prefer, handoff=handoff)
        assert "ProxyWebsocketHandoff On" in rendering.proxy_conf
        assert install.tunnel_choice(version, "prefork", so)[:2] == ("apachews", False)
    assert install.tunnel_choice("2.4.71", "event", so) == (None, False, [])


def test_vhost_spec_is_checked() -> None:
    assert vhosts.parse_spec("example.org:443") == ("example.org", 443)
    assert vhosts.parse_spec("[::1]:80") == ("[::1]", 80)
    with pytest.raises(BadInput, match="NAME:PORT"):
        vhosts.parse_spec("a b")


def _dists() -> list[str]:
    """Builds made by `apachews build --with-httpd` to run this on too ($APACHEWS_TEST_DISTS, ':'-separated:
    a 2.2 one shows the NameVirtualHost layout)."""
    return [d for d in os.environ.get("APACHEWS_TEST_DISTS", "").split(":") if d]


@pytest.mark.parametrize("dist", ["system", *_dists()])
def test_name_based_vhosts_of_each_release_family(tmp_path, dist) -> None:
    """NameVirtualHost (2.2's way; 2.4 ignores it with AH00548): the dump of that httpd, read through a control
    script, gives both vhosts with their aliases (2.2 prints none: they come from the blocks)."""
    from apachews import httpd

    found = httpd.locate() if dist == "system" else httpd.locate(prefix=Path(dist) / "httpd")
    body = (
        "NameVirtualHost 127.0.0.1:{port}\n<VirtualHost 127.0.0.1:{port}>\n    ServerName one.test\n"
        "    ServerAlias www.one.test *.wild.test\n</VirtualHost>\n"
        "<VirtualHost 127.0.0.1:{port}>\n    ServerName two.test\n</VirtualHost>\n"
    )
    with httpd.ServerRoot(found, {"vhosts.conf": ""}) as root:
        assert root.root is not None
        (root.root / "snippets" / "vhosts.conf").write_text(body.format(port=root.port))
        ctl = tmp_path / "apachectl"
        env = "".join(f"{name}={value!r} " for name, value in root.server.env.items())
        ctl.write_text(f'#!/bin/sh\n{env}exec {" ".join(map(repr, root.server.argv()))} "$@"\n')
        ctl.chmod(0o755)
        one, two = vhosts.read(str(ctl))
    assert (one.name, one.port, one.line, one.close_line) == ("one.test", root.port, 2, 5)
    assert (two.name, two.line, two.close_line) == ("two.test", 6, 8)
    assert one.answers("x.wild.test", root.port) and one.answers("www.one.test", None)
    assert not one.answers("one.test", root.port + 1) and not one.tls


# -- the same over SSH, against Debian 11's apache2 (tests/fixtures/remote.py) ------------------------------
def test_install_into_a_vhost_over_ssh(ssh_server) -> None:
    port = ssh_server.http_port
    for name in ("a.test", "b.test"):
        site = f"<VirtualHost 127.0.0.1:{port}>\\n    ServerName {name}\\n</VirtualHost>\\n"
        ssh_server.exec(f"printf '{site}' > /etc/apache2/sites-available/{name}.conf && a2ensite -q {name}")
    try:
        before = ssh_server.tree_hash()
        code, out = _cli("install", "jupyter", "--host", ssh_server.host, "--vhost", "nosuch.test")
        assert code == 2 and "no VirtualHost on debian11 answers to nosuch.test" in out, out
        with EchoServer("echo") as backend:  # the container shares the host's network: 127.0.0.1 reaches it
            args = ["install", "jupyter", "--host", ssh_server.host, "--vhost", "a.test", "--backend", backend.url]
            code, out = _cli(*args, "--diff")
            assert code == 0 and "+++ /etc/apache2/sites-available/a.test.conf" in out, out
            assert '+    Include "/etc/apache2/apachews/jupyter.conf"' in out and ssh_server.tree_hash() == before
            code, out = _cli(*args)
            assert code == 0 and "into the VirtualHost a.test:" in out, out
            # The diff is printed before the change goes to the server, and not again after.
            diff_at = out.index("+++ /etc/apache2/sites-available/a.test.conf")
            assert (
                diff_at < out.index("(one transaction)") and out.count("+++ /etc/apache2/sites-available/a.test") == 1
            )
            assert ssh_server.exec("tail -2 /etc/apache2/sites-available/a.test.conf") == (
                '    Include "/etc/apache2/apachews/jupyter.conf"\n</VirtualHost>\n'
            )

            async def echo(name: str) -> str:
                url = f"ws://{name}:{port}{WS_PATH}"
                async with connect(url, host="127.0.0.1", port=port, open_timeout=10) as ws:
                    await ws.send(f"through {name}")
                    return str(await asyncio.wait_for(ws.recv(), 10))

            assert asyncio.run(echo("a.test")) == "through a.test"
            with pytest.raises(InvalidStatus):
                asyncio.run(echo("b.test"))
        code, out = _cli("uninstall", "--host", ssh_server.host)
        assert code == 0, out
        assert ssh_server.tree_hash() == before
    finally:
        ssh_server.exec("a2dissite -q a.test b.test; rm -f /etc/apache2/sites-available/[ab].test.conf")


def test_a_vhost_made_by_mod_macro_is_listed_but_not_edited(tmp_path) -> None:
    """mod_macro's `Use` makes a vhost with no <VirtualHost> block at the place -S names: read() keeps it (no
    other install may fail over it), --vhost refuses it, saying why, and the automatic choice passes it by."""
    made = make_sites(tmp_path / "server")
    etc, port = made.etc, made.server.port
    (etc / "mods-enabled/macro.load").symlink_to("../mods-available/macro.load")
    _site(
        etc,
        "m.conf",
        f"<Macro Site $n>\n<VirtualHost *:{port}>\n    ServerName $n\n</VirtualHost>\n</Macro>\nUse Site m.test\n",
    )
    found = vhosts.read(made.ctl)
    (macro,) = [v for v in found if v.name == "m.test"]
    assert macro.close_line == 0 and "macro" in macro.file
    with pytest.raises(BadInput, match="not a <VirtualHost> block apachews can read and edit"):
        vhosts.choose(found, "m.test")
    choice = vhosts.choose([v for v in found if not v.tls and v.name in ("m.test",)], None)
    assert choice.vhost is None and "is no block apachews can edit" in choice.note


def test_debians_stock_server_gets_the_routes_in_its_one_vhost_unless_server_wide(tmp_path) -> None:
    with debian_tree.running(tmp_path / "server") as server:
        etc, args = server.conf_root, ["install", "jupyter", "--apachectl", str(server.ctl), "--dry-run"]
        code, out = _cli(*args)
        assert code == 0 and f"into the VirtualHost 127.0.0.1:{server.port} (http, " in out, out
        assert "the only http one on the server" in out and f"+++ {etc}/sites-available/000-default.conf" in out
        code, out = _cli(*args, "--server-wide")
        assert code == 0 and f"link {etc}/conf-enabled/apachews-jupyter.conf" in out and "VirtualHost" not in out, out
        code, out = _cli(*args, "--server-wide", "--vhost", "x.test")
        assert code == 2 and "contradict" in out


@pytest.mark.parametrize("distro", ["generic", "rhel", "gentoo"])
def test_what_stays_at_server_level_in_each_layout(tmp_path, distro) -> None:
    """The routes leave the layout's files for the vhost; the LoadModule lines stay at server level (they are
    not allowed inside a <VirtualHost>). Gentoo wraps both in <IfDefine PROXY>: not separable."""
    rendering = config.render("gateone", apache="2.4.6", distro=distro, prefer=install.module_style())
    vhost = tmp_path / "site.conf"
    vhost.write_text("<VirtualHost *:80>\n    ServerName a.test\n</VirtualHost>\n")
    if distro == "gentoo":
        assert not placement.routes_separable(rendering)
        with pytest.raises(BadInput, match="cannot go into a VirtualHost"):
            placement.into_vhost(rendering, tmp_path / "routes.conf", vhost, 0, 2)
        return
    rest, actions = placement.into_vhost(rendering, tmp_path / "routes.conf", vhost, 0, 2)
    kept = "".join(rest.files.values())
    assert "LoadModule proxy_wstunnel_module" in kept and "<Location" not in kept and "ProxyPass" not in kept
    assert [a.kind for a in actions] == ["write", "insert"] and actions[0].text == rendering.proxy_conf
