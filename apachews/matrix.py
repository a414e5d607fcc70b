"""`apachews matrix`: fetch -> patch check -> build -> config check -> verify, for many Apache versions.

A failing version does not stop the others. Results are cached by the build plan's cache key (apachews,
release, sources, patches or module source, builder image, builder, flags), so rerunning a matrix only
redoes what changed. Failures are never cached.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from apachews import __version__, build, config, httpd, images, patches, resources, sources, toolchain, verify
from apachews.errors import ApachewsError, BadInput, JobFailed
from apachews.fsutil import fingerprint, write_atomic
from apachews.plan import BuildPlan
from apachews.progress import Labelled, Progress
from apachews.serial import Serialised

log = logging.getLogger(__name__)

STAGES = ("fetch", "patch", "build", "config", "verify")


@dataclass
class Row(Serialised):
    version: str
    status: str = "pending"  # pending, running <stage>, ok, failed, cached
    patch: str = ""
    build_seconds: float | None = None
    checks_passed: int | None = None
    checks_total: int | None = None
    orphan_close_seconds: float | None = None
    failed_stage: str | None = None
    error: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    presets: dict[str, str] = field(default_factory=dict)  # preset -> "18/18", or the failing checks
    layout: str = ""
    mpm: str = ""  # the MPM the plan builds (a matrix may hold one release with several)
    tls: str = ""  # the TLS checks: "6/6", the failing ones, or why none ran
    tls_orphan_close_seconds: float | None = None  # abrupt-disconnect through a TLS front or backend (the worst)
    _derived = ("ok",)
    _renamed = {"stages": "stage_seconds"}

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "cached")


@dataclass
class MatrixReport(Serialised):
    rows: list[Row]
    seconds: float
    machine: str
    _derived = ("date",)
    _renamed = {"rows": "versions"}
    _rounded = {"seconds": 1}

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def date(self) -> str:
        """Today's (the report's)."""
        return time.strftime("%Y-%m-%d")


HEADERS = ("version", "mpm", "result", "patch", "build s", "verify", "tls", "orphan close s", "tls orphan close s")
# The checks that make the TLS column: mod_ssl in front, a TLS backend behind, orphans through either; and the
# named TLS cases (verify.CASES) whole.
TLS_CHECKS = ("tls-front", "tls-backend", "tls-abrupt-disconnect", "tls-backend-abrupt-disconnect")


def _headers(rows: Sequence[Row]) -> tuple[str, ...]:
    """The fixed columns, then one per preset verified (in the order of the first row that has them)."""
    presets = next((list(row.presets) for row in rows if row.presets), [])
    return (*HEADERS[:5], *presets, *HEADERS[5:]) if presets else HEADERS


def _cells(row: Row, headers: Sequence[str]) -> tuple[str, ...]:
    verify_cell = f"{row.checks_passed}/{row.checks_total}" if row.checks_total else "-"
    result = row.status if row.ok or row.status.startswith(("pending", "running")) else f"FAILED at {row.failed_stage}"
    fixed = {
        "version": row.version,
        "mpm": row.mpm or "-",
        "result": result + (" (cached)" if row.cached else ""),
        "patch": row.patch or "-",
        "build s": f"{row.build_seconds:.0f}" if row.build_seconds is not None else "-",
        "verify": verify_cell,
        "orphan close s": f"{row.orphan_close_seconds:.3f}" if row.orphan_close_seconds is not None else "-",
        "tls": row.tls or "-",
        "tls orphan close s": f"{row.tls_orphan_close_seconds:.3f}"
        if row.tls_orphan_close_seconds is not None
        else "-",
    }
    return tuple(fixed[name] if name in fixed else row.presets.get(name, "-") for name in headers)


def text_table(rows: Sequence[Row]) -> str:
    headers = _headers(rows)
    cells = [headers, *(_cells(row, headers) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip() for line in cells]
    errors = [f"{row.version}: {row.error}" for row in rows if row.error]
    return "\n".join(lines + ([""] + errors if errors else []))


def markdown_table(report: MatrixReport) -> str:
    headers = _headers(report.rows)
    lines = [
        f"apachews {__version__} matrix, {time.strftime('%Y-%m-%d')}, {report.machine}, {report.seconds:.0f} s",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines += ["| " + " | ".join(_cells(row, headers)) + " |" for row in report.rows]
    return "\n".join(lines)


def machine_description() -> str:
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _label(row: Row) -> str:
    return f"Apache {row.version}" + (f" ({row.mpm})" if row.mpm else "")


def status_lines(progress: Progress) -> Callable[[Sequence[Row]], None]:
    """An `on_change` for logs (stderr not a terminal): one progress line each time a row changes state
    (running fetch, build, verify; ok, failed, cached), where a terminal redraws the table."""
    said: dict[int, str] = {}

    def report(rows: Sequence[Row]) -> None:
        for index, row in enumerate(rows):
            state = row.status + (" (cached)" if row.cached else "")
            if said.get(index, "pending") == state:
                continue
            said[index] = state
            name = _label(row)
            detail = f": {row.error}" if row.status == "failed" and row.error else ""
            progress.step(f"{name}: {state}{detail}")

    return report


# -- one version ------------------------------------------------------------------------------------------
def _image_identity(plan: BuildPlan) -> str:
    """The plan's image for its cache key; without an engine or a base image yet, a name that never hits."""
    if plan.builder == "local":
        return "local"
    try:
        return images.builder_tag(plan.base_image)
    except BadInput:
        return f"unavailable:{plan.base_image}"


