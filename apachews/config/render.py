"""`render`: the files of a `Deployment`, in steps: resolve its options, lay out the routes, render them with the
templates in templates/apache/ (which carry the syntax), place them the layout's way, and gather the notes."""

from __future__ import annotations

import dataclasses
from typing import Any

from apachews import __version__, capacity, catalogue, distros, tunnelling
from apachews.config import notes, routes
from apachews.config.deployment import Deployment, reproduce_command
from apachews.config.resolve import Resolved, resolve
from apachews.rendering import Rendering
from apachews.resources import template_environment
from apachews.tunnelling import Tunnelling

SSL_PROXY_CHECK_PEER_NAME_SINCE = catalogue.Version(2, 4, 5)  # SSLProxyCheckPeerName (2.2 has only ...PeerCN)


def render(deployment: Deployment | str, **options: Any) -> Rendering:
    """The files of a `Deployment`; or of a preset with the options `Deployment.of` takes (apache=, ...)."""
    if isinstance(deployment, Deployment):
        if options:
            raise TypeError("give a Deployment or a preset with options, not both")
        return _render(deployment)
    return _render(Deployment.of(deployment, **options))


def _render(deployment: Deployment) -> Rendering:
    """Resolve the options, lay out the routes, render them, place them the layout's way, gather the notes; then the
    MPM sizing file, and the header on every file."""
    r = resolve(deployment)
    routing = routes.routing(r)
    modules = routes.modules(r, routing)
    header = _header(r)
    proxy_conf = _proxy_conf(r, routing, header)
    values = notes.app_values(r)
    app_settings = notes.app_settings(r, values)
    rendering_notes = notes.route_notes(r, values, app_settings, rewrites=bool(routing.rewrites))
    files, tls_include, layout_notes = _place(r, modules, proxy_conf)
    rendering_notes += layout_notes
    if deployment.vhost == "tls" and "ssl" not in modules:
        modules.append("ssl")
    if r.uses_tls:
        rendering_notes.append(notes.backend_tls_note(r))
    release, layout, sizing, capacity_file = r.release, r.layout, deployment.sizing, None
    if sizing is not None:
        capacity_file = layout.capacity_file(release.family)
        files[capacity_file] = capacity.render(sizing, __version__, str(release.version))
        rendering_notes += notes.capacity_notes(sizing, layout)
    return Rendering(
        preset=r.preset,
        apache=str(release.version),
        distro=layout.name,
        tunnelling=r.style,
        files={name: with_header(text, header) for name, text in files.items()},
        modules=modules,
        notes=rendering_notes,
        websocket_paths=r.websocket_paths,
        path=r.path,
        proxy_conf=proxy_conf,
        backend_path=r.backend.path,
        sizing=sizing,
        capacity_file=capacity_file,
        handoff=r.handoff,
        h2=r.h2_websockets,
        header=header,
        app_settings=app_settings,
        heartbeat=dict(r.spec.heartbeat),
        timeout=r.spec.timeout,
        vhost=deployment.vhost,
        tls_include=tls_include,
    )


def _place(r: Resolved, modules: list[str], proxy_conf: str) -> tuple[dict[str, str], str | None, list[str]]:
    """The layout's files for the routes and modules, with vhost "tls" the one to Include inside its TLS
    <VirtualHost> (else None), and the layout's notes."""
    release, layout = r.release, r.layout
    backport = r.style is Tunnelling.APACHEWS and release.needs_backport
    parts = distros.Parts(r.preset, release.family, backport, tuple(modules), proxy_conf)
    if r.deployment.vhost == "tls":
        files, include = layout.tls_vhost_files(parts)
        return files, include, layout.tls_vhost_notes(parts, include)
    return layout.files(parts), None, layout.notes(parts)


def _header(r: Resolved) -> str:
    """The comment lines every file starts with: what it is for, why this tunnelling, how to render it again."""
    d, asked = r.deployment, r.deployment.tunnelling is not None
    again = dataclasses.replace(
        d,
        layout=r.layout.name,
        path=r.path if r.path != r.spec.path else None,
        tunnelling=r.style if asked else None,
        sticky=r.sticky,
    )
    return (
        template_environment("apache")
        .get_template("header.j2")
        .render(
            apachews_version=__version__,
            preset=r.preset,
            apache=str(r.release.version),
            layout=r.layout.name,
            tunnelling=r.style.description,
            why=tunnelling.why(r.release, r.style, asked=asked),
            command=reproduce_command(again),
        )
    )


def _proxy_conf(r: Resolved, routing: routes.Routing, header: str) -> str:
    """The routes alone (proxy.conf.j2): TLS to the backend, headers, balancers, RewriteRules, <Location>s."""
    return (
        template_environment("apache")
        .get_template("proxy.conf.j2")
        .render(
            header=header.rstrip("\n"),
            preset=r.preset,
            apache=str(r.release.version),
            preserve_host=r.spec.preserve_host,
            request_headers=[(name, value.format(scheme=r.public.scheme)) for name, value in r.spec.request_headers],
            tls=r.uses_tls,
            balancers=routing.balancers,
            cookie_path=r.path,
            backend_ca=r.backend_ca,
            check_peer_name=r.release.version >= SSL_PROXY_CHECK_PEER_NAME_SINCE,
            rewrites=routing.rewrites,
            locations=routing.routes,
            family=r.release.family,
            allow=list(r.allowed),
            h2=r.h2_websockets,
        )
    )


def with_header(text: str, header: str) -> str:
    """`text` starting with the rendering's header (once, wherever a layout put the rendered routes); a capacity
    file keeps its marker line first (doctor reads it back)."""
    lines = set(header.splitlines())
    body = "".join(line for line in text.splitlines(keepends=True) if line.strip() not in lines)
    if body.startswith(capacity.MARKER):
        marker, _, rest = body.partition("\n")
        return f"{marker}\n{header}\n{rest.lstrip(chr(10))}"
    return f"{header}\n{body.lstrip(chr(10))}"
