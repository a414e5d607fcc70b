"""The server stage over SSH, timed (a benchmark, not a test): doctor, install, verify --live and uninstall with
--host against Debian 11's own apache2 behind a real sshd (tests/ssh_target.py: a container on the host
network, listening on 127.0.0.1 only), with a module cross-compiled for glibc 2.17. Also counts the commands
each step sends over the one SSH connection.

    python benchmarks/remote_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from apachews import transport
from apachews.cli import main as cli
from tests import ssh_target

STEPS = ("doctor", "install", "verify --live", "uninstall")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = ssh_target.available() or ssh_target.portable_unavailable()
    if reason:
        sys.exit(f"remote_bench: {reason}")
    commands: collections.Counter[str] = collections.Counter()
    counted = transport.Ssh.run_bytes

    def counting(self: transport.Ssh, *a: Any, **k: Any) -> Any:
        commands["now"] += 1
        return counted(self, *a, **k)

    transport.Ssh.run_bytes = counting  # type: ignore[method-assign]
    times: dict[str, list[float]] = {step: [] for step in STEPS}
    sent: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="apachews-remote-bench-") as scratch:
        so = ssh_target.portable_module(Path(scratch) / "zig")
        with ssh_target.running(Path(scratch) / "ssh") as server:
            os.environ[transport.SSH_CONFIG_ENV] = str(server.config)
            before = server.tree_hash()
            argv = {
                "doctor": ["doctor", "--host", server.host],
                "install": ["install", "jupyter", "--host", server.host, "--module", str(so)],
                "verify --live": ["verify", "--live", "--host", server.host],
                "uninstall": ["uninstall", "--host", server.host],
            }
            for _ in range(args.rounds):
                for step in STEPS:
                    commands["now"] = 0
                    start = time.monotonic()
                    result = CliRunner().invoke(cli, argv[step])
                    times[step].append(time.monotonic() - start)
                    sent[step] = commands["now"]
                    if result.exit_code != 0:
                        sys.exit(f"{step} failed: {result.output}")
                if server.tree_hash() != before:
                    sys.exit("/etc/apache2 differs after uninstall")
    print(f"Debian 11 apache2 over SSH, {args.rounds} rounds (median, min-max); /etc/apache2 identical after each")
    print("| step | seconds | commands over SSH |\n|---|---|---|")
    for step in STEPS:
        values = times[step]
        print(f"| {step} | {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) | {sent[step]} |")


if __name__ == "__main__":
    main()
