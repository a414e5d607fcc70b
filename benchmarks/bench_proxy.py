"""Proxy throughput (a benchmark, not a test): direct to the echo backend, through the system Apache
with its stock tunnelling, and through the same Apache with the apachews module.

    python benchmarks/bench_proxy.py [--connections 10] [--messages 500] [--size 1024]

The apachews module is built here with apxs (apache2-dev) unless APACHEWS_BENCH_MODULE names a .so.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from apachews import bench, httpd, module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    server = httpd.locate()
    settings = dict(connections=args.connections, messages=args.messages, size=args.size)
    print(
        f"Apache {server.version} ({server.binary}); {args.connections} connections x {args.messages} "
        f"round trips of {args.size} bytes"
    )
    with tempfile.TemporaryDirectory() as scratch:
        so = os.environ.get("APACHEWS_BENCH_MODULE") or module.build_with_apxs(Path(scratch)).so
        for label, options in (
            ("stock (default tunnelling)", {}),
            ("stock mod_proxy_wstunnel", {"prefer": "wstunnel"}),
            ("apachews mod_proxy_wstunnel", {"module": Path(so)}),
        ):
            print(f"\n== {label}")
            print(bench.table(bench.run(server, **settings, **options)))


if __name__ == "__main__":
    main()
