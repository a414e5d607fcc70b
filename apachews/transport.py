"""How the server stage reaches a server: this machine, or another one over SSH.

doctor, install, uninstall and live verify read and change a server only through a `Transport`: run a
command, read a file, write one atomically, ask what a path is, expand a glob, fetch a tree. `Local` does it
with this machine's calls; `Ssh` with the system's OpenSSH client, one shared connection (ControlMaster in a
private temporary directory, BatchMode: never a prompt; authentication is the user's agent, keys and
~/.ssh/config). On the server only POSIX sh and its own tools run (cat, ls, tar, uname, getconf, apachectl):
no Python there.
"""

from __future__ import annotations

import glob as globbing
import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apachews.errors import BadInput, JobFailed

SSH_CONFIG_ENV = "APACHEWS_SSH_CONFIG"
_HOST = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d+))?$"
)
# One word per path: what it is, links not followed (Transport.kinds).
_KIND_SCRIPT = (
    'for p; do if [ -L "$p" ]; then echo link; elif [ -d "$p" ]; then echo dir; '
    'elif [ -f "$p" ]; then echo file; elif [ -e "$p" ]; then echo other; else echo none; fi; done'
)


class Transport:
    """A server reached some way. Paths are the server's, as strings."""

    name = "local"
    remote = False

    # -- what each transport provides --
    def run_bytes(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        raise NotImplementedError

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """A command with stdin and stdout as pipes (install's transaction talks to it line by line)."""
        raise NotImplementedError

    def fetch_tree(self, paths: Sequence[str], dest: Path) -> None:
        """Copy each existing path (file, link or whole directory) to dest/<path>, links kept as links."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- built on those --
    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        done = self.run_bytes(argv, input=input, timeout=timeout)
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        )

    def sh(
        self, script: str, *args: str, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """A POSIX sh script with positional arguments, on the server."""
        return self.run(["sh", "-c", script, "sh", *args], input=input, timeout=timeout)

    def read_bytes(self, path: str | Path) -> bytes:
        done = self.run_bytes(["cat", "--", str(path)])
        if done.returncode != 0:
            raise FileNotFoundError(f"{self.name}:{path}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    def read_text(self, path: str | Path) -> str:
        return self.read_bytes(path).decode(errors="replace")

    def read_texts(self, paths: Sequence[str]) -> dict[str, str]:
        """The files among paths that can be read, as text (one round trip to a remote server: a tar stream)."""
        found: dict[str, str] = {}
        for path in paths:
            try:
                found[path] = self.read_text(path)
            except OSError:
                continue
        return found

    def kinds(self, paths: Sequence[str | Path]) -> list[str]:
        """ "file", "dir", "link", "other" or "none" for each path (links not followed)."""
        if not paths:
            return []
        return self.sh(_KIND_SCRIPT, *map(str, paths)).stdout.split()

    def test(self, flag: str, path: str | Path) -> bool:
        """`test -f` / `-d` / `-e` / `-x` (links followed) on the server."""
        return self.run(["test", flag, str(path)]).returncode == 0

    def glob(self, pattern: str) -> list[str]:
        """The existing paths a shell glob matches, sorted."""
        found = self.sh(f'for p in {_glob_words(pattern)}; do [ -e "$p" ] && printf "%s\\n" "$p"; done; true')
        return sorted(line for line in found.stdout.splitlines() if line)

    def which(self, name: str, extra: Sequence[str] = ()) -> str | None:
        """The path of command `name` on the server: its PATH, then the directories in `extra`."""
        dirs = " ".join(shlex.quote(d) for d in extra)
        script = (
            'command -v "$1" 2>/dev/null | grep / && exit 0; '
            f'for d in {dirs}; do [ -x "$d/$1" ] && {{ echo "$d/$1"; exit 0; }}; done; exit 1'
        )
        done = self.sh(script, name)
        return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def outermost(paths: Sequence[str]) -> list[str]:
    """paths without those inside another of them (a tree fetched once)."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in unique)]


def _glob_words(pattern: str) -> str:
    """A glob pattern for sh: the wildcards live, everything else quoted."""
    parts = re.split(r"([*?]|\[[^]/]*\])", pattern)
    return "".join(part if i % 2 else shlex.quote(part) if part else "" for i, part in enumerate(parts))


class Local(Transport):
    """This machine."""

    def run_bytes(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout, check=False)
        except FileNotFoundError as error:
            return subprocess.CompletedProcess(list(argv), 127, b"", str(error).encode())

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )

    def read_bytes(self, path: str | Path) -> bytes:
        return Path(path).read_bytes()

    def kinds(self, paths: Sequence[str | Path]) -> list[str]:
        def kind(path: Path) -> str:
            if path.is_symlink():
                return "link"
            if path.is_dir():
                return "dir"
            if path.is_file():
                return "file"
            return "other" if path.exists() else "none"

        return [kind(Path(p)) for p in paths]

    def test(self, flag: str, path: str | Path) -> bool:
        checks = {"-f": os.path.isfile, "-d": os.path.isdir, "-e": os.path.exists}
        if flag in checks:
            return checks[flag](path)
        return os.access(path, os.X_OK) if flag == "-x" else super().test(flag, path)

    def glob(self, pattern: str) -> list[str]:
        return sorted(globbing.glob(pattern))

    def which(self, name: str, extra: Sequence[str] = ()) -> str | None:
        return shutil.which(name) or next((str(Path(d) / name) for d in extra if (Path(d) / name).exists()), None)

    def fetch_tree(self, paths: Sequence[str], dest: Path) -> None:
        for path in outermost(paths):
            source = Path(path)
            target = dest / source.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir() and not source.is_symlink():
                shutil.copytree(source, target, symlinks=True)
            elif os.path.lexists(source):
                shutil.copy2(source, target, follow_symlinks=False)


