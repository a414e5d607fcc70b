"""`apachews build --dev-package FILE...`: the module compiled against a distribution's own dev packages.

A distribution's httpd carries backports inside mod_proxy, so a module for it is safest compiled against
its headers. Its apache2-dev / httpd-devel package (with the apr and apr-util devel packages) holds them:
users fetch the files from their distribution's mirror (`apt-get download apache2-dev libapr1-dev
libaprutil1-dev`, `yumdownloader httpd-devel apr-devel apr-util-devel`) and apachews unpacks them here
(.deb: read in Python; .rpm: rpm2cpio, then read in Python) and compiles with zig cc at that
distribution's glibc (apachews/floor.py), with apxs' flags. No compiler or dev package on the server.

The distribution comes from the packages' versions (distros.catalogue.from_package_version) or --target;
the MMN of the unpacked ap_mmn.h must be the catalogue's for it.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from apachews import floor, module
from apachews.binary import GlibcVersion
from apachews.catalogue import Version
from apachews.dist import Dist
from apachews.distros import catalogue as distros
from apachews.errors import BadInput, JobFailed
from apachews.fsutil import move_into_place, scratch_dir
from apachews.installation import read_headers
from apachews.progress import Progress
from apachews.serial import Serialised
from apachews.serverbuild import ServerBuild

# What apxs adds on Linux (config_vars.mk's CPPFLAGS / CFLAGS of both families), and -Wall to see warnings.
COMPILE_FLAGS = ("-O2", "-g", "-Wall", "-DLINUX", "-D_REENTRANT", "-D_GNU_SOURCE", "-fPIC")
APT_HINT = " or ".join(  # how each layout's dev packages are fetched (distributions.json)
    f"{facts.dev_fetch} {facts.dev_packages['2.4']}" for facts in distros.all_layout_facts() if facts.dev_packages
)


@dataclass(frozen=True)
class DevPackage(Serialised):
    path: Path
    name: str
    version: str
    _derived = ("sha256",)
    _renamed = {"path": "file"}

    @property
    def sha256(self) -> str:
        return _sha256(self.path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- unpacking ------------------------------------------------------------------------------------------------
def _ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The members of an ar archive (a .deb is one)."""
    if not data.startswith(b"!<arch>\n"):
        raise BadInput("not a .deb (no ar header)")
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        yield name, data[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)


def _tar(name: str, blob: bytes) -> tarfile.TarFile:
    if name.endswith(".zst"):
        raise BadInput(f"{name}: zstd-compressed packages are not supported", hint="unpack it with dpkg-deb -x")
    return tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")


def _extract_files(tar: tarfile.TarFile, dest: Path) -> None:
    """Regular files and directories only: headers are all a build needs, and links may point outside."""
    for member in tar:
        if member.isfile() or member.isdir():
            tar.extract(member, dest, filter="data")


def _deb(path: Path, dest: Path) -> DevPackage:
    members = dict(_ar_members(path.read_bytes()))
    control_name = next((n for n in members if n.startswith("control.tar")), None)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if control_name is None or data_name is None:
        raise BadInput(f"{path}: not a .deb (no control.tar / data.tar)")
    with _tar(control_name, members[control_name]) as control_tar:
        member = next((m for m in control_tar if m.name.lstrip("./") == "control"), None)
        handle = control_tar.extractfile(member) if member else None
        control = handle.read().decode(errors="replace") if handle else ""
    fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", control, re.M))
    with _tar(data_name, members[data_name]) as data_tar:
        _extract_files(data_tar, dest)
    return DevPackage(path, fields.get("Package", path.name), fields.get("Version", ""))


def _cpio_newc(stream: bytes, dest: Path) -> None:
    """Unpack the regular files of a cpio "newc" archive (what rpm2cpio writes)."""
    offset = 0
    while offset + 110 <= len(stream):
        header = stream[offset : offset + 110]
        if header[:6] not in (b"070701", b"070702"):
            raise BadInput("rpm2cpio wrote no newc cpio archive")
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, name_size = fields[1], fields[6], fields[11]
        name_start = offset + 110
        name = stream[name_start : name_start + name_size - 1].decode()
        data_start = (name_start + name_size + 3) & ~3
        if name == "TRAILER!!!":
            return
        relative = Path(name.lstrip("./"))
        if relative.is_absolute() or ".." in relative.parts:
            raise BadInput(f"the package holds an unsafe path: {name}")
        if mode & 0o170000 == 0o100000:
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(stream[data_start : data_start + size])
        offset = (data_start + size + 3) & ~3


