"""The apachews mod_proxy_wstunnel as a standalone artifact: its C source and an `apxs -c` build.

The only copy of the source is the creation patch patches/common/0001-add-mod_proxy_wstunnel.patch.
After editing the C file in a scratch tree, refresh the patch with:

    { sed -n '1,/^--- \\/dev\\/null/p' PATCH | head -n -1; \\
      diff -u --label /dev/null --label b/modules/proxy/mod_proxy_wstunnel.c /dev/null FILE.c; } > NEW
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apachews.errors import BadInput, JobFailed
from apachews.patches import parse_patch
from apachews.resources import patches_dir

SOURCE_PATCH = "common/0001-add-mod_proxy_wstunnel.patch"
SOURCE_NAME = "mod_proxy_wstunnel.c"


def source_text() -> str:
    """The module's C source: the new file the creation patch adds."""
    patch = parse_patch(patches_dir() / SOURCE_PATCH)
    created = [f for f in patch.files if f.is_new and f.new_path.endswith(SOURCE_NAME)]
    if len(created) != 1:
        raise JobFailed(f"{SOURCE_PATCH} does not create {SOURCE_NAME}")
    lines = [line for hunk in created[0].hunks for line in hunk.new]
    return "\n".join(lines) + "\n"


@dataclass
class ApxsBuild:
    so: Path
    warnings: list[str]
    output: str


def build_with_apxs(out_dir: Path, apxs: str = "apxs", extra_cflags: Sequence[str] = ()) -> ApxsBuild:
    """Compile the module against an installed httpd's headers (apache2-dev / httpd-devel) with -Wall."""
    if shutil.which(apxs) is None:
        raise BadInput(f"{apxs} not found", hint="apt-get install apache2-dev (or yum install httpd-devel)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apachews-apxs-") as scratch:
        source = Path(scratch) / SOURCE_NAME
        source.write_text(source_text())
        flags = [f"-Wc,{flag}" for flag in ("-Wall", *extra_cflags)]
        result = subprocess.run(
            [apxs, "-c", *flags, str(source)], cwd=scratch, capture_output=True, text=True, check=False
        )
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise JobFailed("apxs could not compile mod_proxy_wstunnel", hint=output[-4000:])
        built = Path(scratch) / ".libs" / "mod_proxy_wstunnel.so"
        target = out_dir / built.name
        shutil.copy(built, target)
    warnings = [line for line in output.splitlines() if "warning:" in line]
    return ApxsBuild(target, warnings, output)
