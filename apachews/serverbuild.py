"""`apachews build --apxs PATH`: the apachews module compiled with the server's own apxs and headers.

A distribution's httpd is not the vanilla release of the same number (enterprise 2.2.15 and 2.4.6 builds carry many
backports inside mod_proxy), so a module meant for it is best compiled against its own development package
(`distros` names it for each layout) rather than vanilla sources. The result goes where the other
builds go: dist/apxs-<headers version>/modules/mod_proxy_wstunnel.so with a build.json beside it.

On the host (`build_for_server`), or in a Docker image that has the dev package (`build_in_image`, no
network: the source goes in and the module comes out as archives), for servers whose headers this host lacks.
Either way apxs compiles with `-S CC=zig-cc` at the glibc floor of the headers' family (or --target /
--glibc; apachews/floor.py), zig links the object, and the .so is read back into build.json.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apachews import doctor, floor, installation, module
from apachews.catalogue import Version
from apachews.dist import Dist
from apachews.errors import BadInput, JobFailed
from apachews.progress import Progress
from apachews.serial import Serialised


@dataclass
class ServerBuild(Serialised):
    dist: Path
    module: Path
    info: dict[str, Any]  # build.json's facts
    _omit = ("info",)

    def to_dict(self) -> dict[str, Any]:
        """build.json's facts beside "dist" and "module" (the .so's path); build.json's own "module" (what it says
        of the .so) is "binary". Its keys are free-form, so spread here rather than derived."""
        facts = {key: value for key, value in self.info.items() if key != "module"}
        return {**super().to_dict(), **facts, "binary": self.info.get("module")}

    def text(self) -> str:
        lines = [
            f"Built {self.module}",
            f"  (apachews module, {self.info['builder']} builder"
            + (f" with {self.info['apxs']}" if self.info.get("apxs") else f" for --target {self.info.get('target')}")
            + f", headers {self.info['headers']},"
            f" MMN {self.info['mmn_major']}, {self.info['seconds']} s; details in {self.dist / 'build.json'})",
        ]
        if isinstance(self.info.get("module"), dict):
            lines.append(f"  {floor.summary(self.info['module'])}")
        if self.info.get("server"):
            lines.append(f"  server: {self.info['server']}")
        lines += [f"  warning: {w}" for w in self.info["warnings"]]
        lines.append(f"Install it: apachews install generic --module {self.module} --dry-run")
        return "\n".join(lines)


def build_for_server(
    apxs: str | None = None,
    out_dir: Path = Path("dist"),
    apachectl: str | None = None,
    progress: Progress | None = None,
    target: str = "",
    glibc: str = "",
) -> ServerBuild:
    """Compile with `apxs -c` against the headers apxs points at; refuse headers of another module ABI than
    the server's (it would not load)."""
    progress = progress or Progress()
    path = installation.find_apxs(apxs)
    if path is None:
        raise BadInput(
            f"no apxs {'at ' + apxs if apxs else 'on this machine'}",
            hint="install the server's dev package (apache2-dev, httpd-devel, apache2-prefork-dev)",
        )
    server_version, server_mmn, server_note = None, None, None
    try:
        server = installation.Installation.find(apachectl)
        control = server.command
        server_version, server_mmn = server.info().version, server.info().mmn
    except BadInput:
        if apachectl:
            raise
    headers = doctor.inspect_apxs(path, server_version or "", server_mmn)
    if headers.version is None:
        raise BadInput(f"{path}: {headers.detail}")
    warnings = []
    if server_version:
        if not headers.matches:
            raise BadInput(
                f"{path} has Apache {headers.version} headers (MMN {headers.mmn_major}) but the server is "
                f"{server_version} (MMN {server_mmn}): the module would not load",
                hint="install the dev package that matches the running server, or pass --apxs",
            )
        server_note = f"Apache {server_version} ({control}): {headers.detail}"
    else:
        warnings.append("no running server found to compare the headers with")
    glibc_floor = floor.resolve(Version.parse(headers.version).family, target, glibc)
    dist = Path(out_dir) / f"apxs-{headers.version}"
    progress.step(f"apxs -c against {headers.include_dir}, zig cc -target {glibc_floor.zig_target()}")
    started = time.monotonic()
    built = module.build_with_apxs(dist / "modules", apxs=path, glibc_floor=glibc_floor)
    seconds = round(time.monotonic() - started, 1)
    binary = floor.check(built.so, glibc_floor)
    warnings += built.warnings
    info_out = {
        "kind": "apachews",
        "builder": "apxs",
        "apxs": path,
        "headers": headers.version,
        "include_dir": headers.include_dir,
        "mmn_major": headers.mmn_major,
        "module": floor.record(binary, glibc_floor),
        "server": server_note,
        "seconds": seconds,
        "warnings": warnings,
    }
    Dist(dist).write_info(info_out)
    return ServerBuild(dist, built.so, info_out)


