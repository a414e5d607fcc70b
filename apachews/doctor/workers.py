"""The MPM settings of an installed server, as capacity reads them: the directives doctor scanned, the running
server's open-files limits, and the sizing an apachews capacity file says it was rendered for."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from apachews import capacity
from apachews.transport import LOCAL, Transport


def mpm_settings(
    directives: dict[str, list[str]], family: str, mpm: str, open_files: tuple[int, int] | None = None
) -> capacity.Settings:
    """capacity.Settings from scanned directives (the last value of each counts; 2.4 also takes MaxClients) and
    the server's open-files limits (soft, hard): with handoff the hard one counts (the module raises to it)."""

    def last(name: str) -> int | None:
        values = [v.strip('"') for v in directives.get(name, [])]
        return int(values[-1]) if values and values[-1].isdigit() else None

    workers = last("MaxRequestWorkers") if directives.get("MaxRequestWorkers") else last("MaxClients")
    handoff = any(v.strip('"').lower() == "on" for v in directives.get("ProxyWebsocketHandoff", []))
    files = None if open_files is None else open_files[1] if handoff else open_files[0]
    return capacity.Settings(
        family,
        mpm,
        server_limit=last("ServerLimit"),
        thread_limit=last("ThreadLimit"),
        threads_per_child=last("ThreadsPerChild"),
        max_workers=workers,
        handoff=handoff,
        open_files=files,
    )


def running_open_files(pid_file: str | Path, host: Transport = LOCAL) -> tuple[int, int] | None:
    """The running server's RLIMIT_NOFILE (soft, hard) from /proc/PID/limits, or None when it is not running."""
    try:
        pid = int(host.read_text(pid_file).strip())
        limits = host.read_text(f"/proc/{pid}/limits")
    except (OSError, ValueError):
        return None
    match = re.search(r"^Max open files\s+(\d+)\s+(\d+)", limits, re.MULTILINE)
    return (int(match.group(1)), int(match.group(2))) if match else None


def apachews_sizing(files: Sequence[str], host: Transport = LOCAL) -> dict[str, str] | None:
    """What an apachews capacity file among the config files was rendered for (its first line), or None."""
    for name in files:
        if "capacity" not in Path(name).name:  # config renders it as apachews-capacity.conf
            continue
        try:
            found = capacity.parse_marker(host.read_text(name).split("\n", 1)[0])
        except OSError:
            continue
        if found:
            return {**found, "file": name}
    return None
