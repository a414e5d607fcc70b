"""torture's cases by name, and the loop that runs them against one target. Which issue-18 defect each case
proves: tests/test_torture.py has one test per defect. A new case: write it in the cases_* module of its kind
and register it here."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence

from apachews.catalogue import Tunnelling
from apachews.errors import BadInput
from apachews.lab.report import crash_lines, log_size
from apachews.progress import Progress
from apachews.torture.cases_handshake import (
    SMUGGLED,
    case_pipelined,
    case_post_upgrade,
    case_slowloris,
    smuggle_case,
    status_case,
    want_502,
    want_no_false_accept,
    want_real_101,
)
from apachews.torture.cases_sessions import (
    case_error_log,
    case_reqtimeout,
    case_soak,
    orphan_case,
    reset_case,
    tls_case,
)
from apachews.torture.cases_streams import (
    case_flood,
    case_half_close,
    case_never_answers,
    case_refused_big,
    case_slow_reader_forever,
)
from apachews.torture.target import CaseResult, Context, Settings, TargetReport, TargetSpec, running_target

CASE_TIMEOUT = 180.0


CASES: dict[str, Callable[[Context], CaseResult]] = {
    "no-upgrade-101": status_case("no-upgrade-101", "no-upgrade", want_502),
    "wrong-accept": status_case("wrong-accept", "wrong-accept", want_no_false_accept),
    "interim-100": status_case("interim-100", "interim", want_real_101),
    "headers-120": status_case("headers-120", "headers", want_real_101),
    "post-upgrade": case_post_upgrade,
    "refused-big": case_refused_big,
    "slow-reader-forever": case_slow_reader_forever,
    "never-answers": case_never_answers,
    "flood-starvation": case_flood,
    "half-close": case_half_close,
    "orphans-fin": orphan_case("orphans-fin", "fin"),
    "orphans-rst": orphan_case("orphans-rst", "rst"),
    "tls-12k-12-pieces": tls_case("tls-12k-12-pieces", 12 * 1024, 12, 0.001),
    "tls-3k-4-pieces": tls_case("tls-3k-4-pieces", 3 * 1024, 4, 0.2),
    # Four pieces do not always give the issue-18 module its three empty reads in a row; eight do.
    "tls-3k-8-pieces": tls_case("tls-3k-8-pieces", 3 * 1024, 8, 0.2),
    "tls-1mib-echo": tls_case("tls-1mib-echo", 2**20, 16, 0.0),
    "reset-after-101": reset_case("reset-after-101", mid_stream=False),
    "reset-mid-stream": reset_case("reset-mid-stream", mid_stream=True),
    "tls-reset-after-101": reset_case("tls-reset-after-101", mid_stream=False, tls=True),
    "tls-reset-mid-stream": reset_case("tls-reset-mid-stream", mid_stream=True, tls=True),
    "pipelined-frame": case_pipelined,
    "slowloris": case_slowloris,
    "smuggle-cl": smuggle_case("smuggle-cl", f"Content-Length: {len(SMUGGLED)}\r\n", SMUGGLED),
    "smuggle-te": smuggle_case("smuggle-te", "Transfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "smuggle-cl-te": smuggle_case(
        "smuggle-cl-te", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED
    ),
    "reqtimeout-idle": case_reqtimeout,
    "soak": case_soak,
    "error-log-clean": case_error_log,  # last: it reads what the others left in the log
}


DEFAULT_CASES = [name for name in CASES if name != "soak"]


def run_cases(ctx: Context, names: Sequence[str], progress: Progress) -> list[CaseResult]:
    results: list[CaseResult] = []
    for name in names:
        progress.step(f"{ctx.spec.label}: {name}")
        for backend in ctx.backends.values():
            backend.reset()
        log_from = log_size(ctx.error_log)
        pool = concurrent.futures.ThreadPoolExecutor(1)
        try:
            results.append(pool.submit(CASES[name], ctx).result(CASE_TIMEOUT))
        except concurrent.futures.TimeoutError:
            results.append(CaseResult(name, False, None, "", f"no result within {CASE_TIMEOUT:.0f} s"))
        except Exception as error:  # a case that blows up is a failed case, not a crashed run
            results.append(CaseResult(name, False, None, "", f"{type(error).__name__}: {error}"))
        finally:
            pool.shutdown(wait=False)
            for backend in ctx.backends.values():
                backend.stop.set()  # endless backends of this case stop pushing
        crashes = crash_lines(ctx.error_log, log_from) if name != "error-log-clean" else []
        if crashes:  # name the case during which a child died: error-log-clean alone cannot tell
            results[-1].passed = False
            results[-1].detail += f"; CRASH during this case: {crashes[0][:100]}"
    return results


def run_target(
    spec: TargetSpec,
    cases: Sequence[str] | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> TargetReport:
    progress = progress or Progress()
    names = list(cases or DEFAULT_CASES)
    unknown = [name for name in names if name not in CASES]
    if unknown:
        raise BadInput(f"unknown case(s): {', '.join(unknown)}", hint="cases: " + ", ".join(CASES))
    tunnelling = (Tunnelling.APACHEWS if spec.module else spec.style).description
    report = TargetReport(
        str(spec.httpd.version),
        str(spec.httpd.binary),
        str(spec.module) if spec.module else None,
        tunnelling,
        label=spec.label,
    )
    with running_target(spec, settings or Settings(), progress) as ctx:
        report.checks = list(run_cases(ctx, names, progress))
    return report


def run(
    specs: Sequence[TargetSpec], cases: Sequence[str] | None, settings: Settings, progress: Progress
) -> list[TargetReport]:
    return [run_target(spec, cases, settings, progress) for spec in specs]
