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
from pathlib import Path

from apachews import __version__, config, distros
from apachews.distros.placement import MODULE_FILE, MODULE_NAME
from apachews.errors import BadInput, JobFailed
from apachews.install import module_style
from apachews.packaging.common import BuiltPackage, needs_of
from apachews.packaging.common import load_file as _load_file

LAYOUT = distros.get("debian")  # where its files go, its control command (apache2ctl)
assert LAYOUT.facts is not None
CONF_ROOT = LAYOUT.facts.conf_root
MODULES_DIR = LAYOUT.system_modules_dirs[0]
PACKAGE = "libapache2-mod-proxy-wstunnel-apachews"
MARKER = f"/var/lib/{PACKAGE}/disabled-stock-proxy_wstunnel"

_COMMON = """set -e
# Plain symlinks, as a2enmod / a2enconf make them, but without a2enmod's state markers in /var/lib/apache2:
# removal then leaves every apache2 directory exactly as it was before the install.
ENABLED={conf_root}/mods-enabled
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
{enconf}    if ! {control} -t >/dev/null 2>&1; then
        disable
        echo "{package}: {control} -t fails with the module enabled: left disabled; run {control} -t" >&2
        exit 1
    fi
    if running; then {control} graceful; fi
fi
exit 0
"""

_PRERM = """#!/bin/sh
# {package}: disable what the postinst enabled (no state left behind), then reload apache2 if it runs.
{common}if [ "$1" = remove ] || [ "$1" = upgrade ] || [ "$1" = deconfigure ]; then
    disable
    if running && {control} -t >/dev/null 2>&1; then {control} graceful; fi
fi
exit 0
"""


class DebPackage(BuiltPackage):
    _renamed = {"path": "deb", "needs": "depends"}
    needs_field = "Depends"
    file_prefix = "/"  # dpkg-deb's file names are relative to the root

    def commands(self) -> str:
        return f"Install: dpkg -i {self.path}    Remove: dpkg -r {self.package}"


def load_file(modules: Sequence[str], modules_dir: Path = MODULES_DIR) -> str:
    """The .load file: what the module needs, each guarded, then the apachews module itself."""
    return _load_file(modules, modules_dir, PACKAGE)


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
    needs = needs_of(module_so, apxs)
    mmn, headers = needs.mmn, needs.headers
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    modules = ["proxy", "proxy_wstunnel"]
    conf_name = None
    conf_text = None
    if preset:
        rendering = config.render(
            preset, apache=headers, distro=LAYOUT.name, backends=backends, path=path, allow=allow, prefer=module_style()
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
            f"{MODULES_DIR.relative_to('/')}/{MODULE_FILE}": module_so.read_bytes(),
            f"{CONF_ROOT.relative_to('/')}/mods-available/{MODULE_NAME}.load": load_file(modules).encode(),
        }
        if conf_name and conf_text is not None:
            files[f"{CONF_ROOT.relative_to('/')}/{conf_name}"] = conf_text.encode()
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
            (root / name).chmod(0o644)
        conf = Path(conf_name).stem if conf_name and conf_name.startswith("conf-available/") else None
        common = _COMMON.format(
            conf_root=CONF_ROOT,
            control=LAYOUT.control,
            module=MODULE_NAME,
            marker=MARKER,
            disconf=f"    unlink_if {CONF_ROOT}/conf-enabled/{conf}.conf ../conf-available/{conf}.conf\n"
            if conf
            else "",
        )
        scripts = {
            "postinst": _POSTINST.format(
                package=PACKAGE,
                control=LAYOUT.control,
                module=MODULE_NAME,
                marker=MARKER,
                common=common,
                conf_note=f" and {conf}" if conf else "",
                enconf=(
                    f"    [ -L {CONF_ROOT}/conf-enabled/{conf}.conf ] || "
                    f"ln -s ../conf-available/{conf}.conf {CONF_ROOT}/conf-enabled/{conf}.conf\n"
                    if conf
                    else ""
                ),
            ),
            "prerm": _PRERM.format(package=PACKAGE, control=LAYOUT.control, common=common),
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
