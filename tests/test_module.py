"""The apachews mod_proxy_wstunnel itself: compiled with -Wall against Debian's apache2-dev, self-contained
(no symbol mod_proxy 2.2 does not export), and loaded instead of the stock module into a real Apache 2.4
for the whole WebSocket suite, reset storm included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from apachews import config, module, torture, verify
from apachews.distros import trees
from apachews.errors import BadInput
from apachews.httpd import Httpd, ServerRoot
from apachews.lab.echo import EchoServer
from apachews.lab.holding import HoldingBackend

# What mod_proxy 2.2.x exports (PROXY_DECLARE in modules/proxy/mod_proxy.h, same in 2.2.15 to 2.2.34)
# among what our module calls; the git test below re-derives it from real 2.2 headers.
MOD_PROXY_22_EXPORTS = {
    "ap_proxy_acquire_connection",
    "ap_proxy_canon_netloc",
    "ap_proxy_canonenc",
    "ap_proxy_connect_backend",
    "ap_proxy_connection_create",
    "ap_proxy_determine_connection",
    "ap_proxy_release_connection",
    "proxy_hook_canon_handler",
    "proxy_hook_scheme_handler",
    "proxy_module",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> module.ApxsBuild:
    return module.build_with_apxs(tmp_path_factory.mktemp("apxs"), extra_cflags=["-Wextra"])


def _proxy_imports(so: Path) -> set[str]:
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True).stdout
    names = {line.split()[-1] for line in undefined.splitlines() if line.strip()}
    return {name for name in names if "proxy" in name}


def test_compiles_without_warnings(built: module.ApxsBuild) -> None:
    assert built.so.exists()
    assert built.warnings == [], "\n".join(built.warnings)


def test_needs_nothing_from_mod_proxy_that_22_lacks(built: module.ApxsBuild) -> None:
    assert _proxy_imports(built.so) <= MOD_PROXY_22_EXPORTS


@pytest.mark.parametrize("tag", ["2.2.15", "2.2.31", "2.4.1"])
def test_imports_exist_in_real_headers(git_tree, built: module.ApxsBuild, tag: str) -> None:
    header = (git_tree(tag) / "modules/proxy/mod_proxy.h").read_text()
    declared = set(re.findall(r"PROXY_DECLARE\([^)]*\)\s*\**\s*(\w+)\s*\(", header))
    declared |= set(re.findall(r"APR_DECLARE_EXTERNAL_HOOK\(proxy,\s*PROXY,\s*\w+,\s*(\w+)", header))
    declared = {f"proxy_hook_{name}" if not name.startswith("ap_") else name for name in declared} | declared
    declared.add("proxy_module")
    assert _proxy_imports(built.so) <= declared


def test_committed_patch_is_generated_from_the_c_source() -> None:
    committed = (module.patches_dir() / module.SOURCE_PATCH).read_text()
    assert committed == module.creation_patch(), "run `make patches` after editing module/mod_proxy_wstunnel.c"


def test_creation_patch_follows_the_source() -> None:
    # The check above must be able to fail: a change to any file gives a different patch.
    files = module.source_files()
    assert list(files) == [module.HEADER_NAME, *module.SOURCE_NAMES]
    for name in files:
        edited = dict(files, **{name: files[name] + "/* edited */\n"})
        assert module.creation_patch(edited) != module.creation_patch()


def test_every_file_of_module_dir_is_a_part_of_the_module() -> None:
    # A C file added to module/ but not to module.SOURCE_NAMES would be in no build.
    on_disk = {p.name for p in module.source_path().parent.iterdir() if p.suffix in (".c", ".h")}
    assert on_disk == set(module.FILE_NAMES)


def test_log_tags_are_unique() -> None:
    # "APWSnnnn" names one place in the source: a tag found in an error log leads to one line.
    tags: dict[str, list[str]] = {}
    for name, text in module.source_files().items():
        for number, line in enumerate(text.splitlines(), 1):
            for tag in re.findall(r"PWS_LOGNO\((\d+)\)", line):
                tags.setdefault(tag, []).append(f"{name}:{number}")
    assert len(tags) > 30
    assert {tag: places for tag, places in tags.items() if len(places) > 1} == {}


@pytest.fixture(scope="module")
def built_before_fix(tmp_path_factory: pytest.TempPathFactory) -> module.ApxsBuild:
    """The module before it removed mod_reqtimeout's filter (this repository's own history)."""
    try:
        source = module.source_at(module.BEFORE_FIXES)
    except BadInput as error:
        pytest.skip(error.message)
    return module.build_with_apxs(tmp_path_factory.mktemp("apxs-old"), source=source)


def test_full_suite_with_our_module_in_apache_24(built: module.ApxsBuild, system_httpd: Httpd) -> None:
    report = verify.run(system_httpd, setup=verify.ServerSetup(module=built.so))
    assert report.tunnelling == "apachews"
    assert report.ok, report.table()
    orphans = next(check for check in report.checks if check.name == "abrupt-disconnect")
    assert orphans.figure is not None and orphans.figure <= module.DEFAULT_FIN_TIMEOUT + verify.ORPHAN_SLACK_SECONDS


def test_idle_sessions_outlive_mod_reqtimeout_in_debians_layout(
    built: module.ApxsBuild, built_before_fix: module.ApxsBuild, system_httpd: Httpd
) -> None:
    # Debian enables mod_reqtimeout (body=10, lowered to 2 s by verify): the module before the fix let it
    # end every tunnel whose client spoke after a silence (AH01382).
    fixed = verify.run(system_httpd, setup=verify.ServerSetup(module=built.so, layout="debian"), checks=["idle"])
    assert fixed.ok, fixed.table()
    before = verify.run(
        system_httpd, setup=verify.ServerSetup(module=built_before_fix.so, layout="debian"), checks=["idle"]
    )
    assert not before.ok and "client first" in before.checks[0].detail, before.table()


# A few presets of each route shape in the default run; every preset with -m slow (make test-all).
CORE_PRESETS = ("gateone", "broadway", "jupyter", "socketio", "balancer")


@pytest.mark.parametrize(
    "preset",
    [pytest.param(p.name, marks=() if p.name in CORE_PRESETS else pytest.mark.slow) for p in config.list_presets()],
)
def test_every_preset_tunnels_through_our_module(built: module.ApxsBuild, system_httpd: Httpd, preset: str) -> None:
    # In Debian's own layout: balancer with our module as the member scheme; mixed, jupyter and code-server on
    # one http:// route with ProxyWebsocketUpgrade.
    checks = ["config-clean", "handshake", "echo-binary", "refuse-403", "abrupt-disconnect", "idle", "app-routes"]
    checks += ["tls-front", "error-log-clean"]
    report = verify.run(system_httpd, preset=preset, setup=verify.ServerSetup(module=built.so), checks=checks)
    assert report.ok, report.table()
    assert report.layout == trees.default_layout(system_httpd)


def test_upstream_style_idle_timeout_syntax_is_accepted(built: module.ApxsBuild, system_httpd: Httpd) -> None:
    snippet = (
        "LoadModule proxy_module modules/mod_proxy.so\n"
        "ProxyWebsocketIdleTimeout 300\n"
        '<Location "/ws">\n    ProxyPass "ws://127.0.0.1:1/"\n    ProxyWebsocketIdleTimeout 500ms\n</Location>\n'
    )
    with ServerRoot(system_httpd, {"idle.conf": snippet}, extra_modules={"proxy_wstunnel": built.so}) as root:
        assert root.syntax_check().clean
    bad = snippet.replace("500ms", "5x")  # httpd's own parser takes "soon" for 0 s, as upstream does
    with ServerRoot(system_httpd, {"idle.conf": bad}, extra_modules={"proxy_wstunnel": built.so}) as root:
        result = root.syntax_check()
    assert not result.ok and "ProxyWebsocketIdleTimeout" in (result.error or "")


def test_idle_timeout_closes_a_quiet_tunnel(built: module.ApxsBuild, system_httpd: Httpd) -> None:
    rendering = config.render(
        "generic", apache=str(system_httpd.version), backends=["ws://127.0.0.1:1/"], prefer="apachews"
    )

    async def idle_then_read(url: str) -> float:
        async with connect(url) as ws:
            await ws.send("before the pause")
            assert await ws.recv() == "before the pause"
            started = time.monotonic()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return time.monotonic() - started

    with EchoServer() as backend:
        snippets = {
            name: text.replace("ws://127.0.0.1:1", backend.url.rstrip("/")) + "ProxyWebsocketIdleTimeout 1\n"
            for name, text in rendering.files.items()
        }
        with ServerRoot(system_httpd, snippets, extra_modules={"proxy_wstunnel": built.so}) as root:
            root.start()
            waited = asyncio.run(idle_then_read(f"ws://127.0.0.1:{root.port}/ws"))
    assert 0.8 <= waited < 3.0


def test_a_module_built_for_another_family_is_refused_before_apache_starts(
    built: module.ApxsBuild, system_httpd: Httpd, tmp_path: Path
) -> None:
    # What `apachews build` leaves beside a 2.2 module; httpd itself would only say "undefined symbol".
    dist = tmp_path / "httpd-2.2.31"
    (dist / "modules").mkdir(parents=True)
    so = dist / "modules" / "mod_proxy_wstunnel.so"
    so.write_bytes(built.so.read_bytes())
    (dist / "build.json").write_text('{"apache": "2.2.31", "backport": true}')
    with pytest.raises(BadInput, match="built for Apache 2.2.31"):
        verify.run(system_httpd, setup=verify.ServerSetup(module=so), checks=["handshake"])


def test_fin_timeout_default_is_the_c_sources() -> None:
    found = re.search(r"#define PWS_DEFAULT_FIN_TIMEOUT apr_time_from_sec\((\d+)\)", module.source_text())
    assert found and float(found.group(1)) == module.DEFAULT_FIN_TIMEOUT


def test_fin_timeout_takes_httpds_timeout_syntax(built: module.ApxsBuild, system_httpd: Httpd) -> None:
    snippet = (
        "LoadModule proxy_module modules/mod_proxy.so\n"
        "ProxyWebsocketFinTimeout 2\n"
        '<Location "/ws">\n    ProxyPass "ws://127.0.0.1:1/"\n    ProxyWebsocketFinTimeout 500ms\n</Location>\n'
    )
    with ServerRoot(system_httpd, {"fin.conf": snippet}, extra_modules={"proxy_wstunnel": built.so}) as root:
        assert root.syntax_check().clean
    with ServerRoot(
        system_httpd, {"fin.conf": snippet.replace("500ms", "-1")}, extra_modules={"proxy_wstunnel": built.so}
    ) as root:
        result = root.syntax_check()
    assert not result.ok and "ProxyWebsocketFinTimeout" in (result.error or "")


@contextlib.contextmanager
def _holding_proxy(
    built: module.ApxsBuild, httpd: Httpd, extra: str = ""
) -> Iterator[tuple[ServerRoot, HoldingBackend]]:
    """The apachews module in front of a backend that never closes on EOF, at /ws."""
    with HoldingBackend() as backend:
        rendering = config.render("generic", apache=str(httpd.version), backends=[backend.url], prefer="apachews")
        snippets = {**rendering.files, "99-fin.conf": extra}
        with ServerRoot(httpd, snippets, extra_modules={"proxy_wstunnel": built.so}) as root:
            root.start()
            yield root, backend


def test_fin_timeout_is_what_the_directive_says(built: module.ApxsBuild, system_httpd: Httpd) -> None:
    with _holding_proxy(built, system_httpd, "ProxyWebsocketFinTimeout 1\n") as (root, backend):
        found = asyncio.run(verify.orphans(root.port, "/ws", backend, "fin"))
    assert found.upgraded == verify.ORPHAN_CLIENTS and backend.eofs == verify.ORPHAN_CLIENTS
    assert found.gone_after is not None and 0.9 <= found.gone_after < 2.5, found.text()


def _close_frame_backend(listener: socket.socket) -> None:
    """Answer the upgrade, skip frames until the client's close frame, answer it, then hold the socket open."""
    sock, _ = listener.accept()
    stream = torture.Stream(sock, client=False)
    _, headers, _ = stream.read_head()
    stream.send(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {verify.expected_accept(headers['sec-websocket-key'])}\r\n\r\n"
        ).encode()
    )
    while stream.read_frame()[0] != 0x8:
        pass
    stream.send(torture.ws_frame(b"\x03\xe8", 0x8, mask=False))
    with contextlib.suppress(OSError):
        sock.recv(1)  # held until the proxy closes (or resets) its side
    sock.close()


