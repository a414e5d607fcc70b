"""A throwaway copy of this machine's Debian apache2 tree, run as its own server on a free 127.0.0.1 port.

The server under test for doctor / install / verify --live / uninstall: /etc/apache2 copied to a temp dir,
envvars pointing the run, lock and log dirs into it, ports.conf and the default site on 127.0.0.1:PORT, and
an `apache2ctl` wrapper (Debian's own apache2ctl with APACHE_CONFDIR set to the copy). The machine's own
/etc/apache2 is only read, never written.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from apachews.distros import trees
from apachews.httpd import free_port, wait_for_port

SYSTEM_TREE = trees.DEBIAN_TREE
SYSTEM_CTL = Path("/usr/sbin/apache2ctl")


def available() -> str | None:
    """Why a Debian tree cannot be used here, or None when it can."""
    if not SYSTEM_TREE.is_dir() or not SYSTEM_CTL.exists():
        return "no Debian apache2 (/etc/apache2, /usr/sbin/apache2ctl): apt-get install apache2"
    return None


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every entry under root: kind, bytes (files) or link target, mode. Two equal snapshots = identical trees."""
    entries: dict[str, tuple[str, bytes | str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            mode = path.lstat().st_mode
            if path.is_symlink():
                entries[rel] = ("link", os.readlink(path), mode)
            elif path.is_dir():
                entries[rel] = ("dir", "", mode)
            else:
                entries[rel] = ("file", path.read_bytes(), mode)
    return entries


@dataclass
class DebianServer:
    root: Path  # temp dir: etc/ (the config tree), run/, lock/, log/, modules/
    port: int

    @property
    def conf_root(self) -> Path:
        return self.root / "etc"

    @property
    def ctl(self) -> Path:
        return self.root / "apache2ctl"

    @property
    def modules_dir(self) -> Path:
        return self.root / "modules"

    @property
    def error_log(self) -> Path:
        return self.root / "log" / "error.log"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.ctl), *args], capture_output=True, text=True, timeout=60, check=False)

    def pid(self) -> int | None:
        pidfile = self.root / "run" / "apache2.pid"
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        result = self.run("-k", "start")
        if result.returncode != 0 or not wait_for_port(self.port, 15):
            raise RuntimeError(f"the Debian tree copy did not start: {result.stdout}{result.stderr}")

    def stop(self) -> None:
        pid = self.pid()
        if self.run("-k", "stop").returncode != 0 and pid:
            # -k stop reads the config first: a test that left it broken must not leave the server running.
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        # The children may hold the listening socket a moment after the parent: a restart waits for the port.
        while time.monotonic() < deadline and _listening(self.port):
            time.sleep(0.05)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def make(root: Path) -> DebianServer:
    """Copy /etc/apache2 into root/etc and point it at root; the server is not started."""
    port = free_port()
    conf = trees.copy_debian_tree(root, port)
    envvars = (conf / "envvars").read_text()
    for name, sub in (
        ("APACHE_PID_FILE", "run/apache2.pid"),
        ("APACHE_RUN_DIR", "run"),
        ("APACHE_LOCK_DIR", "lock"),
        ("APACHE_LOG_DIR", "log"),
    ):
        envvars = re.sub(rf"^export {name}=.*$", f"export {name}={root / sub}", envvars, flags=re.MULTILINE)
    (conf / "envvars").write_text(envvars)
    ctl = root / "apache2ctl"
    # systemd-free start (APACHE_STARTED_BY_SYSTEMD): apache2ctl would otherwise hand `start` to systemctl.
    ctl.write_text(f'#!/bin/sh\nAPACHE_CONFDIR="{conf}" APACHE_STARTED_BY_SYSTEMD=1 exec {SYSTEM_CTL} "$@"\n')
    ctl.chmod(0o755)
    return DebianServer(root, port)


@contextmanager
def running(root: Path) -> Iterator[DebianServer]:
    server = make(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def restore(root: Path, before: dict[str, tuple[str, bytes | str, int]]) -> list[str]:
    """Put root back to a snapshot (entries added since removed, changed ones rewritten); returns what it fixed."""
    fixed = []
    now = snapshot(root)
    for rel in sorted(set(now) - set(before), key=len, reverse=True):  # deepest first
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        fixed.append(f"removed {rel}")
    for rel, (kind, content, mode) in sorted(before.items(), key=lambda item: len(item[0])):
        path = root / rel
        if now.get(rel) == (kind, content, mode):
            continue
        if os.path.lexists(path) and not (kind == "dir" and path.is_dir() and not path.is_symlink()):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        if kind == "dir":
            path.mkdir(exist_ok=True)
        elif kind == "link":
            os.symlink(str(content), path)
        else:
            path.write_bytes(content)  # type: ignore[arg-type]
        if kind != "link":
            os.chmod(path, mode & 0o7777)
        fixed.append(f"restored {rel}")
    return fixed
