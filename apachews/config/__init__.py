"""`apachews config`: Apache snippets for WebSocket applications, per version, distribution and preset.

presets.py reads the presets (templates/apache/presets/); deployment.py holds a `Deployment` (the options, built
once) and `mpm_sizing`; render.py renders it in steps: resolve.py validates every value before it can reach a file
(with inputs.py: no directive injection) and checks the options together, routes.py lays out the routes,
balancers and RewriteRules, the templates in templates/apache/ carry the syntax, notes.py gathers the notes. Here:
the public API (`from apachews import config; config.render(...)`), and writing and checking a rendering.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from apachews import catalogue, distros
from apachews.config.deployment import PREFER, VHOSTS, Deployment, mpm_sizing, reproduce_command
from apachews.config.inputs import (
    DEFAULT_PUBLIC_URL,
    Allowed,
    Backend,
    Public,
    join_path,
    proxy_target,
    validate_allow,
    validate_backend,
    validate_ca_file,
    validate_path,
    validate_public_url,
)
from apachews.config.notes import VHOST_REWRITE_NOTE, capacity_notes, dead_client_note
from apachews.config.presets import (
    IDLE_HEARTBEATS,
    IDLE_MIN_SECONDS,
    PRESETS_TABLE_BEGIN,
    PRESETS_TABLE_END,
    Preset,
    get_preset,
    list_presets,
    presets_table,
)
from apachews.config.render import render, with_header
from apachews.errors import BadInput, JobFailed
from apachews.rendering import Rendering

if TYPE_CHECKING:
    from apachews.httpd import SyntaxResult

__all__ = [
    "DEFAULT_PUBLIC_URL",
    "IDLE_HEARTBEATS",
    "IDLE_MIN_SECONDS",
    "PREFER",
    "PRESETS_TABLE_BEGIN",
    "PRESETS_TABLE_END",
    "VHOSTS",
    "VHOST_REWRITE_NOTE",
    "Allowed",
    "Backend",
    "Deployment",
    "Preset",
    "Public",
    "Rendering",
    "capacity_notes",
    "check",
    "check_clean",
    "dead_client_note",
    "get_preset",
    "join_path",
    "list_presets",
    "mpm_sizing",
    "presets_table",
    "proxy_target",
    "render",
    "reproduce_command",
    "validate_allow",
    "validate_backend",
    "validate_ca_file",
    "validate_path",
    "validate_public_url",
    "with_header",
    "write",
]


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


def check(rendering: Rendering, binary: Path | None = None) -> SyntaxResult:
    """`httpd -t` of the rendering in a throwaway ServerRoot; modules a distro enables by other means
    (its enabling tool) are loaded from the Apache's own modules directory."""
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
    # Load every module first, in dependency order (proxy before its sub-modules), as a server whose
    # modules are enabled would; a .load file the distro layout ships is used as written.
    load_files = {Path(name).stem: text for name, text in rendering.files.items() if name.endswith(".load")}
    loads = [load_files.get(m) or distros.load_module_lines([m], server.modules_dir) for m in rendering.modules]
    snippets = {"00-modules.conf": "".join(loads)}
    snippets.update({Path(n).name: t for n, t in rendering.files.items() if not n.endswith(".load")})
    # A layout that wraps its files in <IfDefine>: define what its init script does, or the check would skip them.
    defines = distros.get(rendering.distro).defines
    mpm = rendering.sizing.mpm if rendering.sizing is not None else None  # the MPM a sizing file is for
    with httpd.ServerRoot(server, snippets, mpm=mpm, defines=defines) as root:
        return root.syntax_check()


def check_clean(rendering: Rendering, binary: Path | None = None) -> SyntaxResult:
    """`check`, refusing (JobFailed, with the check) a config httpd rejects, or accepts with warnings: a warning
    there (AH01146: a ProxyPass parameter dropped) is a directive that will not do what it says."""
    result = check(rendering, binary)
    if not result.ok:
        where = f"{result.file}, line {result.line}: " if result.line else ""
        raise JobFailed(f"httpd -t rejected the config: {where}{result.error}", check=result.to_dict())
    if result.warnings:
        raise JobFailed(
            "httpd -t accepted the config with warnings: " + "; ".join(result.warnings),
            hint="a warning here means a directive is ignored; report it if the rendering is apachews' own",
            check=result.to_dict(),
        )
    return result
