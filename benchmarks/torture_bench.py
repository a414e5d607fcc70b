"""The issue-18 torture cases side by side (a benchmark, not a test): stock Apache in both tunnelling
styles against the apachews module, with the figures (RSS growth, flood latency, soak throughput).

    python benchmarks/torture_bench.py [--heavy] [--issue18] [--dist DIR] [--case NAME ...] [--json FILE]

--heavy uses the issue's numbers (100 MiB refusal, 1000 resets, 200 clients x 60 s soak, 10 s flood);
--issue18 adds the module as issue 18 found it (built from git), --dist a dir made by
`apachews build --with-httpd` (e.g. 2.2.31). The apachews module is built here with apxs (apache2-dev)
unless APACHEWS_BENCH_MODULE names a .so.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from apachews import httpd, module, torture
from apachews.progress import Progress

ISSUE18_COMMIT = module.BEFORE_FIXES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heavy", action="store_true")
    parser.add_argument("--issue18", action="store_true", help=f"add the module at {ISSUE18_COMMIT}")
    parser.add_argument("--dist", action="append", default=[], help="DIR or LABEL=DIR (repeatable)")
    parser.add_argument("--case", action="append", default=[])
    parser.add_argument("--targets", default="stock-http,stock-ws,apachews")
    parser.add_argument("--json", type=Path, help="also write every result here")
    args = parser.parse_args()
    server = httpd.locate()
    settings = torture.Settings.heavy() if args.heavy else torture.Settings()
    # The soak first: its RSS baseline is then a fresh server's, not what the endless refusal left behind.
    cases = args.case or ["soak", *torture.DEFAULT_CASES]
    print(f"Apache {server.version} ({server.binary}); {os.cpu_count()} CPUs; settings {vars(settings)}")
    with tempfile.TemporaryDirectory() as scratch:
        so = os.environ.get("APACHEWS_BENCH_MODULE") or torture.build_module(Path(scratch))
        specs = torture.targets(server, args.targets.split(","), Path(so))
        if args.issue18:
            old = torture.build_module(Path(scratch), module.source_at(ISSUE18_COMMIT))
            specs.append(torture.module_target(server, old, f"apachews {server.version} @{ISSUE18_COMMIT}"))
        for dist in args.dist:
            label, _, path = dist.rpartition("=")
            specs.append(torture.dist_target(Path(path), label or None))
        reports = []
        for spec in specs:
            started = time.monotonic()
            reports.append(torture.run_target(spec, cases, settings, Progress()))
            print(f"{spec.label}: {time.monotonic() - started:.0f} s", flush=True)
    print()
    print(torture.side_by_side(reports))
    print()
    print(torture.details(reports))
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in reports], indent=2, default=str))


if __name__ == "__main__":
    main()
