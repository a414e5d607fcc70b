"""`running_proxy`: the backends, the preset rendered for the Apache at hand and laid out as its users lay it
out (distros.trees: a distribution's own tree with its <VirtualHost> and mod_reqtimeout, or the release's own
httpd.conf; "bare" is the lab ServerRoot), that Apache started, and everything stopped and removed on exit,
whatever ends the run (the lab runner owns the httpd: Ctrl-C and SIGTERM clean up alike)."""

from __future__ import annotations

import contextlib
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from apachews import capacity, catalogue, config
from apachews.distros import trees
from apachews.errors import BadInput
from apachews.httpd import Httpd, ServerRoot, free_port
from apachews.lab.certs import make_certificate
from apachews.lab.echo import EchoServer
from apachews.lab.holding import HoldingBackend
from apachews.lab.processes import owned
from apachews.progress import Progress
from apachews.verify.cases import (
    CASES,
    CannotRender,
    check_module_fits,
    h2_unavailable,
    raised_open_files,
    resolve_style,
    verify_sizing,
)
from apachews.verify.checks_capacity import CAPACITY_FDS_PER_WEBSOCKET
from apachews.verify.routes import keep_rewrites_off, preset_backends, verify_routes, with_verify_routes
from apachews.verify.server_setup import DEFAULT_SETUP, ServerSetup
from apachews.verify.target import IDLE_BODY_TIMEOUT, VERIFY_PREFIX, Edit, Proxy, Target


