"""`verify.run`: one preset (or named case) through a running proxy, its checks, one report; `run_presets`
for several, and the summary table."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from apachews import config, sources
from apachews.distros import trees
from apachews.httpd import Httpd
from apachews.lab.report import Check
from apachews.progress import Progress
from apachews.verify.cases import CASES, CannotRender
from apachews.verify.checks import check_names, run_checks
from apachews.verify.server import running_proxy
from apachews.verify.server_setup import DEFAULT_SETUP, ServerSetup
from apachews.verify.target import Edit, VerifyReport


def keep_log(log: Path) -> Path | None:
    """Copy a failing run's error log out of the ServerRoot, which is about to be removed."""
    if not log.exists():
        return None
    kept = sources.cache_dir() / "verify-logs" / f"error_log-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(log, kept)
    return kept


def setup_names(spec: str) -> list[str]:
    """`all` (every preset, then the named TLS cases) or a comma-separated list of presets and cases."""
    if spec == "all":
        return [preset.name for preset in config.list_presets()] + list(CASES)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    return [name if name in CASES else config.get_preset(name).name for name in names]


def run(
    httpd: Httpd,
    *,
    preset: str = "generic",
    setup: ServerSetup = DEFAULT_SETUP,
    checks: Sequence[str] | None = None,
    edit: Edit | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    progress = progress or Progress()
    case = CASES.get(preset)
    names = check_names(checks or (case.checks if case else None))
    if case is not None and not httpd.has_module("ssl"):
        report = VerifyReport(str(httpd.version), str(httpd.binary), setup.module_label, "-", preset=preset)
        report.checks = [Check("tls", True, None, "", "skipped: this Apache has no mod_ssl", skipped=True)]
        return report
    with running_proxy(httpd, preset=preset, setup=setup, edit=edit, progress=progress) as proxy:
        report = VerifyReport(
            str(httpd.version),
            str(httpd.binary),
            setup.module_label,
            proxy.tunnelling,
            preset=preset,
            layout=proxy.layout,
        )
        if proxy.sizing is not None:
            report.capacity = {**proxy.sizing.to_dict(), "server": proxy.target.server_capacity}
        report.checks = asyncio.run(run_checks(proxy.target, names, progress))
        proxy.server.stop()  # flush the error log before it is read and kept
        if not report.ok:
            report.error_log = keep_log(proxy.server.error_log)
    return report


def run_presets(
    httpd: Httpd,
    presets: Sequence[str],
    *,
    setup: ServerSetup = DEFAULT_SETUP,
    checks: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> list[VerifyReport]:
    """One report per preset, on one server setup; a preset the release cannot render is a failed report saying why."""
    check_names(checks)
    reports = []
    for preset in presets:
        try:
            reports.append(run(httpd, preset=preset, setup=setup, checks=checks, progress=progress))
        except CannotRender as error:
            report = VerifyReport(
                str(httpd.version),
                str(httpd.binary),
                setup.module_label,
                "-",
                preset=preset,
                layout=setup.layout or trees.default_layout(httpd),
            )
            report.checks = [Check("config", False, None, "", f"{error.message} ({error.hint})")]
            reports.append(report)
    return reports


def summary(reports: Sequence[VerifyReport]) -> str:
    """One line per preset: passed/total and the failing checks."""
    width = max([12, *(len(r.preset) for r in reports)])
    rows = [f"{'preset':<{width}} {'layout':<7} {'tunnelling':<13} {'result':<7} failing"]
    for r in reports:
        ran = [c for c in r.checks if not c.skipped]
        failing = ", ".join(c.name for c in ran if not c.passed) or "-"
        result = f"{sum(c.passed for c in ran)}/{len(ran)}"
        rows.append(f"{r.preset:<{width}} {r.layout:<7} {r.tunnelling:<13} {result:<7} {failing}")
    return "\n".join(rows)
