"""The apachews mod_proxy_wstunnel as a standalone artifact: its C source and an `apxs -c` build.

The C source lives in module/mod_proxy_wstunnel.c (the one copy to edit, compile and review). The series'
creation patch patches/common/0001-add-mod_proxy_wstunnel.patch is generated from it:

    python -m apachews.module        # or: make patches

and a test fails when the committed patch and the source disagree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apachews import floor
from apachews.errors import BadInput, JobFailed
from apachews.floor import Floor
from apachews.resources import data_dir, patches_dir

SOURCE_NAME = "mod_proxy_wstunnel.c"
# ProxyWebsocketFinTimeout's default in seconds (PWS_DEFAULT_FIN_TIMEOUT in the C source; a test keeps them equal):
# how long a tunnel lives on after one side's FIN or close frame. verify and torture hold the module to it.
DEFAULT_FIN_TIMEOUT = 5.0
SOURCE_PATCH = "common/0001-add-mod_proxy_wstunnel.patch"
TREE_PATH = f"modules/proxy/{SOURCE_NAME}"  # where the module goes in an httpd source tree
_PATCH_HEADER = (
    "apachews: add mod_proxy_wstunnel (WebSocket tunnelling for mod_proxy), one source for 2.2 and 2.4.\n"
    "\n"
    f"Generated from module/{SOURCE_NAME} by `python -m apachews.module`: edit the C file, not this patch.\n"
    "\n"
)


def source_path() -> Path:
    return data_dir("module") / SOURCE_NAME


def source_text() -> str:
    """The module's C source."""
    return source_path().read_text()


# The module before the fixes of issues 12 and 18 (this repository's history): tests and the torture benchmark
# build it to show that their checks catch what it got wrong.
BEFORE_FIXES = "c0d4121"
# The module before ProxyWebsocketFinTimeout: a half-closed tunnel waited for its idle limit, and a broken one
# closed its backend with a FIN (a backend that never closes on EOF kept the socket in CLOSE-WAIT).
BEFORE_FIN_TIMEOUT = "b5f554a"


def source_at(revision: str) -> str:
    """The C source as it was at `revision` of this checkout's git history."""
    checkout = Path(__file__).resolve().parent.parent
    shown = subprocess.run(
        ["git", "-C", str(checkout), "show", f"{revision}:module/{SOURCE_NAME}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0:
        raise BadInput(
            f"no module source at {revision} here: {shown.stderr.strip() or 'not a git checkout'}",
            hint="run from a git checkout of apachews with its history",
        )
    return shown.stdout


def creation_patch(text: str | None = None) -> str:
    """The patch that adds the module to an httpd tree (what patches/common/0001 must contain)."""
    lines = (source_text() if text is None else text).splitlines()
    body = "".join(f"+{line}\n" for line in lines)
    return f"{_PATCH_HEADER}--- /dev/null\n+++ b/{TREE_PATH}\n@@ -0,0 +1,{len(lines)} @@\n{body}"


def refresh_patch() -> Path:
    """Rewrite the creation patch from the C source; returns its path."""
    target = patches_dir() / SOURCE_PATCH
    staged = target.with_name(f".{target.name}.tmp")
    staged.write_text(creation_patch())
    staged.replace(target)
    return target


@dataclass
class ApxsBuild:
    so: Path
    warnings: list[str]
    output: str


def build_with_apxs(
    out_dir: Path,
    apxs: str = "apxs",
    extra_cflags: Sequence[str] = (),
    source: str | None = None,
    glibc_floor: Floor | None = None,
) -> ApxsBuild:
    """Compile the module against an installed httpd's headers (apache2-dev / httpd-devel) with -Wall.

    `glibc_floor`: compile with `apxs -S CC=zig-cc` at that floor and link the object with the same
    wrapper (apxs links through libtool, which uses the compiler it was configured with); None: apxs'
    own compiler, linked against this host's glibc.
    `source`: C text to build instead of module/mod_proxy_wstunnel.c (the tests build earlier revisions)."""
    if shutil.which(apxs) is None:
        raise BadInput(f"{apxs} not found", hint="apt-get install apache2-dev (or yum install httpd-devel)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apachews-apxs-") as scratch:
        source_file = Path(scratch) / SOURCE_NAME
        if source is None:
            shutil.copy(source_path(), source_file)
        else:
            source_file.write_text(source)
        flags = [f"-Wc,{flag}" for flag in ("-Wall", *extra_cflags)]
        compiler: list[str] = []
        env = None
        if glibc_floor is not None:
            wrapper = floor.write_wrapper(Path(scratch), glibc_floor)
            compiler, env = ["-S", f"CC={wrapper}"], floor.zig_env()
        result = subprocess.run(
            [apxs, *compiler, "-c", *flags, str(source_file)],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise JobFailed("apxs could not compile mod_proxy_wstunnel", hint=output[-4000:])
        built = Path(scratch) / ".libs" / "mod_proxy_wstunnel.so"
        if glibc_floor is not None:
            linked = floor.link(wrapper, [built.with_suffix(".o")], built)
            output += linked.stdout + linked.stderr
            if linked.returncode != 0:
                raise JobFailed("zig cc could not link mod_proxy_wstunnel", hint=output[-4000:])
        target = out_dir / built.name
        shutil.copy(built, target)
    warnings = [line for line in output.splitlines() if "warning:" in line]
    return ApxsBuild(target, warnings, output)


if __name__ == "__main__":
    print(f"wrote {refresh_patch()}", file=sys.stderr)
