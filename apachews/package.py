"""`apachews package --deb`: the apachews module and its enabling config as a Debian package.

Config management can then track it like any other package: `dpkg -i` installs the module, its .load file
(and, with a preset, the proxy config), enables them (mods-enabled / conf-enabled symlinks, as a2enmod and
a2enconf make them) and reloads a running apache2;
`dpkg -r` disables and removes them, leaving /etc/apache2 and /usr/lib/apache2/modules as they were.

Design choices that keep removal exact:
- the .load file loads what the module needs (mod_proxy, ...) itself, guarded by <IfModule>, instead of a
  "# Depends:" line: those modules would have to be enabled too, and nothing would know to disable them;
- symlinks made by the maintainer scripts, not a2enmod, which leaves state markers in /var/lib/apache2;
- files under /etc are plain package files, not conffiles, so `dpkg -r` (not only --purge) removes them;
- a stock mod_proxy_wstunnel that is enabled would load first (proxy_wstunnel.load sorts before ours): the
  postinst disables it and leaves a marker, and the prerm enables it again.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apachews import __version__, config, distros, doctor
from apachews.binary import inspect_module
from apachews.distros import load_module_lines
from apachews.distros.placement import MODULE_FILE, MODULE_NAME
from apachews.errors import BadInput, JobFailed
from apachews.install import module_style

PACKAGE = "libapache2-mod-proxy-wstunnel-apachews"
DEBIAN_MODULES = distros.get("debian").system_modules_dirs[0]
MARKER = f"/var/lib/{PACKAGE}/disabled-stock-proxy_wstunnel"

_COMMON = """set -e
# Plain symlinks, as a2enmod / a2enconf make them, but without a2enmod's state markers in /var/lib/apache2:
# removal then leaves every apache2 directory exactly as it was before the install.
ENABLED=/etc/apache2/mods-enabled
# 2.4 (Debian 8+) keeps its pid in /run/apache2/, 2.2 (Debian 7, Ubuntu 12.04) in /var/run/apache2.pid.
running() {{
    for pid in /run/apache2/apache2.pid /var/run/apache2.pid; do
        [ -f "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null && return 0
    done
    return 1
}}
unlink_if() {{ if [ "$(readlink "$1" 2>/dev/null)" = "$2" ]; then rm -f "$1"; fi; }}
disable() {{
{disconf}    unlink_if $ENABLED/{module}.load ../mods-available/{module}.load
    if [ -f {marker} ]; then
        [ -e $ENABLED/proxy_wstunnel.load ] || ln -s ../mods-available/proxy_wstunnel.load $ENABLED/proxy_wstunnel.load
        rm -f {marker}
        rmdir --ignore-fail-on-non-empty "$(dirname {marker})"
    fi
}}
"""

_POSTINST = """#!/bin/sh
# {package}: enable the apachews mod_proxy_wstunnel{conf_note}, then reload apache2 if it runs.
{common}if [ "$1" = configure ]; then
    if [ -L $ENABLED/proxy_wstunnel.load ]; then
        # The stock module would load first (proxy_wstunnel.load sorts before ours) and ours would be skipped.
        mkdir -p "$(dirname {marker})" && touch {marker}
        rm -f $ENABLED/proxy_wstunnel.load
    fi
    [ -L $ENABLED/{module}.load ] || ln -s ../mods-available/{module}.load $ENABLED/{module}.load
{enconf}    if ! apache2ctl -t >/dev/null 2>&1; then
        disable
        echo "{package}: apache2ctl -t fails with the module enabled: left disabled; run apache2ctl -t" >&2
        exit 1
    fi
    if running; then apache2ctl graceful; fi
fi
exit 0
"""

_PRERM = """#!/bin/sh
# {package}: disable what the postinst enabled (no state left behind), then reload apache2 if it runs.
{common}if [ "$1" = remove ] || [ "$1" = upgrade ] || [ "$1" = deconfigure ]; then
    disable
    if running && apache2ctl -t >/dev/null 2>&1; then apache2ctl graceful; fi
fi
exit 0
"""


@dataclass
class DebPackage:
    path: Path
    package: str
    version: str
    depends: str
    files: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "deb": str(self.path),
            "package": self.package,
            "version": self.version,
            "depends": self.depends,
            "files": self.files,
        }

    def text(self) -> str:
        return "\n".join(
            [
                f"Built {self.path} ({self.package} {self.version}, Depends: {self.depends})",
                *(f"  /{name}" for name in self.files),
                f"Install: dpkg -i {self.path}    Remove: dpkg -r {self.package}",
            ]
        )


def _mmn_major(apxs: str | None) -> tuple[int, str]:
    """The module ABI (MMN major) and headers version the module was built against (from apxs' headers)."""
    path = doctor.find_apxs(apxs)
    if path is None:
        raise BadInput("no apxs to read the module ABI from", hint="apt-get install apache2-dev, or pass --apxs")
    info = doctor.inspect_apxs(path, "", None)
    if info.mmn_major is None or info.version is None:
        raise BadInput(f"cannot read the headers of {path}: {info.detail}")
    return info.mmn_major, info.version


@dataclass(frozen=True)
class Needs:
    """What the module needs of the server, as measured from the .so (apachews.binary) and apxs' headers."""

    mmn: int  # the module ABI (MMN major)
    headers: str  # the Apache version of the headers apxs points at (what a preset is rendered for)
    glibc: str | None  # the highest GLIBC_x.y version the module binds to; None: nothing versioned

    @property
    def old_rpm(self) -> bool:
        """A 2.2 module, for CentOS 5 too, whose rpm 4.4 reads neither sha256 file digests nor xz payloads."""
        return self.mmn < 20120211


def _needs(module_so: Path, apxs: str | None) -> Needs:
    """The module's measured glibc floor and MMN; refuse a module whose MMN is not that of apxs' headers."""
    mmn, headers = _mmn_major(apxs)
    binary = inspect_module(module_so)
    if binary.mmn_major is not None and binary.mmn_major != mmn:
        raise BadInput(
            f"{module_so} was built for MMN {binary.mmn_major}, apxs' headers are Apache {headers} (MMN {mmn})",
            hint="pass the --apxs of the Apache the module was built for",
        )
    return Needs(mmn, headers, str(binary.glibc_floor) if binary.glibc_floor else None)


def load_file(modules: Sequence[str], modules_dir: Path = DEBIAN_MODULES) -> str:
    """The .load file: what the module needs, each guarded, then the apachews module itself."""
    needed = load_module_lines([m for m in modules if m != "proxy_wstunnel"], modules_dir)
    ours = load_module_lines(
        ["proxy_wstunnel"], modules_dir, guarded=False, paths={"proxy_wstunnel": f"{modules_dir}/{MODULE_FILE}"}
    )
    return f"# apachews mod_proxy_wstunnel, from the {PACKAGE} package\n{needed}{ours}"


def build_deb(
    module_so: Path,
    out_dir: Path,
    *,
    preset: str | None = None,
    backends: Sequence[str] = (),
    path: str | None = None,
    allow: Sequence[str] = (),
    apxs: str | None = None,
) -> DebPackage:
    """Build the .deb with dpkg-deb. Depends on the apache2 module ABI the module was compiled for."""
    module_so = Path(module_so)
    if not module_so.is_file():
        raise BadInput(f"no module at {module_so}", hint="apachews build --apxs $(which apxs)")
    if shutil.which("dpkg-deb") is None:
        raise BadInput("dpkg-deb not found", hint="apt-get install dpkg-dev (or run on Debian/Ubuntu)")
    needs = _needs(module_so, apxs)
    mmn, headers = needs.mmn, needs.headers
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    modules = ["proxy", "proxy_wstunnel"]
    conf_name = None
    conf_text = None
    if preset:
        rendering = config.render(
            preset, apache=headers, distro="debian", backends=backends, path=path, allow=allow, prefer=module_style()
        )
        modules = rendering.modules
        # 2.4: conf-available/ (enabled by a conf-enabled link); 2.2: conf.d/, which apache2.conf includes.
        (conf_name,) = [name for name in rendering.files if name.startswith(("conf-available/", "conf.d/"))]
        conf_text = rendering.files[conf_name]
    version = f"{__version__}-1"
    # libc6's version is glibc's (2.31-13+deb11u11 for 2.31): the module's measured floor, then the ABI.
    depends = ", ".join([*([f"libc6 (>= {needs.glibc})"] if needs.glibc else []), f"apache2-api-{mmn}"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PACKAGE}_{version}_{arch}.deb"
    with tempfile.TemporaryDirectory(prefix="apachews-deb-") as scratch:
        root = Path(scratch) / "root"
        files = {
            f"usr/lib/apache2/modules/{MODULE_FILE}": module_so.read_bytes(),
            f"etc/apache2/mods-available/{MODULE_NAME}.load": load_file(modules).encode(),
        }
        if conf_name and conf_text is not None:
            files[f"etc/apache2/{conf_name}"] = conf_text.encode()
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
            (root / name).chmod(0o644)
        conf = Path(conf_name).stem if conf_name and conf_name.startswith("conf-available/") else None
        common = _COMMON.format(
            module=MODULE_NAME,
            marker=MARKER,
            disconf=f"    unlink_if /etc/apache2/conf-enabled/{conf}.conf ../conf-available/{conf}.conf\n"
            if conf
            else "",
        )
        scripts = {
            "postinst": _POSTINST.format(
                package=PACKAGE,
                module=MODULE_NAME,
                marker=MARKER,
                common=common,
                conf_note=f" and {conf}" if conf else "",
                enconf=(
                    f"    [ -L /etc/apache2/conf-enabled/{conf}.conf ] || "
                    f"ln -s ../conf-available/{conf}.conf /etc/apache2/conf-enabled/{conf}.conf\n"
                    if conf
                    else ""
                ),
            ),
            "prerm": _PRERM.format(package=PACKAGE, common=common),
        }
        control_dir = root / "DEBIAN"
        control_dir.mkdir()
        description = (
            f"WebSocket tunnelling for Apache httpd (apachews mod_proxy_wstunnel)\n"
            f" The apachews mod_proxy_wstunnel built with apxs against Apache {headers} headers"
            f" (module ABI {mmn}),\n enabled in mods-enabled{' with the ' + preset + ' preset' if preset else ''}."
        )
        (control_dir / "control").write_text(
            f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: {arch}\n"
            f"Maintainer: apachews <root@localhost>\nDepends: {depends}\nSection: httpd\nPriority: optional\n"
            f"Description: {description}\n"
        )
        for name, text in scripts.items():
            (control_dir / name).write_text(text)
            (control_dir / name).chmod(0o755)
        staged = out_dir / f".{target.name}.tmp"
        result = subprocess.run(
            # xz: what the oldest catalogued Debian and Ubuntu (7, 12.04: dpkg 1.16) read; never zstd
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(staged)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            staged.unlink(missing_ok=True)
            raise JobFailed("dpkg-deb could not build the package", hint=(result.stdout + result.stderr)[-2000:])
        staged.replace(target)
    return DebPackage(target, PACKAGE, version, depends, sorted(files))


# -- rpm (RHEL, CentOS, Fedora) -------------------------------------------------------------------------------
RPM_NAME = "mod_proxy_wstunnel_apachews"
RPM_MODULES = str(distros.get("rhel").system_modules_dirs[0])
# "00-apachews-..." sorts before RHEL's own 00-proxy.conf: our module is the proxy_wstunnel_module that loads.
RPM_LOAD_CONF = "/etc/httpd/conf.modules.d/00-apachews-proxy_wstunnel.conf"
_RPM_RELOAD = (
    'pid=/var/run/httpd/httpd.pid; if [ -s "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null; then '
    "/usr/sbin/apachectl -t >/dev/null 2>&1 && /usr/sbin/apachectl graceful >/dev/null 2>&1 || :; fi"
)
_SPEC = """Name: {name}
Version: {version}
Release: 1
Summary: WebSocket tunnelling for Apache httpd (apachews mod_proxy_wstunnel)
License: Apache-2.0
Requires: httpd-mmn = {mmn}
{glibc_requires}AutoReqProv: no

%description
The apachews mod_proxy_wstunnel built with apxs against Apache {headers} headers (module ABI {mmn}),
loaded from {load_conf}{preset_note}.

%install
mkdir -p %{{buildroot}}
cp -a {payload}/. %{{buildroot}}/

%files
%attr(0755,root,root) {modules}/{module_file}
%config(noreplace) {load_conf}
{conf_line}
%post
{reload}

%postun
if [ "$1" = 0 ]; then {reload}; fi
"""


@dataclass
class RpmPackage:
    path: Path
    package: str
    version: str
    requires: str
    files: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "rpm": str(self.path),
            "package": self.package,
            "version": self.version,
            "requires": self.requires,
            "files": self.files,
        }

    def text(self) -> str:
        return "\n".join(
            [
                f"Built {self.path} ({self.package} {self.version}, Requires: {self.requires})",
                *(f"  {name}" for name in self.files),
                f"Install: rpm -i {self.path.name} (or yum localinstall)    Remove: rpm -e {self.package}",
            ]
        )


def build_rpm(
    module_so: Path,
    out_dir: Path,
    *,
    preset: str | None = None,
    backends: Sequence[str] = (),
    path: str | None = None,
    allow: Sequence[str] = (),
    apxs: str | None = None,
) -> RpmPackage:
    """Build an .rpm with rpmbuild for the RHEL layout. The module should come from that server's own apxs
    (httpd-devel): the package carries whatever .so it is given, for the ABI apxs' headers name."""
    module_so = Path(module_so)
    if not module_so.is_file():
        raise BadInput(f"no module at {module_so}", hint="apachews build --apxs $(which apxs)")
    if shutil.which("rpmbuild") is None:
        raise BadInput("rpmbuild not found", hint="apt-get install rpm (Debian) or dnf install rpm-build")
    needs = _needs(module_so, apxs)
    mmn, headers = needs.mmn, needs.headers
    release = headers
    modules = ["proxy", "proxy_wstunnel"]
    conf: tuple[str, str] | None = None
    if preset:
        rendering = config.render(
            preset, apache=release, distro="rhel", backends=backends, path=path, allow=allow, prefer=module_style()
        )
        modules = rendering.modules
        (name,) = [n for n in rendering.files if n.startswith("conf.d/")]
        conf = (f"/etc/httpd/{name}", rendering.files[name])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apachews-rpm-") as scratch:
        top, payload = Path(scratch) / "top", Path(scratch) / "payload"
        files = {
            f"{RPM_MODULES}/{MODULE_FILE}": module_so.read_bytes(),
            RPM_LOAD_CONF: load_file(modules, Path(RPM_MODULES)).replace(PACKAGE, RPM_NAME).encode(),
        }
        if conf:
            files[conf[0]] = conf[1].encode()
        for name, data in files.items():
            (payload / name.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (payload / name.lstrip("/")).write_bytes(data)
        spec = Path(scratch) / f"{RPM_NAME}.spec"
        spec.write_text(
            _SPEC.format(
                name=RPM_NAME,
                version=__version__,
                mmn=mmn,
                headers=headers,
                load_conf=RPM_LOAD_CONF,
                preset_note=f" with the {preset} preset in {conf[0]}" if conf else "",
                payload=payload,
                modules=RPM_MODULES,
                module_file=MODULE_FILE,
                conf_line=f"%config(noreplace) {conf[0]}\n" if conf else "",
                glibc_requires=f"Requires: glibc >= {needs.glibc}\n" if needs.glibc else "",
                reload=_RPM_RELOAD,
            )
        )
        result = subprocess.run(
            [
                "rpmbuild",
                "-bb",
                "--define",
                f"_topdir {top}",
                "--define",
                "debug_package %{nil}",
                # no strip or other post-processing: the module ships byte for byte as built, as in the .deb
                "--define",
                "__os_install_post %{nil}",
                # a payload every catalogued RHEL's rpm reads (CentOS 5's 4.4 has no xz, none has zstd)
                "--define",
                "_binary_payload w9.gzdio",
                # CentOS 5's rpm predates sha256 file digests (rpmlib(FileDigests)): md5 for a 2.2 module
                *(["--define", "_binary_filedigest_algorithm 1"] if needs.old_rpm else []),
                str(spec),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=False,
        )
        built = sorted((top / "RPMS").glob("*/*.rpm")) if result.returncode == 0 else []
        if not built:
            raise JobFailed("rpmbuild could not build the package", hint=(result.stdout + result.stderr)[-2000:])
        target = out_dir / built[0].name
        staged = out_dir / f".{target.name}.tmp"
        shutil.copyfile(built[0], staged)
        staged.replace(target)
    requires = ", ".join([f"httpd-mmn = {mmn}", *([f"glibc >= {needs.glibc}"] if needs.glibc else [])])
    return RpmPackage(target, RPM_NAME, f"{__version__}-1", requires, sorted(files))
