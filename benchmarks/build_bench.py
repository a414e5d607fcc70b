"""Build timings (a benchmark, not a test): cold build, warm rebuild, module-only rebuild.

    python benchmarks/build_bench.py [--apache 2.4.69] [--with-httpd]

Cold: the object cache volume of that version is removed first. Warm: the same sources again.
Module-only: only modules/proxy/mod_proxy_wstunnel.c changed. Target: warm <= 15 s on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from apachews import build, images, sources


def timed(label: str, apache: str, tree: Path, out: Path, with_httpd: bool) -> float:
    started = time.monotonic()
    build.build(apache, source=sources.SourceOptions(source=tree), with_httpd=with_httpd, out_dir=out)
    seconds = time.monotonic() - started
    print(f"{label:<22} {seconds:7.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apache", default="2.4.69")
    parser.add_argument("--with-httpd", action="store_true")
    args = parser.parse_args()
    engine = images.client()
    images.bootstrap()
    pristine = sources.provide(args.apache, from_pypi=True).path
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / pristine.name
        shutil.copytree(pristine, tree, symlinks=True)
        out = Path(scratch) / "dist"
        for volume in engine.volumes.list():
            if volume.name.startswith("apachews-build-"):
                volume.remove(force=True)
        print(f"Apache {args.apache}, docker builder, with_httpd={args.with_httpd}")
        cold = timed("cold build", args.apache, tree, out, args.with_httpd)
        warm = timed("warm rebuild", args.apache, tree, out, args.with_httpd)
        module = tree / "modules/proxy/mod_proxy_wstunnel.c"
        module.write_text(module.read_text() + "\n/* apachews benchmark: one changed file */\n")
        module_only = timed("module-only rebuild", args.apache, tree, out, args.with_httpd)
    print(f"warm / cold:            {warm / cold:7.2f}")
    print(f"module-only / cold:     {module_only / cold:7.2f}")
    print(f"warm target (<= 15 s):  {'met' if warm <= 15 else 'NOT met'}")


if __name__ == "__main__":
    main()