@pytest.mark.parametrize("handoff", [False, True], ids=["worker-held", "handoff"])
def test_close_frames_both_ways_end_the_tunnel_at_once(
    built: module.ApxsBuild, system_httpd: Httpd, handoff: bool
) -> None:
    # Neither side closes TCP after the close handshake; the fin timeout is long: only the close frames, spotted
    # through a 1 MiB masked frame (64-bit length) and a close frame's header arriving a byte at a time, end it.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        backend = threading.Thread(target=_close_frame_backend, args=(listener,), daemon=True)
        backend.start()
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"
        rendering = config.render("generic", apache=str(system_httpd.version), backends=[url], prefer="apachews")
        extra = "ProxyWebsocketFinTimeout 30\n" + ("ProxyWebsocketHandoff On\n" if handoff else "")
        snippets = {**rendering.files, "99-fin.conf": extra}
        with ServerRoot(system_httpd, snippets, extra_modules={"proxy_wstunnel": built.so}) as root:
            root.start()
            stream, status, _, _ = torture.open_ws(root.port, "/ws")
            assert status == 101
            stream.send(torture.ws_frame(os.urandom(2**20)))
            close = torture.ws_frame(b"\x03\xe8", 0x8)
            for byte in close:
                stream.send(bytes([byte]))
                time.sleep(0.02)
            assert stream.read_frame()[0] == 0x8
            stream.sock.settimeout(20)  # well inside the 30 s fin timeout: only the close frames can end it
            assert stream.sock.recv(1) == b"", "the proxy sent more after the close frames"
            stream.close()
        backend.join(5)


@pytest.mark.parametrize("handoff", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["worker-held", "handoff"])
def test_abrupt_disconnect_goes_red_on_the_module_before_the_fin_timeout(
    built: module.ApxsBuild, system_httpd: Httpd, tmp_path: Path, handoff: bool
) -> None:
    try:
        source = module.source_at(module.BEFORE_FIN_TIMEOUT)
    except BadInput as error:
        pytest.skip(error.message)
    old = module.build_with_apxs(tmp_path, source=source)
    before = verify.run(
        system_httpd, setup=verify.ServerSetup(module=old.so, handoff=handoff), checks=["abrupt-disconnect"]
    )
    assert not before.ok and "CLOSE-WAIT" in before.checks[0].detail, before.table()
    fixed = verify.run(
        system_httpd, setup=verify.ServerSetup(module=built.so, handoff=handoff), checks=["abrupt-disconnect"]
    )
    assert fixed.ok, fixed.table()
