"""What a built module needs from the server that loads it, read from its ELF file (pyelftools).

A module's portability is a measured property, in the manner of auditwheel: the GLIBC symbol versions it
needs (the highest is its glibc floor), its architecture, and the module magic number (MMN) of the
headers it was compiled against, read from its `module` struct. Nothing here parses another tool's text.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerSymSection

from apachews.errors import BadInput
from apachews.serial import AsText, Serialised

MODULE_SYMBOL = "proxy_wstunnel_module"
_GLIBC_RE = re.compile(r"^GLIBC_(\d+(?:\.\d+)+)$")

# e_machine -> the name `uname -m` prints on such a server (what doctor compares with).
MACHINES = {
    "EM_X86_64": "x86_64",
    "EM_386": "i686",
    "EM_AARCH64": "aarch64",
    "EM_ARM": "armv7l",
    "EM_PPC64": "ppc64le",
    "EM_S390": "s390x",
    "EM_RISCV": "riscv64",
}
# The names `uname -m` gives for one architecture.
_SAME_MACHINE = {"i386": "i686", "i486": "i686", "i586": "i686", "amd64": "x86_64", "arm64": "aarch64"}


def machine_name(uname_m: str) -> str:
    """`uname -m` (or a dpkg / rpm architecture name) as the names of MACHINES."""
    return _SAME_MACHINE.get(uname_m, uname_m)


@functools.total_ordering
@dataclass(frozen=True)
class GlibcVersion(AsText):
    """A glibc version such as 2.12 or 2.3.2, ordered numerically."""

    parts: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> GlibcVersion:
        text = text.strip()
        if text.startswith("GLIBC_"):
            text = text[len("GLIBC_") :]
        if not re.fullmatch(r"\d+(\.\d+)+", text):
            raise BadInput(f"{text!r} is not a glibc version", hint="write it as MAJOR.MINOR, e.g. 2.17")
        return cls(tuple(int(part) for part in text.split(".")))

    def __str__(self) -> str:
        return ".".join(str(part) for part in self.parts)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, GlibcVersion):
            return NotImplemented
        return self.parts < other.parts


@dataclass(frozen=True)
class ModuleBinary(Serialised):
    """The facts of one module file that decide whether a server can load it."""

    path: Path
    machine: str  # as `uname -m` names it: x86_64, aarch64, ...
    bits: int  # 32 or 64
    glibc_symbols: dict[str, GlibcVersion] = field(default_factory=dict)  # symbol -> GLIBC version it binds to
    needed: tuple[str, ...] = ()  # DT_NEEDED libraries
    mmn_major: int | None = None  # MODULE_MAGIC_NUMBER_MAJOR of the headers it was built with
    mmn_minor: int | None = None
    _omit = ("path", "glibc_symbols", "mmn_major", "mmn_minor")
    _derived = ("glibc_floor", "floor_symbols", "glibc_versions", "mmn")
    _renamed = {"floor_symbols": "glibc_floor_symbols"}

    @property
    def glibc_floor(self) -> GlibcVersion | None:
        """The oldest glibc that can load it: the highest version any of its symbols binds to."""
        return max(self.glibc_symbols.values(), default=None)

    @property
    def floor_symbols(self) -> list[str]:
        """The symbols that bind to the floor version (what to blame when the floor is too high)."""
        floor = self.glibc_floor
        return sorted(name for name, version in self.glibc_symbols.items() if version == floor)

    @property
    def glibc_versions(self) -> list[GlibcVersion]:
        """Every GLIBC version its symbols bind to, oldest first."""
        return sorted(set(self.glibc_symbols.values()))

    @property
    def mmn(self) -> str | None:
        """The module magic number as "major:minor" (None: not found)."""
        return f"{self.mmn_major}:{self.mmn_minor}" if self.mmn_major is not None else None

    def symbols_above(self, limit: GlibcVersion) -> dict[str, GlibcVersion]:
        return {name: version for name, version in sorted(self.glibc_symbols.items()) if version > limit}


def inspect_module(path: Path | str, module_symbol: str = MODULE_SYMBOL) -> ModuleBinary:
    """Read `path` (a shared object) with pyelftools; BadInput when it is not an ELF file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            elf = ELFFile(handle)
            return ModuleBinary(
                path=path,
                machine=MACHINES.get(elf["e_machine"], str(elf["e_machine"])),
                bits=elf.elfclass,
                glibc_symbols=_glibc_symbols(elf),
                needed=_needed(elf),
                **_magic(elf, module_symbol),
            )
    except FileNotFoundError as error:
        raise BadInput(f"{path} does not exist") from error
    except (ELFError, ValueError) as error:
        raise BadInput(
            f"{path} is not an ELF shared object ({error})", hint="give the .so that a build made"
        ) from error


def _glibc_symbols(elf: ELFFile) -> dict[str, GlibcVersion]:
    """Each undefined dynamic symbol bound to a GLIBC_x.y version, from .gnu.version and .gnu.version_r."""
    versym = elf.get_section_by_name(".gnu.version")
    verneed = elf.get_section_by_name(".gnu.version_r")
    dynsym = elf.get_section_by_name(".dynsym")
    if not isinstance(versym, GNUVerSymSection) or verneed is None or dynsym is None:
        return {}
    names = {}  # version index -> GLIBC version
    for _, auxiliaries in verneed.iter_versions():
        for aux in auxiliaries:
            match = _GLIBC_RE.match(aux.name)
            if match:
                names[aux["vna_other"]] = GlibcVersion.parse(match.group(1))
    found: dict[str, GlibcVersion] = {}
    for index, symbol in enumerate(dynsym.iter_symbols()):
        if symbol["st_shndx"] != "SHN_UNDEF" or not symbol.name:
            continue
        ndx = versym.get_symbol(index).entry["ndx"]
        if isinstance(ndx, int) and (ndx & 0x7FFF) in names:
            found[symbol.name] = names[ndx & 0x7FFF]
    return found


def _needed(elf: ELFFile) -> tuple[str, ...]:
    dynamic = elf.get_section_by_name(".dynamic")
    if dynamic is None:
        return ()
    return tuple(tag.needed for tag in dynamic.iter_tags() if tag.entry.d_tag == "DT_NEEDED")


def _magic(elf: ELFFile, module_symbol: str) -> dict[str, int | None]:
    """The first two ints of the module struct: `version` (MMN major) and `minor_version` (MMN minor)."""
    for table in (".dynsym", ".symtab"):
        symbols = elf.get_section_by_name(table)
        found = symbols.get_symbol_by_name(module_symbol) if symbols is not None else None
        if not found:
            continue
        address = found[0]["st_value"]
        for section in elf.iter_sections():
            start, size = section["sh_addr"], section["sh_size"]
            if section["sh_type"] == "SHT_NOBITS" or not start <= address < start + size:
                continue
            data = section.data()[address - start : address - start + 8]
            byteorder = "little" if elf.little_endian else "big"
            return {"mmn_major": int.from_bytes(data[:4], byteorder), "mmn_minor": int.from_bytes(data[4:8], byteorder)}
    return {"mmn_major": None, "mmn_minor": None}
