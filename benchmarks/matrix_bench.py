"""Matrix wall times (a benchmark, not a test): the same matrix cold, then warm.

    python benchmarks/matrix_bench.py --git /path/to/httpd.git [--apache 2.2.3,2.2.31,2.4.4] [--mpms default|all]
        [--preset generic] [--jobs 1] [--ccache-pass]

The full run asked for by issue 14 (33 releases, every MPM apachews builds them with, every preset):

    python benchmarks/matrix_bench.py --git /path/to/httpd.git --apache all-2.2,2.4.1-2.4.4 --mpms all \\
        --preset all --jobs 4 --markdown

which is what `make bench` runs last when APACHEWS_HTTPD_GIT names the clone (MATRIX_ARGS to change it).

Cold: this matrix's build workspaces (only theirs: the engine may be shared), its cached rows and the shared
compiler cache volume are removed first. Warm: the same matrix again, nothing changed, so every row comes
from the result cache. --ccache-pass adds a third run with the workspaces and rows dropped again but the
compiler cache kept: what sharing compiled objects between releases buys (only when the builder image has
ccache). The tables and one line of wall times per pass are printed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from docker.errors import DockerException, NotFound

from apachews import build, catalogue, images, matrix, sources
from apachews.plan import BuildPlan


def plans_for(spec: str, mpms: str, git: Path, out: Path) -> list[BuildPlan]:
    source = sources.SourceOptions(git=git)
    plans = [
        BuildPlan(release, source=source, with_httpd=True, out_dir=out) for release in catalogue.load().expand(spec)
    ]
    return matrix.every_mpm(plans) if mpms == "all" else plans


def drop(plans: list[BuildPlan], presets: list[str], *, workspaces: bool, ccache: bool) -> None:
    """Forget this matrix's cached rows, and its build workspaces and/or the compiler cache."""
    engine = images.client()
    names = [f"apachews-build-{plan.cache_key(images.builder_tag(plan.base_image), 'workspace')}" for plan in plans]
    names = (names if workspaces else []) + ([build.CCACHE_VOLUME] if ccache else [])
    for name in names:
        try:
            engine.volumes.get(name).remove(force=True)
        except NotFound:
            pass
        except DockerException as error:  # in use by someone else's build: say so, go on
            print(f"could not remove volume {name}: {error}")
    for plan in plans:
        matrix.cache_file(plan, presets).unlink(missing_ok=True)


def timed(label: str, plans: list[BuildPlan], presets: list[str], jobs: int, markdown: bool) -> float:
    started = time.monotonic()
    done: set[int] = set()

    def finished_rows(rows: Sequence[matrix.Row]) -> None:
        # A line per finished row: the full matrix runs for hours.
        for index, row in enumerate(rows):
            if index not in done and row.status in ("ok", "failed"):
                done.add(index)
                outcome = "cached" if row.cached else row.status
                elapsed = time.monotonic() - started
                print(f"  [{elapsed:6.0f} s] {len(done)}/{len(rows)} {row.version} {row.mpm}: {outcome}", flush=True)

    report = matrix.run(plans, jobs=jobs, presets=presets, on_change=finished_rows)
    seconds = time.monotonic() - started
    print(matrix.markdown_table(report) if markdown else matrix.text_table(report.rows))
    passed = sum(row.ok for row in report.rows)
    print(f"{label}: {seconds:.0f} s wall, {passed}/{len(report.rows)} rows ok\n", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--git", type=Path, required=True, help="an apache/httpd clone (or bare git dir)")
    parser.add_argument("--apache", default="2.2.3,2.2.31,2.4.4")
    parser.add_argument("--mpms", choices=("default", "all"), default="default")
    parser.add_argument("--preset", default="generic", help="all, or a comma-separated list")
    parser.add_argument("--jobs", type=int, default=1, help="versions at a time (each make runs -j2)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/apachews-matrix-bench"))
    parser.add_argument("--ccache-pass", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    images.bootstrap()
    presets = matrix.preset_names(args.preset)
    plans = plans_for(args.apache, args.mpms, args.git, args.out)
    print(f"{len(plans)} builds ({args.apache}, MPMs: {args.mpms}), presets {','.join(presets)}, jobs {args.jobs}")
    print(matrix.machine_description() + "\n")
    drop(plans, presets, workspaces=True, ccache=True)
    figures = {"cold": timed("cold", plans, presets, args.jobs, args.markdown)}
    figures["warm"] = timed("warm", plans, presets, args.jobs, args.markdown)
    if args.ccache_pass:
        drop(plans, presets, workspaces=True, ccache=False)
        figures["cold, ccache kept"] = timed("cold, ccache kept", plans, presets, args.jobs, args.markdown)
    print("  ".join(f"{label}: {seconds:.0f} s" for label, seconds in figures.items()))


if __name__ == "__main__":
    main()
