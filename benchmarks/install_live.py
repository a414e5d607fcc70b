"""From dist/ to a running server, timed (a benchmark, not a test): doctor, build --apxs, install (with the
graceful reload it waits for), live-verify, uninstall, on a throwaway copy of this machine's Debian apache2
tree started on a free 127.0.0.1 port (tests/debian_tree.py; /etc/apache2 is only read).

    python benchmarks/install_live.py [--rounds 3] [--preset gateone]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apachews import doctor, install, live, serverbuild
from tests import debian_tree


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="gateone")
    args = parser.parse_args()
    why = debian_tree.available()
    if why:
        raise SystemExit(why)
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="apachews-bench-") as scratch:
        root = Path(scratch)
        seconds, built = timed(lambda: serverbuild.build_for_server(out_dir=root / "dist"))
        figures["build --apxs"] = [seconds]
        with debian_tree.running(root / "server") as server:
            before = debian_tree.snapshot(server.conf_root)
            for round_ in range(args.rounds):
                states = root / f"state-{round_}"
                steps: list[tuple[str, Callable[[], Any]]] = [
                    ("doctor", lambda: doctor.examine(server.ctl)),
                    (
                        "install + reload",
                        lambda: install.install(
                            args.preset,
                            apachectl=server.ctl,
                            module=built.module,
                            modules_dir=server.modules_dir,
                            states=states,  # noqa: B023
                        ),
                    ),
                    ("live-verify", lambda: live.live_verify(server.ctl)),
                    ("uninstall + reload", lambda: install.uninstall(apachectl=server.ctl, states=states)),  # noqa: B023
                ]
                for name, step in steps:
                    seconds, result = timed(step)
                    figures.setdefault(name, []).append(seconds)
                    if name == "live-verify" and not result.ok:
                        raise SystemExit(result.table())
                assert debian_tree.snapshot(server.conf_root) == before, "the tree differs after uninstall"
    print(f"{args.rounds} rounds, preset {args.preset}, apxs-built module, Debian tree copy")
    print(f"{'step':<20} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, values in figures.items():
        print(f"{name:<20} {statistics.median(values):>9.2f} {min(values):>7.2f} {max(values):>7.2f}")
    print("tree after every uninstall: byte-identical to before")


if __name__ == "__main__":
    main()