@contextlib.contextmanager
def running_proxy(
    httpd: Httpd,
    *,
    preset: str = "generic",
    setup: ServerSetup = DEFAULT_SETUP,
    edit: Edit | None = None,
    progress: Progress | None = None,
) -> Iterator[Proxy]:
    """Start the backends and Apache in front of them, set up as `setup` says (server_setup.py: the module,
    style, layout, MPM, sizing, handoff, HTTP/2); stop and remove all on exit.

    `edit` may change the files verify is about to install (file name -> text): the tests use it to show
    that a check goes red on a config that is wrong in the way users' configs are. With `setup.max_websockets`
    the server gets the MPM sizing `apachews config --max-websockets` renders (the same function and template),
    this process and Apache a raised open-files limit, and the capacity check opens that many WebSockets."""
    progress = progress or Progress()
    module = setup.module.resolve() if setup.module is not None else None
    if module is not None:
        check_module_fits(module, httpd)
    case = CASES.get(preset)
    if case is not None:
        preset = case.preset
    layout = setup.layout or (case.layout if case is not None else None) or trees.default_layout(httpd)
    style = resolve_style(httpd, setup)
    release = catalogue.load().get(str(httpd.version))
    has_ssl = httpd.has_module("ssl")
    if case is not None and not has_ssl:
        raise BadInput(f"{httpd.binary} has no mod_ssl: this setup needs it")
    backend_tls = case is not None and case.backend_tls
    front_tls = case is not None and case.front_tls
    sizing = stock = None
    if setup.max_websockets is not None:
        sizing, stock = verify_sizing(httpd, layout, setup)
    h2_off = h2_unavailable(httpd, layout, style, setup.mpm)
    if setup.h2 and h2_off:
        raise BadInput(f"no WebSockets over HTTP/2 here: {h2_off}")
    h2_off = h2_off or ("not asked for" if setup.h2 is False else "")
    progress.step("starting the backends")
    with contextlib.ExitStack() as stack:
        if sizing is not None:
            needed = CAPACITY_FDS_PER_WEBSOCKET * sizing.websockets + 256
            limit = stack.enter_context(raised_open_files(max(needed, sizing.open_files)))
            handed = " handed off" if sizing.handoff else ""
            sizing_note = f"{capacity.sized(sizing, limit).summary()}, sized for {sizing.websockets} WebSockets"
            sizing_note += f"{handed} + {sizing.http_reserve} for HTTP"
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="apachews-verify-")))
        scratch.chmod(0o711)  # the server's User reaches the tree's run dir (the handoff keeper's socket)
        tls_ca = tls_key = None
        tls_context = None
        if has_ssl:
            tls_ca, tls_key = make_certificate(scratch)
            tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls_context.load_cert_chain(tls_ca, tls_key)
        members = [stack.enter_context(EchoServer("echo", tls=tls_context if backend_tls else None)) for _ in range(2)]
        backends = {mode: stack.enter_context(EchoServer(mode)) for mode in ("refuse-200", "refuse-403", "die")}
        holding = stack.enter_context(HoldingBackend())
        if tls_context is not None:
            backends["tls"] = stack.enter_context(EchoServer("echo", tls=tls_context))
        app_backends = preset_backends(preset, members)
        try:
            rendering = config.render(
                preset,
                apache=release,
                distro=trees.rendering_distro(layout),
                backends=app_backends,
                prefer=style,
                sizing=sizing,
                handoff=setup.handoff,
                h2=not h2_off,
                tls=backend_tls,
                backend_ca=str(tls_ca) if backend_tls else None,
                vhost="tls" if front_tls else "server",
            )
        except BadInput as error:
            raise CannotRender(error.message, hint=error.hint) from None
        nohalfclose = "SetEnv proxy-nohalfclose 1" in rendering.proxy_conf
        routes = verify_routes({**backends, "hold": holding}, style, tls_ca, nohalfclose, h2=not h2_off)
        port = free_port()
        tls_port = free_port() if has_ssl else None
        progress.step(f"starting Apache {httpd.version} ({httpd.binary}), {layout} layout")
        if layout == "bare":
            files = with_verify_routes(rendering.files, routes, release.family)
            files = edit(files) if edit else files
            sized = rendering.capacity_file in files
            root = stack.enter_context(
                ServerRoot(
                    httpd, files, port=port, extra_modules={"proxy_wstunnel": module} if module else None, mpm=setup.mpm
                )
            )
            server = root.server
            tls_port = None  # the lab layout has no TLS front
        else:
            if edit is not None:
                rendering.files = edit(rendering.files)
                rendering.proxy_conf = edit({"proxy": rendering.proxy_conf})["proxy"]
                routes = edit({"routes": routes})["routes"]
            sized = rendering.capacity_file in rendering.files
            additions = trees.Additions(
                routes=routes,
                first=keep_rewrites_off(),
                body_timeout=IDLE_BODY_TIMEOUT,
                tls_port=tls_port,
                tls_cert=tls_ca,
                tls_key=tls_key,
                modules=["ssl"] if tls_port else [],
                mpm=setup.mpm,
            )
            tree = scratch / "tree"
            tree.mkdir()
            server = trees.build(layout, tree, httpd, rendering, module, port, additions)
        stack.enter_context(owned(server))  # stopped, and nothing of its tree left running
        syntax = server.start()
        target = Target(
            port,
            members[0],
            backends["refuse-200"],
            backends["refuse-403"],
            backends["die"],
            server.error_log,
            rendering.websocket_paths[0],
            rendering=rendering,
            members=members[: len(app_backends)],
            syntax=syntax,
            tls_echo=backends.get("tls"),
            tls_port=tls_port,
            tls_ca=tls_ca,
            front_tls=front_tls,
            die_path=f"{VERIFY_PREFIX}/die",
            refuse_paths={200: f"{VERIFY_PREFIX}/refuse-200", 403: f"{VERIFY_PREFIX}/refuse-403"},
            max_websockets=setup.max_websockets,
            holding=holding,
            holding_path=f"{VERIFY_PREFIX}/hold",
            h2=h2_off,
        )
        if sizing is not None and stock is not None:
            target.server_capacity = sizing_note if sized else f"{stock.summary()}, not sized"
        yield Proxy(target, server, style.value, layout, sizing)