def _rpm(path: Path, dest: Path) -> DevPackage:
    for tool in ("rpm2cpio", "rpm"):
        if shutil.which(tool) is None:
            raise BadInput(f"{tool} not found (it reads .rpm files)", hint="apt-get install rpm2cpio rpm")
    query = subprocess.run(
        ["rpm", "-qp", "--nosignature", "--qf", "%{NAME}\\n%{VERSION}-%{RELEASE}\\n", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    unpacked = subprocess.run(["rpm2cpio", str(path)], capture_output=True, check=False)
    if query.returncode != 0 or unpacked.returncode != 0:
        raise BadInput(f"{path} is not a readable .rpm", hint=(query.stderr or unpacked.stderr.decode())[-500:])
    _cpio_newc(unpacked.stdout, dest)
    name, version = (query.stdout.splitlines() + ["", ""])[:2]
    return DevPackage(path, name, version)


def unpack(files: Sequence[Path], dest: Path) -> list[DevPackage]:
    """Unpack each .deb / .rpm into `dest` (one root, as the packages would install together)."""
    packages = []
    for path in map(Path, files):
        if path.suffix == ".deb":
            packages.append(_deb(path, dest))
        elif path.suffix == ".rpm":
            packages.append(_rpm(path, dest))
        else:
            raise BadInput(f"{path}: give .deb or .rpm files", hint=APT_HINT)
    return packages


# -- which distribution ----------------------------------------------------------------------------------------
def detect(packages: Sequence[DevPackage], headers_version: str) -> distros.Distribution:
    """The distribution the packages come from, by their version strings; BadInput when they do not say."""
    found: set[str] = set()
    known = distros.distributions()
    for package in packages:
        found.update(distros.from_package_version(package.version, headers_version))
    if len(found) != 1 or next(iter(found)) not in known:
        said = ", ".join(f"{p.name} {p.version}" for p in packages)
        raise BadInput(
            f"cannot tell the distribution from the packages ({said})" if not found or len(found) == 1
            else f"the packages come from different distributions: {', '.join(sorted(found))}",
            hint=f"give --target DISTRO, one of: {', '.join(known)}",
        )  # fmt: skip
    return known[next(iter(found))]


def _find(root: Path, name: str, hint: str) -> Path:
    found = sorted(root.rglob(name))
    if not found:
        raise BadInput(f"no {name} in the packages given", hint=hint)
    return found[0].parent


# -- the build -------------------------------------------------------------------------------------------------
def build(
    files: Sequence[Path],
    out_dir: Path = Path("dist"),
    *,
    target: str = "",
    glibc: str = "",
    progress: Progress | None = None,
) -> ServerBuild:
    """Unpack the dev packages, compile the module against their headers with zig cc at the distribution's
    glibc (or --glibc, which may only lower it), check it, and write <out>/<target>-<version>/."""
    progress = progress or Progress()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="apachews-devpkg-") as scratch:
        root = Path(scratch) / "root"
        root.mkdir()
        progress.step(f"unpacking {len(files)} package(s)")
        packages = unpack(files, root)
        httpd_dir = _find(root, "ap_mmn.h", "give the Apache dev package: apache2-dev (or httpd-devel)")
        apr_dir = _find(root, "apr.h", "give apr's dev package too: libapr1-dev (or apr-devel)")
        apu_dir = _find(root, "apu.h", "give apr-util's dev package too: libaprutil1-dev (or apr-util-devel)")
        version, mmn = read_headers(httpd_dir)
        if version is None or mmn is None:
            raise BadInput(f"cannot read the Apache version and MMN from {httpd_dir}")
        chosen = distros.get(target) if target else detect(packages, version)
        if mmn != chosen.mmn:
            raise BadInput(
                f"the packages' headers are Apache {version} (MMN {mmn}), {chosen.name} runs MMN {chosen.mmn}: "
                "a module built against them would not load there",
                hint=f"give {chosen.name}'s own packages ({APT_HINT}), or the --target they come from",
            )
        glibc_floor = _floor(chosen, Version.parse(version).family, glibc)
        progress.step(f"zig cc -target {glibc_floor.zig_target()} against {chosen.name}'s Apache {version} headers")
        wrapper = floor.write_wrapper(Path(scratch), glibc_floor)
        so = Path(scratch) / "mod_proxy_wstunnel.so"
        includes = [f"-I{d}" for d in dict.fromkeys((httpd_dir, apr_dir, apu_dir))]
        sources = [str(path) for path in module.source_paths()]
        argv = [str(wrapper), *COMPILE_FLAGS, *includes, *floor.LINK_ARGS, *sources, "-o", str(so)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=floor.zig_env(Path(scratch)))
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise JobFailed(f"zig cc could not compile mod_proxy_wstunnel against {chosen.name}'s headers",
                            hint=output[-4000:])  # fmt: skip
        binary = floor.check(so, glibc_floor)
        warnings = [line for line in output.splitlines() if "warning:" in line]
        info = {
            "kind": "apachews",
            "builder": "dev-package",
            "target": chosen.key,
            "packages": [p.to_dict() for p in packages],
            "headers": version,
            "mmn_major": mmn,
            "compiler": f"zig {floor.zig_version()} cc -target {glibc_floor.zig_target()}",
            "flags": [*COMPILE_FLAGS, *floor.LINK_ARGS],
            "module": floor.record(binary, glibc_floor),
            "server": None,
            "seconds": round(time.monotonic() - started, 1),
            "warnings": warnings,
        }
        dist = Path(out_dir) / f"{chosen.key}-{version}"
        with scratch_dir(Path(out_dir), prefix=".apachews-devpkg-") as stage:
            staged = stage / "dist"
            (staged / "modules").mkdir(parents=True)
            shutil.copyfile(so, Dist(staged).module_path)
            (staged / "build.log").write_text(" ".join(argv) + "\n" + output)
            Dist(staged).write_info(info)
            move_into_place(staged, dist, replace=True)
    return ServerBuild(dist, Dist(dist).module_path, info)


def _floor(chosen: distros.Distribution, family: str, glibc: str) -> floor.Floor:
    """The distribution's glibc, or a lower --glibc (a higher one would not load there)."""
    if not glibc:
        return floor.Floor(chosen.glibc, family, f"{chosen.name}'s glibc", chosen)
    asked = GlibcVersion.parse(glibc)
    if asked > chosen.glibc:
        raise BadInput(f"--glibc {glibc} is above {chosen.name}'s glibc ({chosen.glibc}): it would not load there")
    return floor.Floor(asked, family, f"--glibc {glibc}", chosen)
