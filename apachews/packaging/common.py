"""What the .deb and the .rpm share: what the module needs of a server (its ABI, measured glibc floor), the
file that loads it with what it needs, and the package built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from apachews import doctor
from apachews.binary import inspect_module
from apachews.distros import load_module_lines
from apachews.distros.placement import MODULE_FILE
from apachews.errors import BadInput
from apachews.serial import Serialised


@dataclass
class BuiltPackage(Serialised):
    """A package file built, with what it needs of the system; each format names those (and the path) its way."""

    path: Path
    package: str
    version: str
    needs: str  # the package's Depends: or Requires: line
    files: list[str]

    needs_field: ClassVar[str]  # "Depends", "Requires"
    file_prefix: ClassVar[str] = ""  # what makes a name in `files` absolute

    def commands(self) -> str:
        """How to install and remove it."""
        raise NotImplementedError

    def text(self) -> str:
        return "\n".join(
            [
                f"Built {self.path} ({self.package} {self.version}, {self.needs_field}: {self.needs})",
                *(f"  {self.file_prefix}{name}" for name in self.files),
                self.commands(),
            ]
        )


def mmn_major(apxs: str | None) -> tuple[int, str]:
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


def needs_of(module_so: Path, apxs: str | None) -> Needs:
    """The module's measured glibc floor and MMN; refuse a module whose MMN is not that of apxs' headers."""
    mmn, headers = mmn_major(apxs)
    binary = inspect_module(module_so)
    if binary.mmn_major is not None and binary.mmn_major != mmn:
        raise BadInput(
            f"{module_so} was built for MMN {binary.mmn_major}, apxs' headers are Apache {headers} (MMN {mmn})",
            hint="pass the --apxs of the Apache the module was built for",
        )
    return Needs(mmn, headers, str(binary.glibc_floor) if binary.glibc_floor else None)


def load_file(modules: Sequence[str], modules_dir: Path, package: str) -> str:
    """The file that loads the module: what it needs, each guarded, then the apachews module itself."""
    needed = load_module_lines([m for m in modules if m != "proxy_wstunnel"], modules_dir)
    ours = load_module_lines(
        ["proxy_wstunnel"], modules_dir, guarded=False, paths={"proxy_wstunnel": f"{modules_dir}/{MODULE_FILE}"}
    )
    return f"# apachews mod_proxy_wstunnel, from the {package} package\n{needed}{ours}"
