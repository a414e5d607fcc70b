"""`apachews package --rpm`: the apachews module and its loading config as an RPM for the RHEL layout (RHEL,
CentOS, Fedora): `rpm -i` installs the module and conf.modules.d/ file (and, with a preset, the proxy config in
conf.d/), reloads a running httpd; `rpm -e` removes them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from apachews import __version__, config, distros
from apachews.distros.placement import MODULE_FILE
from apachews.errors import BadInput, JobFailed
from apachews.install import module_style
from apachews.packaging.common import BuiltPackage, load_file, needs_of

RPM_NAME = "mod_proxy_wstunnel_apachews"
LAYOUT = distros.get("rhel")  # where its files go, its control command (apachectl)
assert LAYOUT.facts is not None and LAYOUT.binary is not None
CONF_ROOT = LAYOUT.facts.conf_root
RPM_MODULES = str(LAYOUT.system_modules_dirs[0])
CONTROL = LAYOUT.binary.parent / LAYOUT.control
# "00-apachews-..." sorts before RHEL's own 00-proxy.conf: our module is the proxy_wstunnel_module that loads.
RPM_LOAD_CONF = f"{CONF_ROOT}/conf.modules.d/00-apachews-proxy_wstunnel.conf"
_RPM_RELOAD = (
    'pid=/var/run/httpd/httpd.pid; if [ -s "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null; then '
    f"{CONTROL} -t >/dev/null 2>&1 && {CONTROL} graceful >/dev/null 2>&1 || :; fi"
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


class RpmPackage(BuiltPackage):
    _renamed = {"path": "rpm", "needs": "requires"}
    needs_field = "Requires"

    def commands(self) -> str:
        return f"Install: rpm -i {self.path.name} (or yum localinstall)    Remove: rpm -e {self.package}"


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
    needs = needs_of(module_so, apxs)
    mmn, headers = needs.mmn, needs.headers
    release = headers
    modules = ["proxy", "proxy_wstunnel"]
    conf: tuple[str, str] | None = None
    if preset:
        rendering = config.render(
            preset, apache=release, distro=LAYOUT.name, backends=backends, path=path, allow=allow, prefer=module_style()
        )
        modules = rendering.modules
        (name,) = [n for n in rendering.files if n.startswith("conf.d/")]
        conf = (f"{CONF_ROOT}/{name}", rendering.files[name])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apachews-rpm-") as scratch:
        top, payload = Path(scratch) / "top", Path(scratch) / "payload"
        files = {
            f"{RPM_MODULES}/{MODULE_FILE}": module_so.read_bytes(),
            RPM_LOAD_CONF: load_file(modules, Path(RPM_MODULES), RPM_NAME).encode(),
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
