"""`apachews verify`: a real Apache in front of the bundled echo backends, driven by a real client.

One run (`run`), on the server a `ServerSetup` describes (module, style, layout, MPM, sizing, handoff, HTTP/2;
server_setup.py, built once from the options): start the backends, render the preset's config for the Apache at
hand (apachews.config), lay it out the way a user of that server does, start that Apache (`running_proxy`,
server.py), run the named checks (checks.py registers them; checks_*.py hold them by kind), stop everything.
`httpd -t` warnings are failures (check "config-clean"). The client, the backends, the route writer and the
report types are the lab's (apachews.lab), shared with torture, bench and live-verify.
"""

from __future__ import annotations

from apachews.lab.certs import make_certificate
from apachews.lab.client import BROWSER_CIPHERS, PLAIN_GET_TIMEOUT
from apachews.lab.orphans import ORPHAN_CLIENTS, ORPHAN_SLACK_SECONDS, ORPHAN_WAIT_SECONDS, Orphans, orphans
from apachews.lab.report import CRASH_MARKERS, Check, outcome, skipped
from apachews.verify.cases import (
    CASES,
    CannotRender,
    Case,
    check_module_fits,
    h2_unavailable,
    raised_open_files,
    resolve_style,
    verify_sizing,
)
from apachews.verify.checks import CHECKS, check_names, run_checks
from apachews.verify.checks_capacity import CAPACITY_MAX_WEBSOCKETS, close_all, open_many, timed_get
from apachews.verify.checks_disconnect import AFTER_RESET_HANDSHAKES, RESET_CLIENTS, RESET_LIMIT_SECONDS
from apachews.verify.checks_session import CONCURRENT_CLIENTS, expected_accept
from apachews.verify.routes import proxy_snippets, verify_routes, with_verify_routes
from apachews.verify.run import run, run_presets, setup_names, summary
from apachews.verify.server import running_proxy
from apachews.verify.server_setup import DEFAULT_SETUP, ServerSetup, validate_capacity_count
from apachews.verify.target import IDLE_BODY_TIMEOUT, VERIFY_PREFIX, Edit, Proxy, Target, VerifyReport

__all__ = [
    "AFTER_RESET_HANDSHAKES",
    "BROWSER_CIPHERS",
    "CAPACITY_MAX_WEBSOCKETS",
    "CASES",
    "CHECKS",
    "CONCURRENT_CLIENTS",
    "CRASH_MARKERS",
    "DEFAULT_SETUP",
    "IDLE_BODY_TIMEOUT",
    "ORPHAN_CLIENTS",
    "ORPHAN_SLACK_SECONDS",
    "ORPHAN_WAIT_SECONDS",
    "PLAIN_GET_TIMEOUT",
    "RESET_CLIENTS",
    "RESET_LIMIT_SECONDS",
    "VERIFY_PREFIX",
    "CannotRender",
    "Case",
    "Check",
    "Edit",
    "Orphans",
    "Proxy",
    "ServerSetup",
    "Target",
    "VerifyReport",
    "check_module_fits",
    "check_names",
    "close_all",
    "expected_accept",
    "h2_unavailable",
    "make_certificate",
    "open_many",
    "orphans",
    "outcome",
    "proxy_snippets",
    "raised_open_files",
    "resolve_style",
    "run",
    "run_checks",
    "run_presets",
    "running_proxy",
    "setup_names",
    "skipped",
    "summary",
    "timed_get",
    "validate_capacity_count",
    "verify_routes",
    "verify_sizing",
    "with_verify_routes",
]
