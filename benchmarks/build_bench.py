"""Build timings (a benchmark, not a test): cold build, unchanged, warm rebuild, module-only rebuild.

    python benchmarks/build_bench.py [--apache 2.4.69] [--with-httpd]

Cold: the build workspace volume of that version (only that one: the engine may be shared) and the shared
compiler cache are removed first. Unchanged: the same build again, kept without starting a builder. Warm:
the same sources rebuilt anyway (--rebuild): a container, make finds nothing to do. Module-only: only
modules/proxy/mod_proxy_wstunnel.c changed. Target: warm <= 15 s on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from docker.errors import NotFound

from apachews import build, images, sources
from apachews.plan import BuildPlan


def timed(label: str, plan: BuildPlan, rebuild: bool = True) -> float:
    started = time.monotonic()
    build.build(plan, rebuild=rebuild)
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
        plan = BuildPlan(
            args.apache, source=sources.SourceOptions(source=tree), with_httpd=args.with_httpd, out_dir=out
        )
        workspace = f"apachews-build-{plan.cache_key(images.builder_tag(plan.base_image), 'workspace')}"
        for name in (workspace, build.CCACHE_VOLUME):
            try:
                engine.volumes.get(name).remove(force=True)
            except NotFound:
                pass
        print(f"Apache {args.apache}, docker builder, with_httpd={args.with_httpd}")
        cold = timed("cold build", plan)
        timed("unchanged (kept)", plan, rebuild=False)
        warm = timed("warm rebuild", plan)
        module = tree / "modules/proxy/mod_proxy_wstunnel.c"
        module.write_text(module.read_text() + "\n/* apachews benchmark: one changed file */\n")
        module_only = timed("module-only rebuild", plan)
    print(f"warm / cold:            {warm / cold:7.2f}")
    print(f"module-only / cold:     {module_only / cold:7.2f}")
    print(f"warm target (<= 15 s):  {'met' if warm <= 15 else 'NOT met'}")


if __name__ == "__main__":
    main()