def _verify_identity(presets: Sequence[str]) -> str:
    """What a verify result also depends on besides the build: the presets and their templates."""
    templates = sorted(path for path in (resources.templates_dir() / "apache").rglob("*") if path.is_file())
    return fingerprint([list(presets), *(path.read_text() for path in templates)])


def cache_file(plan: BuildPlan, presets: Sequence[str] = ("generic",)) -> Path:
    key = f"{plan.cache_key(_image_identity(plan))}-{_verify_identity(presets)}"
    return sources.cache_dir() / "matrix" / f"{plan.version}-{key}.json"


_CACHED_FIELDS = (
    "patch",
    "build_seconds",
    "checks_passed",
    "checks_total",
    "orphan_close_seconds",
    "presets",
    "layout",
    "tls",
    "tls_orphan_close_seconds",
)


def run_version(
    plan: BuildPlan,
    row: Row,
    *,
    on_change: Callable[[], None],
    progress: Progress,
    presets: Sequence[str] = ("generic",),
) -> None:
    """Fill `row` for one version. Never raises: a failure is recorded in the row (the others go on)."""
    cache = cache_file(plan, presets)
    if cache.exists():
        cached = json.loads(cache.read_text())
        for name in _CACHED_FIELDS:
            setattr(row, name, cached.get(name, getattr(row, name)))
        row.stages = cached["stage_seconds"]
        row.status, row.cached = "ok", True
        log.info("Apache %s: cached result %s", plan.version, cache)
        on_change()
        return

    def stage(name: str) -> None:
        log.info("Apache %s: %s", plan.version, name)
        row.status = f"running {name}"
        row.failed_stage = name
        on_change()

    try:
        _stages(plan, row, stage, progress, presets)
    except ApachewsError as error:
        log.info("Apache %s failed at %s: %s", plan.version, row.failed_stage, error.message)
        row.status, row.error = "failed", error.message
        on_change()
        return
    except Exception as error:  # a bug in one version's run must not end the matrix: record it, keep the trace
        log.exception("Apache %s: unexpected error at %s", plan.version, row.failed_stage)
        row.status, row.error = "failed", f"{type(error).__name__}: {error}"
        on_change()
        return
    row.status, row.failed_stage = "ok", None
    # Keyed again now that the build made its images: the key a later run will compute.
    write_atomic(cache_file(plan, presets), json.dumps(row.to_dict(), indent=2))
    on_change()


