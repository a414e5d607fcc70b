"""Will a module load into the server doctor read? Its architecture, glibc floor and module magic number against
the server's (`check_module`), and the build that would (`build_for`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from apachews.binary import GlibcVersion, ModuleBinary, machine_name
from apachews.distros import catalogue as distributions
from apachews.serial import Serialised
from apachews.transport import LOCAL, Transport


class ServerFacts(Protocol):
    """What a module's fit is checked against (doctor's Report has them)."""

    version: str
    glibc: str | None
    machine: str | None
    mmn: str | None


# -- will a module load here? ---------------------------------------------------------------------------------
_PLATFORM = "uname -m; getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n 1"


def platform_of(host: Transport = LOCAL) -> tuple[str | None, GlibcVersion | None]:
    """The server's architecture (as `uname -m` names it) and glibc version (None: not glibc, e.g. musl)."""
    lines = host.sh(_PLATFORM).stdout.splitlines()
    machine = machine_name(lines[0].strip()) if lines and lines[0].strip() else None
    found = re.search(r"(?:glibc|GLIBC|GNU libc)\S*\s.*?(\d+\.\d+(?:\.\d+)?)\s*$", lines[1]) if len(lines) > 1 else None
    return machine, GlibcVersion.parse(found.group(1)) if found else None


@dataclass
class ModuleVerdict(Serialised):
    """Whether a module file loads into a server: its glibc floor, architecture and MMN major against the
    server's, why not, and the build that would."""

    path: str
    loads: bool
    reasons: list[str]
    build: str | None  # the build to make instead
    binary: dict[str, object]
    _derived = ("summary",)

    @property
    def summary(self) -> str:
        facts = self.binary
        said = f"{facts['machine']}, glibc floor {facts['glibc_floor'] or 'none'}, MMN {facts['mmn'] or '?'}"
        return f"loads here ({said})" if self.loads else f"does NOT load here: {'; '.join(self.reasons)}"


def build_for(report: ServerFacts) -> str:
    """The `apachews build` that makes a module for this server: its catalogue --target when one matches its
    Apache version and glibc, else its version with --glibc."""
    if report.glibc:
        glibc = GlibcVersion.parse(report.glibc)
        for distribution in distributions.distributions().values():
            if distribution.glibc == glibc and str(distribution.apache) == report.version:
                return f"apachews build --apache {report.version} --target {distribution.key}"
        return f"apachews build --apache {report.version} --glibc {glibc}"
    return f"apachews build --apache {report.version}"


def check_module(report: ServerFacts, module: Path | ModuleBinary) -> ModuleVerdict:
    """Would Apache load `module` (an apachews mod_proxy_wstunnel.so)? Its architecture, the GLIBC versions
    its symbols need, and the module magic number it was built with, against the server doctor read."""
    from apachews.binary import inspect_module

    binary = module if isinstance(module, ModuleBinary) else inspect_module(module)
    reasons = []
    if report.machine and binary.machine != machine_name(report.machine):
        reasons.append(f"it is built for {binary.machine}, the server is {report.machine}")
    floor = binary.glibc_floor
    if report.glibc and floor is not None:
        server = GlibcVersion.parse(report.glibc)
        above = binary.symbols_above(server)
        if above:
            needs = ", ".join(f"{name} (GLIBC_{version})" for name, version in above.items())
            reasons.append(f"it needs glibc {floor}, the server has {server}: {needs}")
    elif floor is not None and report.glibc is None:
        reasons.append(f"it needs glibc {floor}, and the server's C library is not glibc (or unreadable)")
    server_major = report.mmn.split(":")[0] if report.mmn else None
    if binary.mmn_major is None:
        reasons.append(
            "it has no proxy_wstunnel_module (not an apachews mod_proxy_wstunnel), so no module magic number"
        )
    elif server_major and server_major.isdigit() and binary.mmn_major != int(server_major):
        reasons.append(
            f"it was built for module magic number {binary.mmn_major}, the server's Apache {report.version} "
            f"has {server_major}"
        )
    return ModuleVerdict(
        str(binary.path), not reasons, reasons, None if not reasons else build_for(report), binary.to_dict()
    )
