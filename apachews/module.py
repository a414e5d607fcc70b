"""The apachews mod_proxy_wstunnel as a standalone artifact: its C sources and an `apxs -c` build.

The C sources live in module/ (the one copy to edit, compile and review): mod_proxy_wstunnel.c (the module
record, config and hooks; its file name is the module's name, as `<IfModule mod_proxy_wstunnel.c>` sees it),
the wstunnel_*.c parts and their one header wstunnel.h. The series' creation patch
patches/common/0001-add-mod_proxy_wstunnel.patch adds every file to modules/proxy/ and is generated from them:

    python -m apachews.module        # or: make patches

and a test fails when the committed patch and the source disagree.
"""

from __future__ import annotations

import re
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

SOURCE_NAME = "mod_proxy_wstunnel.c"  # the module record: listed first, it names the .so apxs links
# The other C files, in the order they are compiled and linked (httpd's build: proxy_wstunnel_objs in
# modules/proxy/config.m4, set by the series' build glue or by install_into), and the header they share.
PART_NAMES = (
    "wstunnel_handshake.c",
    "wstunnel_handler.c",
    "wstunnel_tunnel.c",
    "wstunnel_frames.c",
    "wstunnel_loop.c",
    "wstunnel_handoff.c",
)
SOURCE_NAMES = (SOURCE_NAME, *PART_NAMES)
HEADER_NAME = "wstunnel.h"
FILE_NAMES = (HEADER_NAME, *SOURCE_NAMES)  # what goes into modules/proxy/
# httpd's libtool objects for the module, as proxy_wstunnel_objs lists them.
OBJECTS = " ".join(name.replace(".c", ".lo") for name in SOURCE_NAMES)
# ProxyWebsocketFinTimeout's default in seconds (PWS_DEFAULT_FIN_TIMEOUT in the C source; a test keeps them equal):
# how long a tunnel lives on after one side's FIN or close frame. verify and torture hold the module to it.
DEFAULT_FIN_TIMEOUT = 5.0
SOURCE_PATCH = "common/0001-add-mod_proxy_wstunnel.patch"
TREE_DIR = "modules/proxy"  # where the module goes in an httpd source tree
TREE_PATH = f"{TREE_DIR}/{SOURCE_NAME}"
_PATCH_HEADER = (
    "apachews: add mod_proxy_wstunnel (WebSocket tunnelling for mod_proxy), one source for 2.2 and 2.4.\n"
    "\n"
    "Generated from module/ by `python -m apachews.module`: edit the C files, not this patch.\n"
    "\n"
)
_OBJS_LINE = re.compile(r'^(\s*)proxy_wstunnel_objs="mod_proxy_wstunnel\.lo[^"]*"', re.MULTILINE)


def source_path() -> Path:
    """mod_proxy_wstunnel.c, the module record (the other files: source_paths())."""
    return data_dir("module") / SOURCE_NAME


def source_paths() -> list[Path]:
    """Every C file of the module, in link order (the header sits beside them)."""
    return [data_dir("module") / name for name in SOURCE_NAMES]


def source_files() -> dict[str, str]:
    """The module's files (header first, then the C files), by name."""
    return {name: (data_dir("module") / name).read_text() for name in FILE_NAMES}


def source_text() -> str:
    """All of the module's source, its files one after the other: what a digest of the module is taken of
    (and where a test finds a #define, whichever file holds it)."""
    return "".join(source_files().values())


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


def creation_patch(files: dict[str, str] | None = None) -> str:
    """The patch that adds the module's files to an httpd tree (what patches/common/0001 must contain)."""
    parts = [_PATCH_HEADER]
    for name, text in (source_files() if files is None else files).items():
        lines = text.splitlines()
        body = "".join(f"+{line}\n" for line in lines)
        parts.append(f"--- /dev/null\n+++ b/{TREE_DIR}/{name}\n@@ -0,0 +1,{len(lines)} @@\n{body}")
    return "".join(parts)


def install_into(tree: Path) -> None:
    """Put the module into an httpd source tree that has a stock mod_proxy_wstunnel (2.4.5 and later, built
    with --backport): every file into modules/proxy/, and all of their objects into proxy_wstunnel_objs of
    modules/proxy/config.m4 (the tree's build then runs buildconf, as for a patched series)."""
    proxy = Path(tree) / TREE_DIR
    for name, text in source_files().items():
        (proxy / name).write_text(text)
    config_m4 = proxy / "config.m4"
    text = config_m4.read_text()
    updated, found = _OBJS_LINE.subn(rf'\1proxy_wstunnel_objs="{OBJECTS}"', text, count=1)
    if found != 1:
        raise BadInput(f"no proxy_wstunnel_objs line in {config_m4}: cannot add the module's files to its build")
    config_m4.write_text(updated)


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
    `source`: C text to build instead of module/ (one file: the tests build revisions from before the split)."""
    if shutil.which(apxs) is None:
        raise BadInput(f"{apxs} not found", hint="apt-get install apache2-dev (or yum install httpd-devel)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apachews-apxs-") as scratch:
        if source is None:
            for name in FILE_NAMES:
                shutil.copy(data_dir("module") / name, Path(scratch) / name)
            names = list(SOURCE_NAMES)
        else:
            (Path(scratch) / SOURCE_NAME).write_text(source)
            names = [SOURCE_NAME]
        flags = [f"-Wc,{flag}" for flag in ("-Wall", *extra_cflags)]
        compiler: list[str] = []
        env = None
        if glibc_floor is not None:
            wrapper = floor.write_wrapper(Path(scratch), glibc_floor)
            compiler, env = ["-S", f"CC={wrapper}"], floor.zig_env(Path(scratch))
        result = subprocess.run(
            [apxs, *compiler, "-c", *flags, *names],
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
            objects = [built.parent / name.replace(".c", ".o") for name in names]
            linked = floor.link(wrapper, objects, built)
            output += linked.stdout + linked.stderr
            if linked.returncode != 0:
                raise JobFailed("zig cc could not link mod_proxy_wstunnel", hint=output[-4000:])
        target = out_dir / built.name
        shutil.copy(built, target)
    warnings = [line for line in output.splitlines() if "warning:" in line]
    return ApxsBuild(target, warnings, output)


if __name__ == "__main__":
    print(f"wrote {refresh_patch()}", file=sys.stderr)
