"""`apachews config`: Apache snippets for WebSocket applications, per version, distribution and preset.

Every value that reaches a file is validated first (no directive injection); the templates in
templates/apache/ carry the syntax, this module decides what goes where.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from apachews import __version__, catalogue, distros
from apachews.catalogue import Release
from apachews.errors import BadInput
from apachews.resources import template_environment, templates_dir

PREFER = ("wstunnel", "http-upgrade")
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/\[\]-]+")
_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*")
_HOST_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    path: str
    backend: str
    routes: tuple[dict[str, str], ...]
    notes: tuple[str, ...]


@dataclass
class Rendering:
    preset: str
    apache: str
    distro: str
    tunnelling: str
    files: dict[str, str]
    modules: list[str]
    notes: list[str] = field(default_factory=list)
    websocket_paths: list[str] = field(default_factory=list)  # where clients open WebSockets

    def to_dict(self) -> dict[str, object]:
        return {
            "preset": self.preset,
            "websocket_paths": self.websocket_paths,
            "apache": self.apache,
            "distro": self.distro,
            "tunnelling": self.tunnelling,
            "modules": self.modules,
            "notes": self.notes,
            "files": self.files,
        }

    def text(self) -> str:
        return "".join(f"# file: {name}\n{body}\n" for name, body in self.files.items())


@functools.lru_cache(maxsize=1)
def _presets() -> dict[str, Preset]:
    data = json.loads((templates_dir() / "apache" / "presets.json").read_text())
    return {
        name: Preset(name, p["description"], p["path"], p["backend"], tuple(p["routes"]), tuple(p["notes"]))
        for name, p in data.items()
        if not name.startswith("_")
    }


def list_presets() -> list[Preset]:
    return list(_presets().values())


# -- validation: every value is checked before it can reach a file ----------------------------------------
@dataclass(frozen=True)
class Backend:
    tls: bool
    netloc: str  # host:port, IPv6 in brackets
    path: str

    def url(self, kind: str, path_suffix: str = "") -> str:
        scheme = {"ws": "ws", "http": "http"}[kind] + ("s" if self.tls else "")
        return f"{scheme}://{self.netloc}{join_path(self.path, path_suffix) if path_suffix else self.path}"


def validate_backend(value: str, option: str = "--backend") -> Backend:
    if not _URL_CHARS.fullmatch(value or ""):
        raise BadInput(
            f"{option} {value!r} has characters that are not allowed in a backend URL",
            hint="use scheme://host:port/path with letters, digits and . _ ~ : / - only",
        )
    parts = urlsplit(value)
    if parts.scheme not in ("ws", "wss", "http", "https"):
        raise BadInput(f"{option} {value!r}: the scheme must be ws, wss, http or https")
    try:
        port = parts.port
    except ValueError:
        raise BadInput(f"{option} {value!r}: the port must be a number from 1 to 65535") from None
    host = parts.hostname or ""
    if port is not None and not 1 <= port <= 65535 or parts.port == 0:
        raise BadInput(f"{option} {value!r}: the port must be a number from 1 to 65535")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BadInput(f"{option} {value!r}: no user, query or fragment in a backend URL")
    try:
        address = ipaddress.ip_address(host)
        netloc_host = f"[{host}]" if address.version == 6 else host
    except ValueError:
        if not _HOST_RE.fullmatch(host):
            raise BadInput(f"{option} {value!r}: {host!r} is not a valid host name") from None
        netloc_host = host
    tls = parts.scheme in ("wss", "https")
    default_port = 443 if tls else 80
    path = parts.path or "/"
    validate_path(path, option)
    return Backend(tls, f"{netloc_host}:{port or default_port}", path)


def validate_path(value: str, option: str = "--path") -> str:
    if not _PATH_RE.fullmatch(value or "") or "//" in value or "/../" in f"{value}/" or "/./" in f"{value}/":
        raise BadInput(
            f"{option} {value!r} is not a safe URL path",
            hint="start with / and use letters, digits and . _ ~ / - only (no //, no ..)",
        )
    return value


@dataclass(frozen=True)
class Allowed:
    value: str
    is_ip: bool

    def __str__(self) -> str:
        return self.value


def validate_allow(value: str) -> Allowed:
    try:
        return Allowed(str(ipaddress.ip_network(value, strict=False)), True)
    except ValueError:
        pass
    if _HOST_RE.fullmatch(value or ""):
        return Allowed(value, False)
    raise BadInput(f"--allow {value!r} is neither an IP address, a CIDR range nor a host name")


def join_path(base: str, suffix: str) -> str:
    if not suffix:
        return base
    return base.rstrip("/") + suffix


# -- rendering ----------------------------------------------------------------------------------------------
def tunnelling_mode(release: Release, prefer: str | None) -> str:
    """ "upgrade" (mod_proxy_http, 2.4.47+) or "wstunnel" (stock or backported mod_proxy_wstunnel)."""
    if prefer not in (None, *PREFER):
        raise BadInput(f"--prefer {prefer!r} is not one of: {', '.join(PREFER)}")
    if prefer == "http-upgrade" and not release.proxy_http_upgrade:
        raise BadInput(
            f"mod_proxy_http tunnels WebSockets only from 2.4.47 on, not in {release.version}",
            hint="leave --prefer out: this release uses mod_proxy_wstunnel",
        )
    if release.proxy_http_upgrade and prefer != "wstunnel":
        return "upgrade"
    return "wstunnel"


def render(
    preset: str,
    *,
    apache: str,
    distro: str = "generic",
    backends: Sequence[str] = (),
    path: str | None = None,
    allow: Sequence[str] = (),
    tls: bool = False,
    prefer: str | None = None,
    sticky: bool = False,
) -> Rendering:
    presets = _presets()
    if preset not in presets:
        raise BadInput(f"unknown preset {preset!r}", hint="presets: " + ", ".join(presets))
    spec = presets[preset]
    release = catalogue.load().get(apache)
    layout = distros.get(distro)
    mode = tunnelling_mode(release, prefer)
    path = validate_path(path or spec.path)
    checked = [validate_backend(b) for b in (backends or [spec.backend])]
    allowed = [validate_allow(a) for a in allow]
    kinds = {route["kind"] for route in spec.routes}
    if len(checked) > 1 and "balancer" not in kinds:
        raise BadInput(f"preset {preset} takes one --backend; use the balancer preset for several")
    if tls:
        checked = [Backend(True, b.netloc, b.path) for b in checked]
    uses_tls = any(b.tls for b in checked)
    wstunnel = mode == "wstunnel"

    locations, rewrites, balancer = [], [], None
    backend = checked[0]
    for route in spec.routes:
        kind, where = route["kind"], join_path(path, route["suffix"])
        if kind == "http" or (kind == "mixed" and not wstunnel):
            target = backend.url("http", route["backend_path"])
            options = " upgrade=websocket" if kind == "mixed" else ""
            comment = "HTTP and WebSocket (mod_proxy_http upgrade)" if options else "HTTP"
            locations.append(_location(where, target, options, comment))
        elif kind == "mixed":
            rewrites.append(
                {
                    "path": where,
                    "pattern": where.rstrip("/").replace(".", r"\."),
                    "target": backend.url("ws").rstrip("/"),
                }
            )
            locations.append(_location(where, backend.url("http", route["backend_path"]), "", "HTTP (non-upgrade)"))
        elif kind == "ws":
            target = backend.url("ws" if wstunnel else "http", route["backend_path"])
            options = "" if wstunnel else " upgrade=websocket"
            locations.append(_location(where, target, options, "WebSocket"))
        elif kind == "balancer":
            name = f"apachews-{preset}"
            balancer = {
                "name": name,
                "sticky": sticky,
                "cookie_path": path,
                # mod_proxy_http's upgrade is a worker parameter: it goes on each member.
                "member_options": "" if wstunnel else " upgrade=websocket",
                "members": [
                    {"url": b.url("ws" if wstunnel else "http"), "route": f"m{i}"} for i, b in enumerate(checked, 1)
                ],
            }
            locations.append(_location(where, f"balancer://{name}/", "", "WebSocket, load-balanced"))
    # Later <Location> sections win when paths nest: the more specific (WebSocket) ones go last.
    locations.sort(key=lambda location: len(location["path"]))

    modules = ["proxy", "proxy_http"]
    if wstunnel and kinds & {"ws", "mixed", "balancer"}:
        modules.append("proxy_wstunnel")
    if rewrites:
        modules.append("rewrite")
    if balancer:
        modules.append("proxy_balancer")
        if release.family != "2.2":
            modules += ["slotmem_shm", "lbmethod_byrequests"]
        if sticky:
            modules.append("headers")
    if uses_tls:
        modules.append("ssl")

    tunnelling = (
        "mod_proxy_http upgrade=websocket"
        if not wstunnel
        else "backported mod_proxy_wstunnel (apachews build)"
        if release.needs_backport
        else "stock mod_proxy_wstunnel"
    )
    proxy_conf = (
        template_environment("apache")
        .get_template("proxy.conf.j2")
        .render(
            apachews_version=__version__,
            preset=preset,
            apache=str(release.version),
            tunnelling=tunnelling,
            preserve_host=preset == "code-server",
            tls=uses_tls,
            balancer=balancer,
            rewrites=rewrites,
            locations=locations,
            family=release.family,
            allow=allowed,
        )
    )
    parts = distros.Parts(preset, release.family, release.needs_backport, tuple(modules), proxy_conf)
    notes = list(spec.notes)
    if release.needs_backport:
        notes.insert(
            0,
            f"Apache {release.version} has no mod_proxy_wstunnel: build it with "
            f"`apachews build --apache {release.version}` and install the .so first.",
        )
    return Rendering(
        preset=preset,
        apache=str(release.version),
        distro=layout.name,
        tunnelling=tunnelling,
        files=layout.files(parts),
        modules=modules,
        notes=notes + layout.notes(parts),
        websocket_paths=[join_path(path, r["suffix"]) for r in spec.routes if r["kind"] != "http"],
    )


def _location(path: str, target: str, options: str, comment: str) -> dict[str, str]:
    return {"path": path, "target": target, "reverse": target, "options": options, "comment": comment}


# -- writing and checking -------------------------------------------------------------------------------------
def write(rendering: Rendering, out_dir: Path, force: bool = False) -> list[Path]:
    """Write every file or none: stage beside the target, refuse to overwrite unless `force`."""
    out_dir = Path(out_dir)
    targets = [out_dir / name for name in rendering.files]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise BadInput(f"would overwrite {', '.join(existing)}", hint="pass --force to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".apachews-config-", dir=out_dir))
    try:
        for name, text in rendering.files.items():
            staged = stage / name
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_text(text)
        for name in rendering.files:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / name, out_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return targets


def check(rendering: Rendering, binary: Path | None = None):
    """`httpd -t` of the rendering in a throwaway ServerRoot; modules a distro enables by other means
    (a2enmod) are loaded from the Apache's own modules directory."""
    from apachews import httpd

    server = httpd.locate(binary=binary)
    if server.version.family != catalogue.Version.parse(rendering.apache).family:
        raise BadInput(
            f"the config is for Apache {rendering.apache} but {server.binary} is {server.version}",
            hint="pass --httpd with an Apache of the same family (e.g. one from `apachews build --with-httpd`)",
        )
    missing = [m for m in rendering.modules if not (server.modules_dir / f"mod_{m}.so").exists()]
    if missing and not server.compiled_in() >= set(missing):
        raise BadInput(
            f"{server.binary} has no module(s) {', '.join(missing)} to check this config with",
            hint="check with an httpd that has them (apachews build --with-httpd), or leave out --check",
        )
    # Load every module first, in dependency order (proxy before its sub-modules), as a server that ran
    # a2enmod would; a .load file the distro layout ships is used as written.
    load_files = {Path(name).stem: text for name, text in rendering.files.items() if name.endswith(".load")}
    loads = [
        load_files.get(m)
        or f'<IfModule !mod_{m}.c>\nLoadModule {m}_module "{server.modules_dir}/mod_{m}.so"\n</IfModule>\n'
        for m in rendering.modules
    ]
    snippets = {"00-modules.conf": "".join(loads)}
    snippets.update({Path(n).name: t for n, t in rendering.files.items() if not n.endswith(".load")})
    # Gentoo wraps its modules.d files in <IfDefine PROXY>: define it, or the check would skip them.
    with httpd.ServerRoot(server, snippets, defines=("PROXY",)) as root:
        return root.syntax_check()