# The floor follows the headers' family: one zig-cc wrapper per family goes in (zig-cc-2.2, zig-cc-2.4).
_IMAGE_SCRIPT = """set -e
cd /tmp/apachews
include=$({apxs} -q INCLUDEDIR)
cat "$include/ap_release.h" "$include/ap_mmn.h" > headers.txt
minor=$(sed -n 's/^#define AP_SERVER_MINORVERSION_NUMBER *\\([0-9]*\\).*/\\1/p' headers.txt)
cc=/tmp/apachews/zig-cc-2.$minor
[ -x "$cc" ] || {{ echo "no glibc floor for Apache 2.$minor headers"; exit 4; }}
ZIG_GLOBAL_CACHE_DIR=/tmp/zig
if [ -d /ccache ] && [ -w /ccache ]; then ZIG_GLOBAL_CACHE_DIR=/ccache/zig; fi
export ZIG_GLOBAL_CACHE_DIR ZIG_LOCAL_CACHE_DIR=/tmp/apachews/zig-local  # this build's objects: its own
{apxs} -S CC="$cc" -c -Wc,-Wall {sources} > apxs.log 2>&1 || {{ cat apxs.log; exit 3; }}
"$cc" {link_args} -o out.so {objects} >> apxs.log 2>&1 || {{ cat apxs.log; exit 3; }}
cat apxs.log
"""


