"""`apachews diagnose`: the known WebSocket failures of a running Apache, each with its cause and its fix.

It reads what doctor reads (apachectl -V / -M / DUMP_INCLUDES: version, layout, loaded modules, config files,
error log), plus `apachectl -t`'s warnings, the routes in the config files (ProxyPass, RewriteRule [P],
BalancerMember, with file and line) and the end of the error log. Each known failure is a `Signature` below:
what it looks like (an error log line, or a route in the config), and the template in templates/apache/fixes/
its fix is rendered from, in Apache syntax, with this server's paths and routes. `probe()` tries the handshake
from the client side (loopback only) and `explain()` maps its answer (400, 403, 404, 502, 1006...) to causes.

The parts: `signatures` (the known failures), `routes` (the config's routes), `view` (what is read of the
server), `findings` (from the log, the config and apachews' rendered files), `probe` (the client side).
"""

from __future__ import annotations

from apachews.diagnose.findings import (
    Finding,
    Rendered,
    blind_spots,
    examine,
    from_config,
    from_logs,
    from_rendered,
    rendered_files,
    since_start,
)
from apachews.diagnose.probe import PROBE_TIMEOUT, Probe, explain, log_marks, loopback_url, probe
from apachews.diagnose.routes import Route, route_for, scan_routes
from apachews.diagnose.signatures import FALLBACK_SINCE, SCHEME_MODULES, SIGNATURES, UPGRADE_PARAM_SINCE, Signature
from apachews.diagnose.view import LOG_TAIL_BYTES, ServerView, log_tail, read_server

__all__ = [
    "FALLBACK_SINCE",
    "Finding",
    "LOG_TAIL_BYTES",
    "PROBE_TIMEOUT",
    "Probe",
    "Rendered",
    "Route",
    "SCHEME_MODULES",
    "SIGNATURES",
    "ServerView",
    "Signature",
    "UPGRADE_PARAM_SINCE",
    "blind_spots",
    "examine",
    "explain",
    "from_config",
    "from_logs",
    "from_rendered",
    "log_marks",
    "log_tail",
    "loopback_url",
    "probe",
    "read_server",
    "rendered_files",
    "route_for",
    "scan_routes",
    "since_start",
]
