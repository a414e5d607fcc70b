"""What finding the VirtualHosts costs `apachews install` (a benchmark, not a test): `vhosts.read` (apachectl -S,
the vhosts' files, their real paths) on a copy of this machine's Debian apache2 tree with six vhosts
(tests/test_vhosts.py's sites), and over SSH against Debian 11's apache2 (tests/ssh_target.py) when Docker
and its image are there; with the commands it sends over the one SSH connection.

    python benchmarks/vhosts_bench.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apachews import transport, vhosts
from tests import debian_tree, ssh_target
from tests.test_vhosts import make_sites


def _timed(rounds: int, read: Callable[[], list[vhosts.VHost]]) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        count = len(read())
        times.append(time.perf_counter() - start)
    return statistics.median(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="apachews-vhosts-bench-") as scratch:
        if debian_tree.available() is None:
            sites = make_sites(Path(scratch) / "server")
            median, count = _timed(args.rounds, lambda: vhosts.read(sites.ctl))
            print(f"here:        {count} vhosts in {median * 1000:.0f} ms (median of {args.rounds})")
        reason = ssh_target.available()
        if reason:
            print(f"over SSH:    skipped ({reason})")
            return
        with ssh_target.running(Path(scratch) / "ssh") as server:
            sent = {"n": 0}
            counted = transport.Ssh.run_bytes

            def counting(self: transport.Ssh, *a: Any, **k: Any) -> Any:
                sent["n"] += 1
                return counted(self, *a, **k)

            transport.Ssh.run_bytes = counting  # type: ignore[method-assign]
            with transport.connect(server.host, ssh_config=server.config) as host:
                vhosts.read("/usr/sbin/apache2ctl", host)  # the ControlMaster connection is made once
                sent["n"] = 0
                median, count = _timed(args.rounds, lambda: vhosts.read("/usr/sbin/apache2ctl", host))
            print(
                f"over SSH:    {count} vhost in {median * 1000:.0f} ms (median of {args.rounds}), "
                f"{sent['n'] // args.rounds} commands each"
            )


if __name__ == "__main__":
    main()
