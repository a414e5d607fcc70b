"""verify's checks by name, and the loop that runs them against a target. A new check: write it in the
checks_* module of its kind (or a new one) and register it here."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence

from apachews.errors import BadInput
from apachews.lab.report import Check, outcome
from apachews.progress import Progress
from apachews.verify.checks_app import check_app_routes
from apachews.verify.checks_capacity import check_capacity
from apachews.verify.checks_disconnect import (
    check_abrupt_disconnect,
    check_tls_abrupt_disconnect,
    check_tls_backend_abrupt_disconnect,
)
from apachews.verify.checks_session import (
    CONCURRENT_CLIENTS,
    check_backend_dies,
    check_close_code,
    check_concurrent,
    check_config_clean,
    check_error_log,
    check_fragmented,
    check_handshake,
    check_idle,
    check_ping,
    check_plain_get,
    echo_check,
    refuse_check,
)
from apachews.verify.checks_tls import check_h2_websocket, check_tls_backend, check_tls_front
from apachews.verify.target import CHECK_TIMEOUTS, Target

CHECKS: dict[str, Callable[[Target], Awaitable[Check]]] = {
    "config-clean": check_config_clean,
    "handshake": check_handshake,
    "echo-text": echo_check("hello through Apache"),
    "echo-binary": echo_check(bytes(range(256)) * 4),
    "echo-empty": echo_check(b""),
    "echo-1mib": echo_check(os.urandom(2**20)),
    "fragmented": check_fragmented,
    "ping-pong": check_ping,
    "close-code": check_close_code,
    f"concurrent-{CONCURRENT_CLIENTS}": check_concurrent,
    "abrupt-disconnect": check_abrupt_disconnect,
    "refuse-200": refuse_check(200, lambda t: t.refuse_200),
    "refuse-403": refuse_check(403, lambda t: t.refuse_403),
    "backend-dies": check_backend_dies,
    "plain-get": check_plain_get,
    "idle": check_idle,
    "app-routes": check_app_routes,
    "tls-backend": check_tls_backend,
    "tls-front": check_tls_front,
    "tls-abrupt-disconnect": check_tls_abrupt_disconnect,
    "tls-backend-abrupt-disconnect": check_tls_backend_abrupt_disconnect,
    "capacity": check_capacity,
    "h2-websocket": check_h2_websocket,
    "error-log-clean": check_error_log,  # last: it reads what the others left in the log
}


async def run_checks(target: Target, names: Sequence[str], progress: Progress) -> list[Check]:
    results = []
    for name in names:
        progress.step(f"check {name}")
        try:
            result = await asyncio.wait_for(CHECKS[name](target), CHECK_TIMEOUTS.get(name, 60))
        except Exception as error:  # a check that blows up is a failed check, not a crashed run
            result = outcome(False, None, "", f"{type(error).__name__}: {error}")
        result.name = name  # the registry's key is the check's one name
        results.append(result)
    return results


def check_names(checks: Sequence[str] | None) -> list[str]:
    names = list(checks or CHECKS)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        raise BadInput(f"unknown check(s): {', '.join(unknown)}", hint="checks: " + ", ".join(CHECKS))
    return names