def _stages(
    plan: BuildPlan, row: Row, stage: Callable[[str], None], progress: Progress, presets: Sequence[str]
) -> None:
    started = time.monotonic()
    stage("fetch")
    tree = plan.source.provide(plan.release, progress)
    row.stages["fetch"] = round(time.monotonic() - started, 1)

    started = time.monotonic()
    stage("patch")
    series = plan.series()
    if series is not None:
        checked = patches.check(series, tree.path)
        row.patch = checked.summary()
        if not checked.ok:
            raise JobFailed(f"patch series {series.name}: {row.patch}")
    else:
        row.patch = "backport (module replaced)" if plan.backport else "stock module"
    row.stages["patch"] = round(time.monotonic() - started, 1)

    stage("build")
    built = build.build(plan, progress=progress)
    row.build_seconds = float(built.info["seconds"])  # type: ignore[arg-type]
    row.stages["build"] = row.build_seconds

    started = time.monotonic()
    stage("config")
    server = httpd.locate(prefix=built.dist / "httpd")
    module = built.module if built.info["backport"] else None
    setup = verify.ServerSetup(module=module)
    style = verify.resolve_style(server, setup)
    rendering = config.render("generic", apache=plan.release, backends=["ws://127.0.0.1:9/"], path="/ws", prefer=style)
    extra = {"proxy_wstunnel": module} if module else None
    with httpd.ServerRoot(server, rendering.files, extra_modules=extra) as root:
        syntax = root.syntax_check()
    if not syntax.ok:
        raise JobFailed(f"httpd -t: {syntax.error} ({syntax.file}, line {syntax.line})")
    row.stages["config"] = round(time.monotonic() - started, 1)

    started = time.monotonic()
    stage("verify")
    reports = verify.run_presets(server, presets, setup=setup, progress=progress)
    row.layout = reports[0].layout
    checks = [check for report in reports for check in report.checks if not check.skipped]
    row.checks_passed = sum(check.passed for check in checks)
    row.checks_total = len(checks)
    for report in reports:
        ran = [c for c in report.checks if not c.skipped]
        failing = [c.name for c in ran if not c.passed]
        row.presets[report.preset] = f"{len(ran) - len(failing)}/{len(ran)}" + (
            f" ({', '.join(failing)})" if failing else ""
        )
        if not ran:  # a TLS case on an httpd without mod_ssl
            row.presets[report.preset] = "skipped"
    plain = [r for r in reports if r.preset not in verify.CASES]  # the TLS cases count in the TLS column
    orphans = [c.figure for r in plain for c in r.checks if c.name == "abrupt-disconnect" and c.figure is not None]
    row.orphan_close_seconds = max(orphans) if orphans else None
    row.stages["verify"] = round(time.monotonic() - started, 1)
    tls_problem = _tls_column(row, reports, built.info.get("ssl") or {})
    if not all(report.ok for report in reports):
        failed = sorted({f"{r.preset}: {c.name}" for r in reports for c in r.checks if not c.passed})
        logs = ", ".join(str(r.error_log) for r in reports if r.error_log)
        raise JobFailed(f"verify: failed checks: {'; '.join(failed)} (error logs: {logs or '-'})")
    if tls_problem:
        raise JobFailed(tls_problem)