@dataclass(frozen=True)
class HostSpec:
    """[user@]server[:port], as --host takes it."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostSpec:
        match = _HOST.match(text.strip())
        if not match or match.group("host").startswith("-"):
            raise BadInput(f"--host {text!r} is not [user@]server[:port]", hint="e.g. --host admin@web1.example:2222")
        port = int(match.group("port")) if match.group("port") else None
        if port is not None and not 0 < port < 65536:
            raise BadInput(f"--host {text!r}: port {port} is out of range")
        return cls(match.group("host").strip("[]"), match.group("user"), port)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{user}{host}" + (f":{self.port}" if self.port else "")


class Ssh(Transport):
    """A server over SSH: the system's `ssh`, one master connection shared by every command (ControlMaster in
    a private directory, removed on close), BatchMode (a missing key is an error, never a prompt). With
    sudo, every command runs as root through `sudo -n` (NOPASSWD: apachews never handles a password)."""

    remote = True

    def __init__(
        self, spec: HostSpec | str, *, sudo: bool = False, config: str | Path | None = None, options: Sequence[str] = ()
    ) -> None:
        self.spec = spec if isinstance(spec, HostSpec) else HostSpec.parse(spec)
        self.name = str(self.spec)
        self.sudo = sudo
        if shutil.which("ssh") is None:
            raise BadInput("no ssh client here", hint="install OpenSSH's client (apt-get install openssh-client)")
        self._control = tempfile.mkdtemp(prefix="apachews-ssh-")
        config = config or os.environ.get(SSH_CONFIG_ENV)
        self.base = ["ssh", *(["-F", str(config)] if config else [])]
        self.base += ["-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}/%C"]
        self.base += ["-o", "ControlPersist=120", "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15"]
        self.base += list(options)
        self.base += [*(["-p", str(self.spec.port)] if self.spec.port else [])]
        self.base += [*(["-l", self.spec.user] if self.spec.user else [])]
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def _target(self) -> list[str]:
        return [self.spec.host]

    def _connect(self) -> None:
        done = subprocess.run([*self.base, *self._target(), "true"], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise JobFailed(
                f"cannot reach {self.name} over ssh: {done.stderr.strip() or f'exit {done.returncode}'}",
                hint=f"`ssh -o BatchMode=yes {self.name} true` must work without a prompt: a key in your agent "
                "or ~/.ssh/config, the server's host key in known_hosts (apachews never asks for a password)",
            )
        if self.sudo:
            check = subprocess.run(
                [*self.base, *self._target(), "sudo -n true"], capture_output=True, text=True, timeout=60
            )
            if check.returncode != 0:
                raise JobFailed(
                    f"sudo on {self.name} wants a password or is not allowed: {check.stderr.strip()}",
                    hint="allow the commands without a password (NOPASSWD in sudoers), or log in as root",
                )

    def command(self, argv: Sequence[str]) -> str:
        """The one string ssh hands to the server's login shell."""
        words = " ".join(shlex.quote(word) for word in argv)
        return f"{'sudo -n ' if self.sudo else ''}env LC_ALL=C {words}"

    def run_bytes(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            done = subprocess.run(
                [*self.base, *self._target(), self.command(argv)],
                input=input if input is not None else b"",
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise JobFailed(
                f"{argv[0]} on {self.name} did not finish in {timeout:.0f} s", hint="is the server overloaded?"
            ) from error
        if done.returncode == 255:
            raise JobFailed(
                f"lost the ssh connection to {self.name}: {done.stderr.decode(errors='replace').strip()}",
                hint="check the network and run the command again (an unfinished install is rolled back)",
            )
        return done

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*self.base, *self._target(), self.command(argv)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches apachews, which then rolls back in order
        )

    def forward(self, spec: str, remote: bool = False) -> int | None:
        """Add a port forward to the master connection: -L LOCAL:127.0.0.1:PORT, or -R 0:127.0.0.1:PORT
        (the server picks its port; returned)."""
        flag = "-R" if remote else "-L"
        done = subprocess.run(
            [*self.base, "-O", "forward", flag, spec, *self._target()], capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0:
            raise JobFailed(f"ssh port forward {flag} {spec} to {self.name} failed: {done.stderr.strip()}")
        found = re.search(r"(\d+)", done.stdout)
        return int(found.group(1)) if remote and found else None

    def cancel(self, spec: str, remote: bool = False) -> None:
        flag = "-R" if remote else "-L"
        subprocess.run(
            [*self.base, "-O", "cancel", flag, spec, *self._target()], capture_output=True, timeout=30, check=False
        )

    def read_texts(self, paths: Sequence[str]) -> dict[str, str]:
        if not paths:
            return {}
        script = (
            'for p; do [ -f "$p" ] && [ -r "$p" ] && printf "%s\\n" "${p#/}"; done | tar -C / -chf - -T - 2>/dev/null'
        )
        done = self.run_bytes(["sh", "-c", script, "sh", *paths], timeout=120)
        found: dict[str, str] = {}
        with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
            for member in archive.getmembers():
                handle = archive.extractfile(member) if member.isfile() else None
                if handle is not None:
                    found["/" + member.name] = handle.read().decode(errors="replace")
        return found

    def fetch_tree(self, paths: Sequence[str], dest: Path) -> None:
        script = (
            'for p; do [ -e "$p" ] || [ -L "$p" ] && printf "%s\\n" "${p#/}"; done | tar -C / -cf - -T - 2>/dev/null'
        )
        done = self.run_bytes(["sh", "-c", script, "sh", *outermost(paths)], timeout=120)
        if done.returncode not in (0, 1) and not done.stdout:
            raise JobFailed(f"cannot read {', '.join(paths)} on {self.name}", hint=done.stderr.decode().strip())
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
            members = [m for m in archive.getmembers() if m.isfile() or m.isdir() or m.issym()]
            for member in members:
                parts = Path(member.name).parts
                if Path(member.name).is_absolute() or ".." in parts:
                    raise JobFailed(f"{self.name} sent an unsafe path in its tar stream: {member.name}")
            if _HAS_FILTER:  # the names were checked above; modes and links must come through as they are
                archive.extractall(dest, members=members, filter="fully_trusted")
            else:
                archive.extractall(dest, members=members)

    def close(self) -> None:
        subprocess.run([*self.base, "-O", "exit", *self._target()], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self._control, ignore_errors=True)


_HAS_FILTER = hasattr(tarfile, "data_filter")
LOCAL = Local()


def connect(host: str | None, *, sudo: bool = False, ssh_config: str | Path | None = None) -> Transport:
    """The transport for --host (None: this machine)."""
    if host is None:
        if sudo:
            raise BadInput("--sudo goes with --host", hint="run apachews itself with sudo on this machine")
        return LOCAL
    return Ssh(host, sudo=sudo, config=ssh_config)
