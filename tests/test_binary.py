"""apachews.binary reads a real module's needs from its ELF file, as objdump -T sees them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from apachews import installation
from apachews.binary import GlibcVersion, inspect_module
from apachews.errors import BadInput


def test_glibc_versions_agree_with_objdump(host_module: Path) -> None:
    if shutil.which("objdump") is None:
        pytest.skip("objdump not installed (binutils)")
    dump = subprocess.run(["objdump", "-T", str(host_module)], capture_output=True, text=True, check=True).stdout
    expected = {GlibcVersion.parse(v) for v in re.findall(r"\(GLIBC_([\d.]+)\)", dump)}
    found = inspect_module(host_module)
    assert set(found.glibc_symbols.values()) == expected
    assert found.glibc_floor == max(expected)
    assert found.floor_symbols and all(found.glibc_symbols[s] == found.glibc_floor for s in found.floor_symbols)


def test_magic_number_is_the_headers_one(host_module: Path) -> None:
    header = Path("/usr/include/apache2/ap_mmn.h").read_text()
    _, major = installation.header_values(header)
    minor = int(re.search(r"#define MODULE_MAGIC_NUMBER_MINOR (\d+)", header).group(1))
    found = inspect_module(host_module)
    assert (found.mmn_major, found.mmn_minor) == (major, minor)
    assert found.machine == subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()


def test_not_an_elf_file_is_bad_input(tmp_path: Path) -> None:
    text = tmp_path / "mod_fake.so"
    text.write_text("not a module\n")
    with pytest.raises(BadInput, match="not an ELF"):
        inspect_module(text)


def test_glibc_versions_order_numerically() -> None:
    assert GlibcVersion.parse("2.3.2") < GlibcVersion.parse("2.12") < GlibcVersion.parse("GLIBC_2.34")
    with pytest.raises(BadInput):
        GlibcVersion.parse("two")