def _tls_column(row: Row, reports: Sequence[verify.VerifyReport], ssl: dict) -> str | None:
    """Fill the row's TLS cells; return why the row is not green on TLS (None: TLS passed, or the user built
    without mod_ssl on purpose: --without-ssl). A build with no mod_ssl for any other reason is red."""
    cases = set(verify.CASES)
    ran = [
        (report.preset, check)
        for report in reports
        for check in report.checks
        if not check.skipped and (check.name in TLS_CHECKS or report.preset in cases)
    ]
    orphans = [
        check.figure
        for preset, check in ran
        if check.figure is not None
        and (check.name in ("tls-abrupt-disconnect", "tls-backend-abrupt-disconnect") or
             (preset == "gateone-wss" and check.name == "abrupt-disconnect"))
    ]  # fmt: skip
    row.tls_orphan_close_seconds = max(orphans) if orphans else None
    mode = ssl.get("mode", "")
    if not ran:
        why = {
            "off": "off (--without-ssl)",
            "missing": "no mod_ssl: no OpenSSL sources",
            "system": "no mod_ssl: the image has no libssl-dev",
        }
        row.tls = why.get(mode, "no mod_ssl")
        if mode == "static":
            return "TLS not verified: the build was given OpenSSL sources, yet its httpd has no mod_ssl"
        if mode == "missing":
            return (
                f"TLS not verified: Apache {row.version}'s mod_ssl needs OpenSSL {ssl.get('openssl') or '1.0.2'} "
                "sources (--openssl-source, --openssl-git or --openssl-tarball), or say --without-ssl"
            )
        if mode == "system":
            return (
                f"TLS not verified: the build image has no OpenSSL headers, so Apache {row.version} has no mod_ssl"
                " (apachews image bootstrap makes a base with libssl-dev; a --base-image needs libssl-dev or"
                " openssl-devel), or say --without-ssl"
            )
        if mode != "off":
            return "TLS not verified: the build has no mod_ssl (say --without-ssl if that is what you want)"
        return None
    failing = sorted({f"{preset}:{check.name}" for preset, check in ran if not check.passed})
    row.tls = f"{len(ran) - len(failing)}/{len(ran)}" + (f" ({', '.join(failing)})" if failing else "")
    return None


ALL_PRESETS = "all"


def preset_names(spec: str) -> list[str]:
    """`all` (the default: the presets are what users run, and the TLS cases) or a comma-separated list."""
    return verify.setup_names(spec)


# -- the matrix -------------------------------------------------------------------------------------------------
def every_mpm(plans: Sequence[BuildPlan]) -> list[BuildPlan]:
    """Each plan once per MPM apachews builds its release with, each MPM into <out_dir>/<mpm>/."""
    return [
        dataclasses.replace(plan, mpm=mpm, out_dir=plan.out_dir / mpm)
        for plan in plans
        for mpm in toolchain.mpms(plan.release.version)
    ]


def start_order(plans: Sequence[BuildPlan]) -> list[int]:
    """Indexes of `plans` in the order to start them: each release's first plan (MPM) before any second one.

    A release's MPMs compile the same sources, so the later ones find the first one's objects in the shared
    compiler cache; started side by side they would both compile everything.
    """
    seen: dict[str, int] = {}
    rank = []
    for index, plan in enumerate(plans):
        seen[plan.version] = seen.get(plan.version, -1) + 1
        rank.append((seen[plan.version], index))
    return [index for _, index in sorted(rank)]


def run(
    plans: Sequence[BuildPlan],
    *,
    jobs: int = 1,
    progress: Progress | None = None,
    on_change: Callable[[Sequence[Row]], None] | None = None,
    presets: Sequence[str] = ("generic",),
) -> MatrixReport:
    """Run every plan, `jobs` versions at a time, verifying `presets` on each; one row per plan, in order."""
    progress = progress or Progress()
    if not plans:
        raise BadInput("the matrix names no Apache release")
    if not 1 <= jobs <= 8:
        raise BadInput("--jobs must be between 1 and 8")
    plans = [dataclasses.replace(plan, with_httpd=True) for plan in plans]  # verify runs the built httpd
    shared = [dist for dist, count in Counter(plan.dist for plan in plans).items() if count > 1]
    if shared:  # e.g. one release with two MPMs into one output directory
        raise BadInput(f"two builds of the matrix would write {shared[0]}", hint="give each its own output directory")
    rows = [Row(plan.version, mpm=plan.mpm) for plan in plans]
    lock = threading.Lock()

    def changed() -> None:
        if on_change:
            with lock:
                on_change(rows)

    started = time.monotonic()
    # Each version builds in its own workspace (and a lock guards each), so versions can run side by side.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(
                run_version,
                plans[index],
                rows[index],
                on_change=changed,
                progress=progress if jobs == 1 else Labelled(progress, _label(rows[index])),
                presets=presets,
            )
            for index in start_order(plans)
        ]
        for future in futures:
            future.result()
    return MatrixReport(rows, time.monotonic() - started, machine_description())
