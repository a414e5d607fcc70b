"""What diagnose reads of a running server (`ServerView`): doctor's report, `apachectl -t`, the routes, the
LogLevel, and which error logs to read (their ends)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apachews import doctor
from apachews.catalogue import Version
from apachews.diagnose.routes import Route, scan_routes
from apachews.installation import Installation

LOG_TAIL_BYTES = 4 * 2**20  # the end of each error log is read, not all of it


# -- what diagnose reads -------------------------------------------------------------------------------------
@dataclass
class ServerView:
    control: str
    version: str
    distro: str
    modules_dir: str | None
    loaded: dict[str, str]
    config_files: list[str]
    error_logs: list[str]
    routes: list[Route]
    syntax: str  # what `apachectl -t` said
    timeout: dict[str, str]
    reqtimeout: list[str]
    log_level: str

    @property
    def release(self) -> Version:
        return Version.parse(self.version)

    def has(self, module: str) -> bool:
        return f"{module}_module" in self.loaded


def read_server(
    apachectl: str | Path | None = None, config_file: str | Path | None = None, logs: Sequence[Path] = ()
) -> ServerView:
    """doctor's view of the server, its routes, `apachectl -t`, and which error logs to read."""
    report = doctor.examine(apachectl, config_file=config_file)
    syntax = Installation.on(report.control).syntax()
    level = doctor.scan_directives(report.config_files, ["LogLevel"], report.loaded_modules)["LogLevel"]
    error_logs = [str(p) for p in logs] or ([report.error_log] if report.error_log else [])
    return ServerView(
        control=report.control,
        version=report.version,
        distro=report.distro,
        modules_dir=report.modules_dir,
        loaded=report.loaded_modules,
        config_files=report.config_files,
        error_logs=error_logs,
        routes=scan_routes(report.config_files, report.loaded_modules),
        syntax=(syntax.stdout + syntax.stderr).strip(),
        timeout=report.timeout,
        reqtimeout=report.reqtimeout,
        log_level=level[-1] if level else "warn",
    )


def log_tail(path: str | Path, size: int = LOG_TAIL_BYTES) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
