"""`apachews torture`: a real Apache in front of misbehaving raw-socket backends, case by case.

Each case drives one protocol corner or abuse pattern through the proxy and returns a `CaseResult` (a lab
`Check` with a figure): a 101 without `Upgrade`, a wrong `Sec-WebSocket-Accept`, `100 Continue` before the
101, 120 headers, POST with Upgrade, a 100 MiB refusal, a refusal that never ends read slowly, a backend that
never answers, a flood in one direction, half-close, clients that vanish (FIN or RST) from a backend that
never closes on EOF, TLS records cut in TCP pieces, reset storms, frames pipelined before the 101,
slowloris, smuggling with a refused upgrade, mod_reqtimeout after the 101, a soak. The same cases run
against several targets (stock 2.4 in both styles, the apachews module, a built 2.2 httpd) and
`side_by_side` puts them in one table.

target.py starts a target, cases_*.py hold the cases by kind, cases.py registers and runs them, targets.py
names the targets and prints the table. The client and the backends are the lab's (apachews.lab). Cases are
blocking socket code with timeouts everywhere.
"""

from __future__ import annotations

from apachews.lab.client import Stream, TlsStream, open_ws, upgrade_request, ws_frame
from apachews.lab.processes import RssSampler, children_rss
from apachews.lab.raw import BACKENDS, TICK, Behaviour, RawBackend
from apachews.torture.cases import CASE_TIMEOUT, CASES, DEFAULT_CASES, run, run_cases, run_target
from apachews.torture.cases_streams import FIRST_BYTE_LIMIT, RSS_BOUND, STARVATION_LIMIT
from apachews.torture.target import (
    MIB,
    REQTIMEOUT_BODY,
    SILENT_TIMEOUT,
    CaseResult,
    Context,
    Settings,
    TargetReport,
    TargetSpec,
    running_target,
    skipped,
)
from apachews.torture.targets import (
    TARGET_KINDS,
    build_module,
    details,
    dist_target,
    module_target,
    side_by_side,
    stock_targets,
    targets,
    with_handoff,
)

__all__ = [
    "BACKENDS",
    "CASES",
    "CASE_TIMEOUT",
    "DEFAULT_CASES",
    "FIRST_BYTE_LIMIT",
    "MIB",
    "REQTIMEOUT_BODY",
    "RSS_BOUND",
    "SILENT_TIMEOUT",
    "STARVATION_LIMIT",
    "TARGET_KINDS",
    "TICK",
    "Behaviour",
    "CaseResult",
    "Context",
    "RawBackend",
    "RssSampler",
    "Settings",
    "Stream",
    "TargetReport",
    "TargetSpec",
    "TlsStream",
    "build_module",
    "children_rss",
    "details",
    "dist_target",
    "module_target",
    "open_ws",
    "run",
    "run_cases",
    "run_target",
    "running_target",
    "side_by_side",
    "skipped",
    "stock_targets",
    "targets",
    "upgrade_request",
    "with_handoff",
    "ws_frame",
]
