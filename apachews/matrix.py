"""`apachews matrix`: fetch -> patch check -> build -> config check -> verify, for many Apache versions.

A failing version does not stop the others. Results are cached by (version, source, patch hashes, base
image, apachews version), so rerunning a matrix only redoes what changed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from apachews import __version__, build, catalogue, config, httpd, images, module, patches, sources, verify
from apachews.catalogue import Release
from apachews.errors import ApachewsError, BadInput
from apachews.progress import Progress

STAGES = ("fetch", "patch", "build", "config", "verify")


@dataclass
class Row:
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

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "cached")

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "ok": self.ok,
            "status": self.status,
            "patch": self.patch,
            "build_seconds": self.build_seconds,
            "checks_passed": self.checks_passed,
            "checks_total": self.checks_total,
            "orphan_close_seconds": self.orphan_close_seconds,
            "failed_stage": self.failed_stage,
            "error": self.error,
            "stage_seconds": self.stages,
            "cached": self.cached,
        }


@dataclass
class MatrixReport:
    rows: list[Row]
    seconds: float
    machine: str

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    def to_dict(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "date": time.strftime("%Y-%m-%d"),
            "seconds": round(self.seconds, 1),
            "versions": [row.to_dict() for row in self.rows],
        }


HEADERS = ("version", "result", "patch", "build s", "verify", "orphan close s")


def _cells(row: Row) -> tuple[str, ...]:
    verify_cell = f"{row.checks_passed}/{row.checks_total}" if row.checks_total else "-"
    result = row.status if row.ok or row.status.startswith(("pending", "running")) else f"FAILED at {row.failed_stage}"
    return (
        row.version,
        result + (" (cached)" if row.cached else ""),
        row.patch or "-",
        f"{row.build_seconds:.0f}" if row.build_seconds is not None else "-",
        verify_cell,
        f"{row.orphan_close_seconds:.3f}" if row.orphan_close_seconds is not None else "-",
    )


def text_table(rows: Sequence[Row]) -> str:
    cells = [HEADERS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip() for line in cells]
    errors = [f"{row.version}: {row.error}" for row in rows if row.error]
    return "\n".join(lines + ([""] + errors if errors else []))


def markdown_table(report: MatrixReport) -> str:
    lines = [
        f"apachews {__version__} matrix, {time.strftime('%Y-%m-%d')}, {report.machine}",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in report.rows]
    return "\n".join(lines)


def machine_description() -> str:
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


# -- one version ------------------------------------------------------------------------------------------
def _patch_hashes(release: Release, backport: bool) -> list[str]:
    if release.needs_backport and release.series:
        return [sources.sha256_file(Path(p)) for p in patches.load_series(release.series).patch_files]
    if backport:
        return [hashlib.sha256(module.source_text().encode()).hexdigest()]
    return []


def _cache_file(release: Release, options: sources.SourceOptions, base_image: str, backport: bool) -> Path:
    try:
        image_id = images.client().images.get(base_image).id
    except Exception:  # no engine or no image yet: the key still must be stable and honest
        image_id = base_image
    key = json.dumps(
        [__version__, str(release.version), repr(options), _patch_hashes(release, backport), image_id, backport]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return sources.cache_dir() / "matrix" / f"{release.version}-{digest}.json"


def run_version(
    release: Release,
    row: Row,
    *,
    options: sources.SourceOptions,
    base_image: str,
    backport: bool,
    out_dir: Path,
    builder: str,
    on_change: Callable[[], None],
    progress: Progress,
) -> None:
    version = str(release.version)
    cache = _cache_file(release, options, base_image, backport)
    if cache.exists():
        cached = json.loads(cache.read_text())
        for name in ("patch", "build_seconds", "checks_passed", "checks_total", "orphan_close_seconds", "stages"):
            setattr(row, name, cached[name if name != "stages" else "stage_seconds"])
        row.status, row.cached = "ok", True
        on_change()
        return

    def stage(name: str) -> None:
        row.status = f"running {name}"
        row.failed_stage = name
        on_change()

    try:
        started = time.monotonic()
        stage("fetch")
        tree = options.provide(version, progress)
        row.stages["fetch"] = round(time.monotonic() - started, 1)

        started = time.monotonic()
        stage("patch")
        if release.needs_backport:
            if release.series is None:
                raise BadInput(f"no apachews patch series serves Apache {version}")
            checked = patches.check(patches.load_series(release.series), tree.path)
            row.patch = checked.summary()
            if not checked.ok:
                raise ApachewsError(f"patch series {release.series}: {row.patch}")
        else:
            row.patch = "backport (module replaced)" if backport else "stock module"
        row.stages["patch"] = round(time.monotonic() - started, 1)

        stage("build")
        built = build.build(
            version,
            source=options,
            base_image=base_image,
            backport=backport,
            with_httpd=True,
            builder=builder,
            out_dir=out_dir,
            progress=progress,
        )
        row.build_seconds = float(built.info["seconds"])  # type: ignore[arg-type]
        row.stages["build"] = row.build_seconds

        started = time.monotonic()
        stage("config")
        server = httpd.locate(prefix=built.dist / "httpd")
        module = built.module if built.info["backport"] else None
        prefer = "wstunnel" if module else None
        rendering = config.render(
            "generic", apache=version, distro="generic", backends=["ws://127.0.0.1:9/"], path="/ws", prefer=prefer
        )
        extra = {"proxy_wstunnel": module} if module else None
        with httpd.ServerRoot(server, rendering.files, extra_modules=extra) as root:
            syntax = root.syntax_check()
        if not syntax.ok:
            raise ApachewsError(f"httpd -t: {syntax.error} ({syntax.file}, line {syntax.line})")
        row.stages["config"] = round(time.monotonic() - started, 1)

        started = time.monotonic()
        stage("verify")
        report = verify.run(server, module=module, progress=progress)
        row.checks_passed = sum(check.passed for check in report.checks)
        row.checks_total = len(report.checks)
        orphan = next((c for c in report.checks if c.name == "abrupt-disconnect"), None)
        row.orphan_close_seconds = orphan.figure if orphan else None
        row.stages["verify"] = round(time.monotonic() - started, 1)
        if not report.ok:
            failed = ", ".join(check.name for check in report.checks if not check.passed)
            raise ApachewsError(f"verify: failed checks: {failed} (error log {report.error_log})")
    except ApachewsError as error:
        row.status, row.error = "failed", error.message
        on_change()
        return
    except Exception as error:  # one broken version must not end the matrix
        row.status, row.error = "failed", f"{type(error).__name__}: {error}"
        on_change()
        return
    row.status, row.failed_stage = "ok", None
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(row.to_dict(), indent=2))
    on_change()


# -- the matrix -------------------------------------------------------------------------------------------------
def run(
    spec: str,
    *,
    options: sources.SourceOptions | None = None,
    base_image: str | None = None,
    backport: bool = False,
    out_dir: Path = Path("dist"),
    builder: str = "docker",
    jobs: int = 1,
    progress: Progress | None = None,
    on_change: Callable[[Sequence[Row]], None] | None = None,
) -> MatrixReport:
    progress = progress or Progress()
    releases = catalogue.load().expand(spec)
    if not 1 <= jobs <= 8:
        raise BadInput("--jobs must be between 1 and 8")
    options = options or sources.SourceOptions()
    base_image = base_image or build.DEFAULT_BASE_IMAGE
    rows = [Row(str(release.version)) for release in releases]
    lock = threading.Lock()

    def changed() -> None:
        if on_change:
            with lock:
                on_change(rows)

    started = time.monotonic()
    # Each version builds in its own cache volume, so versions can run side by side.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(
                run_version,
                release,
                row,
                options=options,
                base_image=base_image,
                backport=backport,
                out_dir=out_dir,
                builder=builder,
                on_change=changed,
                progress=progress if jobs == 1 else Progress(),
            )
            for release, row in zip(releases, rows)
        ]
        for future in futures:
            future.result()
    return MatrixReport(rows, time.monotonic() - started, machine_description())
