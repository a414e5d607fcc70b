"""`apachews build --apxs PATH`: the apachews module compiled with the server's own apxs and headers.

A distribution's httpd is not the vanilla release of the same number (RHEL's 2.2.15 and 2.4.6 carry many
backports inside mod_proxy), so a module meant for it is best compiled against its own development package
(apache2-dev, httpd-devel, apache2-prefork-dev) rather than vanilla sources. The result goes where the other
builds go: dist/apxs-<headers version>/modules/mod_proxy_wstunnel.so with a build.json beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apachews import doctor, module
from apachews.errors import BadInput
from apachews.progress import Progress


@dataclass
class ServerBuild:
    dist: Path
    module: Path
    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"dist": str(self.dist), "module": str(self.module), **self.info}

    def text(self) -> str:
        lines = [
            f"Built {self.module}",
            f"  (apachews module, apxs builder with {self.info['apxs']}, headers {self.info['headers']},"
            f" MMN {self.info['mmn_major']}, {self.info['seconds']} s; details in {self.dist / 'build.json'})",
        ]
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
) -> ServerBuild:
    """Compile with `apxs -c` against the headers apxs points at; refuse headers of another module ABI than
    the server's (it would not load)."""
    progress = progress or Progress()
    path = doctor.find_apxs(apxs)
    if path is None:
        raise BadInput(
            f"no apxs {'at ' + apxs if apxs else 'on this machine'}",
            hint="install the server's dev package (apache2-dev, httpd-devel, apache2-prefork-dev)",
        )
    server_version, server_mmn, server_note = None, None, None
    try:
        control = doctor.find_control(apachectl)
        answer = doctor.run_control(control, "-V")
        info = doctor.parse_v(answer.stdout + answer.stderr)
        server_version, server_mmn = str(info["version"]), info["mmn"]  # type: ignore[assignment]
    except BadInput:
        if apachectl:
            raise
    headers = doctor.inspect_apxs(path, server_version or "", server_mmn)  # type: ignore[arg-type]
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
    dist = Path(out_dir) / f"apxs-{headers.version}"
    progress.step(f"apxs -c against {headers.include_dir}")
    started = time.monotonic()
    built = module.build_with_apxs(dist / "modules", apxs=path)
    seconds = round(time.monotonic() - started, 1)
    warnings += built.warnings
    info_out = {
        "kind": "apachews",
        "builder": "apxs",
        "apxs": path,
        "headers": headers.version,
        "include_dir": headers.include_dir,
        "mmn_major": headers.mmn_major,
        "server": server_note,
        "seconds": seconds,
        "warnings": warnings,
    }
    staged = dist / ".build.json.tmp"
    staged.write_text(json.dumps(info_out, indent=2) + "\n")
    staged.replace(dist / "build.json")
    return ServerBuild(dist, built.so, info_out)