def build_in_image(
    image: str,
    apxs: str = "apxs",
    out_dir: Path = Path("dist"),
    apachectl: str | None = None,
    progress: Progress | None = None,
    target: str = "",
    glibc: str = "",
) -> ServerBuild:
    """Compile with the apxs inside `image` (an image with the server's dev package installed, as the layout
    names it), networking off. Refuses headers of another ABI than a given server's."""
    from apachews import build, images

    progress = progress or Progress()
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", apxs):
        raise BadInput(f"--apxs {apxs!r}: a path inside the image, letters, digits and . _ / - only")
    engine = images.client()
    if not images.image_exists(engine, image):
        raise BadInput(f"no image {image} on this Docker engine", hint="build or load one that has apxs")
    floors = {}
    for family in ("2.2", "2.4"):
        try:
            floors[family] = floor.resolve(family, target, glibc)
        except BadInput:
            if not target:
                raise  # a bad --glibc; a --target of the other family is refused once the headers are known
    wrappers = {
        f"zig-cc-{family}": floor.wrapper_script(f"{floor.DOCKER_ZIG_DIR}/zig", chosen.zig_target())
        for family, chosen in floors.items()
    }
    progress.step(f"apxs -c in {image}")
    started = time.monotonic()
    script = _IMAGE_SCRIPT.format(
        apxs=apxs,
        link_args=" ".join(floor.LINK_ARGS),
        sources=" ".join(module.SOURCE_NAMES),
        objects=" ".join(f".libs/{name[:-2]}.o" for name in module.SOURCE_NAMES),
    )
    container = engine.containers.create(
        image,
        ["sh", "-c", script],
        network_disabled=True,
        user="0",
        volumes={
            str(floor.zig_dir()): {"bind": floor.DOCKER_ZIG_DIR, "mode": "ro"},
            build.CCACHE_VOLUME: {"bind": "/ccache", "mode": "rw"},  # zig's cache, shared with the builds
        },
    )
    try:
        container.put_archive("/tmp", _source_tar(wrappers))
        container.start()
        status = container.wait(timeout=600)
        output = container.logs().decode(errors="replace")
        if status.get("StatusCode") != 0:
            raise JobFailed(f"apxs could not compile mod_proxy_wstunnel in {image}", hint=output[-4000:])
        so = _fetch(container, "/tmp/apachews/out.so")
        headers_text = _fetch(container, "/tmp/apachews/headers.txt").decode(errors="replace")
    finally:
        container.remove(force=True)
    version, mmn = installation.header_values(headers_text)
    if version is None:
        raise JobFailed(f"cannot read the header version of {apxs} in {image}")
    glibc_floor = floor.resolve(Version.parse(version).family, target, glibc)
    warnings = [line for line in output.splitlines() if "warning:" in line]
    server_note = _check_server(apachectl, version, mmn, warnings)
    dist = Dist(Path(out_dir) / f"apxs-{version}")
    dist.module_path.parent.mkdir(parents=True, exist_ok=True)
    staged = dist.module_path.with_name(f".{dist.module_path.name}.tmp")
    staged.write_bytes(so)
    binary = floor.check(staged, glibc_floor)
    staged.replace(dist.module_path)
    info = {
        "kind": "apachews",
        "builder": "apxs-image",
        "image": image,
        "apxs": apxs,
        "headers": version,
        "include_dir": None,
        "mmn_major": mmn,
        "module": floor.record(binary, glibc_floor),
        "server": server_note,
        "seconds": round(time.monotonic() - started, 1),
        "warnings": warnings,
    }
    dist.write_info(info)
    return ServerBuild(dist.path, dist.module_path, info)


def _source_tar(scripts: dict[str, str]) -> bytes:
    """apachews/: the module's source and the given executable scripts."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo("apachews")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        files = {name: (text.encode(), 0o644) for name, text in module.source_files().items()}
        files |= {name: (text.encode(), 0o755) for name, text in scripts.items()}
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(f"apachews/{name}")
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _fetch(container: object, path: str) -> bytes:
    stream, _ = container.get_archive(path)  # type: ignore[attr-defined]
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        extracted = tar.extractfile(member) if member else None
        if extracted is None:
            raise JobFailed(f"{path} is not a file in the container")
        return extracted.read()


def _check_server(apachectl: str | None, version: str, mmn: int | None, warnings: list[str]) -> str | None:
    """Compare headers with the server behind apachectl: refuse another module ABI. An image usually builds
    for another machine's server, so without apachectl there is nothing to compare with."""
    if apachectl is None:
        warnings.append("not compared with a server (pass --apachectl to check the module ABI)")
        return None
    server = installation.Installation.find(apachectl)
    info = server.info()
    if mmn is not None and info.mmn_major is not None and mmn != info.mmn_major:
        raise BadInput(
            f"the image's headers are Apache {version} (MMN {mmn}) but the server is {info.version} "
            f"(MMN {info.mmn}): the module would not load",
            hint="use an image with the server's own dev package",
        )
    return f"Apache {info.version} ({server.command}): headers {version}, MMN {mmn}"


def build_with(
    apxs: str,
    base_image: str | None,
    out_dir: Path,
    progress: Progress | None = None,
    target: str = "",
    glibc: str = "",
) -> ServerBuild:
    """`apachews build --apxs PATH [--base-image IMAGE]`: on the host, or in the image when one is named."""
    if base_image:
        return build_in_image(base_image, apxs=apxs, out_dir=out_dir, progress=progress, target=target, glibc=glibc)
    return build_for_server(apxs, out_dir=out_dir, progress=progress, target=target, glibc=glibc)
