"""Run a real Apache httpd in a throwaway ServerRoot: `httpd -t`, start, stop, and clean up.

Used by `config --check` (syntax check of a rendered snippet), `verify` and `bench` (a running proxy).
The ServerRoot is a temp dir with `modules` symlinked to the install's modules directory, so snippets
written for any layout that says `LoadModule x modules/mod_x.so` resolve.

An Apache runs on this host, or (an `Httpd` with a `runner`) inside a container of another distribution's
root (apachews.target): the same Server then runs there, its tree bind-mounted at the same path.
"""

from __future__ import annotations

import collections
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from apachews.catalogue import Version
from apachews.errors import BadInput, JobFailed
from apachews.installation import Installation
from apachews.layoutfacts import system_httpds
from apachews.loadmodule import load_module_lines
from apachews.resources import template_environment
from apachews.serial import Serialised

# (binary, modules dir) of each distribution's Apache, in the order they are tried (facts live in distros/).
SYSTEM_CANDIDATES = system_httpds()
_LOADMODULE_RE = re.compile(r"^\s*LoadModule\s+(\w+)\s+(\S+)", re.MULTILINE)
_SYNTAX_RE = re.compile(r"Syntax error on line (\d+) of (.+?):\s*\n?(.*)", re.DOTALL)


@dataclass(frozen=True)
class Mount:
    """A host path a containerised Apache sees at the same path."""

    path: Path
    read_only: bool = False


class Process(Protocol):
    """A running Apache's parent, as Server watches it (a subprocess.Popen here, a container elsewhere)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


class Runner(Protocol):
    """Where an Apache that is not this host's runs (apachews.target: a container of its distribution).

    Paths in its Httpd (binary, modules_dir) are paths there; `conf_tree` is a host copy of its distribution's
    own configuration tree (what the layouts copy), `layout` that tree's layout."""

    name: str
    layout: str

    @property
    def conf_tree(self) -> Path: ...

    def run(
        self, argv: list[str], env: Mapping[str, str], timeout: float, mounts: Sequence[Mount]
    ) -> subprocess.CompletedProcess[str]: ...

    def start(self, argv: list[str], env: Mapping[str, str], mounts: Sequence[Mount]) -> Process: ...

    def stop(self, process: Process) -> None: ...

    def exists(self, path: Path) -> bool: ...

    def check_module(self, module: Path) -> None:
        """Refuse (BadInput, saying which build to make) a module this Apache cannot load."""
        ...


@dataclass(frozen=True)
class Httpd:
    """An installed Apache: its binary, version and modules directory."""

    binary: Path
    version: Version
    modules_dir: Path
    kind: str  # "system", "prefix" or "target" (in a container: `runner`)
    env: Mapping[str, str] = field(default_factory=dict)
    runner: Runner | None = None  # None: this host

    def run(self, *args: str, mounts: Sequence[Mount] = ()) -> subprocess.CompletedProcess[str]:
        """`httpd ARGS` where this Apache runs."""
        return _run([str(self.binary), *args], self.env, runner=self.runner, mounts=mounts)

    @functools.cached_property
    def installation(self) -> Installation:
        """What this Apache says about itself (`-V`, `-l`, ...), each asked once."""
        return _installation(self.binary, self.env, self.runner)

    def compiled_in(self) -> set[str]:
        """Module names compiled into the binary (`httpd -l`), e.g. {"so", "unixd"}."""
        return self.installation.compiled_in()

    def has_module(self, name: str) -> bool:
        shared = self.modules_dir / f"mod_{name}.so"
        return name in self.compiled_in() or (self.runner.exists(shared) if self.runner else shared.exists())


def _run(
    argv: list[str],
    env: Mapping[str, str],
    timeout: float = 30,
    runner: Runner | None = None,
    mounts: Sequence[Mount] = (),
) -> subprocess.CompletedProcess[str]:
    if runner is not None:
        return runner.run(argv, env, timeout, mounts)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}, check=False)


def _installation(binary: Path, env: Mapping[str, str], runner: Runner | None) -> Installation:
    where = runner.name if runner is not None else ""
    return Installation(binary, lambda argv, timeout: _run(list(argv), env, timeout, runner=runner), where)


def version_of(binary: Path, env: Mapping[str, str], runner: Runner | None = None) -> Version:
    """The version `binary -v` reports (where `runner` runs it: None, this host)."""
    return _installation(binary, env, runner).version()


def locate(binary: Path | None = None, prefix: Path | None = None) -> Httpd:
    """Find an Apache: an explicit binary, an install prefix (bin/httpd, modules/), or the system's."""
    if prefix is not None:
        prefix = Path(prefix).resolve()
        candidate = prefix / "bin" / "httpd"
        if not candidate.exists():
            raise BadInput(f"{prefix} is not an httpd install prefix (no bin/httpd)")
        env = {"LD_LIBRARY_PATH": str(prefix / "lib")}
        return Httpd(candidate, version_of(candidate, env), prefix / "modules", "prefix", env)
    if binary is not None:
        binary = Path(binary).resolve()
        if not binary.exists():
            raise BadInput(f"no httpd binary at {binary}")
        version = version_of(binary, {})
        for guess in (binary.parent.parent / "modules", *(d for _, d in SYSTEM_CANDIDATES)):
            if (guess / "mod_proxy.so").exists():
                return Httpd(binary, version, guess, "system")
        raise BadInput(f"cannot find the modules directory of {binary}", hint="pass --dist or an install prefix")
    for candidate, modules in SYSTEM_CANDIDATES:
        if candidate.exists() and modules.is_dir():
            return Httpd(candidate, version_of(candidate, {}), modules, "system")
    raise BadInput(
        "no Apache httpd found on this machine",
        hint="apt-get install apache2 (or yum install httpd), or pass --httpd PATH / --dist DIR",
    )


_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=256)


def free_port() -> int:
    """A free loopback port, never one this process was handed recently: the kernel may give a just-closed
    port again, and one config with two Listen lines for it is refused ("multiple Listeners")."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.append(port)
            return port


def wait_for_port(port: int, timeout: float, alive: callable = lambda: True) -> bool:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class SyntaxResult(Serialised):
    """What `httpd -t` said. A warning (AH01146 "Ignoring parameter ... because of worker sharing", say) is a
    config that will not do what it says: `clean` is False then, though httpd accepts it."""

    ok: bool
    output: str
    error: str | None = None
    file: str | None = None
    line: int | None = None
    warnings: list[str] = field(default_factory=list)

    _derived = ("clean",)

    @property
    def clean(self) -> bool:
        return self.ok and not self.warnings


def parse_syntax_check(result: subprocess.CompletedProcess[str], strip_dir: str = "") -> SyntaxResult:
    output = (result.stdout + result.stderr).strip()
    warnings = [
        line.replace(strip_dir, "") for line in output.splitlines() if line.strip() and line.strip() != "Syntax OK"
    ]
    if result.returncode == 0:
        return SyntaxResult(True, output, warnings=warnings)
    match = _SYNTAX_RE.search(output)
    if not match:
        return SyntaxResult(False, output, error=output.splitlines()[-1] if output else "httpd -t failed")
    line, file, message = int(match.group(1)), match.group(2), match.group(3).strip().splitlines()
    return SyntaxResult(
        False,
        output,
        error=message[0] if message else "syntax error",
        file=file.replace(strip_dir, ""),
        line=line,
    )


class Server:
    """A configured Apache, ready to run: the binary, its ServerRoot and main config file, the environment
    its config expects (a layout's APACHE_* variables), and where it listens and logs. Runs in the foreground
    in its own process group; `stop` ends the whole group."""

    def __init__(
        self,
        httpd: Httpd,
        server_root: Path,
        conf: Path,
        port: int,
        error_log: Path,
        env: Mapping[str, str] | None = None,
        defines: Sequence[str] = (),
        files_dir: Path | None = None,
        mounts: Sequence[Mount] = (),
    ) -> None:
        self.httpd = httpd
        self.mounts = tuple(mounts)  # what a containerised Apache must see (its tree, certificates, module)
        self.server_root = server_root
        self.files_dir = files_dir or server_root  # file names in messages are shown relative to it
        self.conf = conf
        self.port = port
        self.error_log = error_log
        self.env = {**httpd.env, **(env or {})}
        self.defines = tuple(defines)
        self.process: subprocess.Popen[bytes] | Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self, *extra: str) -> list[str]:
        defines = [arg for name in self.defines for arg in ("-D", name)]
        return [str(self.httpd.binary), "-d", str(self.server_root), "-f", str(self.conf), *defines, *extra]

    def syntax_check(self) -> SyntaxResult:
        result = _run(self.argv("-t"), self.env, runner=self.httpd.runner, mounts=self.mounts)
        return parse_syntax_check(result, str(self.files_dir) + "/")

    def start(self, timeout: float = 15) -> SyntaxResult:
        checked = self.syntax_check()
        if not checked.ok:
            where = f" ({checked.file}, line {checked.line})" if checked.line else ""
            raise JobFailed(f"Apache rejected the configuration{where}: {checked.error}")
        if self.httpd.runner is not None:
            self.process = self.httpd.runner.start(self.argv("-DFOREGROUND"), self.env, self.mounts)
        else:
            self.process = subprocess.Popen(
                self.argv("-DFOREGROUND"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        process = self.process
        if not wait_for_port(self.port, timeout, alive=lambda: process.poll() is None):
            tail = self.log_tail()
            self.stop()
            raise JobFailed(f"Apache did not start on 127.0.0.1:{self.port}", hint=f"error log:\n{tail}")
        return checked

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and self.httpd.runner is not None:
            self.httpd.runner.stop(process)
            return
        if not isinstance(process, subprocess.Popen) or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Children of a dying parent can linger a moment; make sure the whole group is gone.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no error log)"


class ServerRoot:
    """A throwaway, bare ServerRoot around `snippets` (file name -> text), removed on exit whatever happens:
    the lab layout (no distribution defaults, no mod_reqtimeout). distros.trees has the layouts users run."""

    def __init__(
        self,
        httpd: Httpd,
        snippets: Mapping[str, str],
        port: int | None = None,
        mpm: str | None = None,
        extra_modules: Mapping[str, Path] | None = None,
        log_level: str = "warn",
        defines: Sequence[str] = (),
    ) -> None:
        if httpd.runner is not None:
            raise BadInput(
                f"the lab ServerRoot runs an Apache of this host, not one in {httpd.runner.name}",
                hint=f"use its own layout: --layout {httpd.runner.layout}",
            )
        self.httpd = httpd
        self.snippets = dict(snippets)
        self.port = port or free_port()
        self.mpm = mpm
        self.extra_modules = {name: Path(path).resolve() for name, path in (extra_modules or {}).items()}
        self.log_level = log_level
        self.defines = tuple(defines)
        self.root: Path | None = None
        self._server: Server | None = None

    # -- layout -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        assert self.root is not None, "use ServerRoot as a context manager"
        return self.root / "conf" / "httpd.conf"

    @property
    def error_log(self) -> Path:
        assert self.root is not None, "use ServerRoot as a context manager"
        return self.root / "logs" / "error_log"

    def __enter__(self) -> ServerRoot:
        self.root = Path(tempfile.mkdtemp(prefix="apachews-root-"))
        self.root.chmod(0o711)  # the server's User reaches its run/ (the handoff keeper's socket), as in /var/run
        try:
            self._write()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self._remove()

    def _remove(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self._server = None

    def _write(self) -> None:
        assert self.root is not None
        for sub in ("conf", "logs", "run", "snippets"):
            (self.root / sub).mkdir()
        (self.root / "modules").symlink_to(self.httpd.modules_dir)
        snippet_text = "\n".join(self.snippets.values())
        loaded_by_snippets = {m.group(1) for m in _LOADMODULE_RE.finditer(snippet_text)}
        includes = []
        for name, text in self.snippets.items():
            target = self.root / "snippets" / Path(name).name
            target.write_text(self._swap_modules(text))
            includes.append(target)
        # Extra modules no snippet loads come last: they may need one a snippet loads (mod_proxy).
        extra = [name for name in self.extra_modules if f"{name}_module" not in loaded_by_snippets]
        base = load_module_lines(self._base_modules(loaded_by_snippets), "modules", guarded=False)
        template = template_environment("apache").get_template("lab/server-root.conf.j2")
        text = template.render(
            root=self.root,
            port=self.port,
            error_log=self.error_log,
            log_level=self.log_level,
            runtime=self._runtime(),
            base_loads=base.rstrip("\n"),
            group=_nobody_group() if os.geteuid() == 0 else None,
            includes=includes,
            extra_loads=load_module_lines(extra, "modules", guarded=False, paths=self.extra_modules),
        )
        self.conf.write_text(text)

    def _swap_modules(self, text: str) -> str:
        """Point LoadModule lines of `extra_modules` at the given .so files."""
        for name, path in self.extra_modules.items():
            text = re.sub(rf"^(\s*LoadModule\s+{name}_module\s+)\S+", rf'\g<1>"{path}"', text, flags=re.MULTILINE)
        return text

    def _runtime(self) -> str:
        """Where the server keeps its runtime files: DefaultRuntimeDir arrived in 2.4.2, 2.2 has a LockFile."""
        if self.httpd.version >= Version(2, 4, 2):
            return "DefaultRuntimeDir"
        return "" if self.httpd.version >= Version(2, 4, 0) else "LockFile"

    def _base_modules(self, loaded_by_snippets: set[str]) -> list[str]:
        """The MPM (unless compiled in) and the access modules, those no snippet loads and the install has."""
        is_24 = self.httpd.version >= Version(2, 4, 0)
        compiled = self.httpd.compiled_in()
        wanted: list[str] = []
        if not any(name.startswith("mpm_") for name in compiled):
            wanted.append(f"mpm_{self.mpm or 'event'}")
        wanted += ["authz_core", "authz_host", "unixd"] if is_24 else ["authz_host"]
        return [
            name
            for name in wanted
            if name not in compiled
            and f"{name}_module" not in loaded_by_snippets
            and (self.httpd.modules_dir / f"mod_{name}.so").exists()
        ]

    # -- running: a Server over this root --------------------------------------------------------------------
    @property
    def server(self) -> Server:
        assert self.root is not None, "use ServerRoot as a context manager"
        if self._server is None:
            self._server = Server(
                self.httpd,
                self.root,
                self.conf,
                self.port,
                self.error_log,
                defines=self.defines,
                files_dir=self.root / "snippets",
            )
        return self._server

    def syntax_check(self) -> SyntaxResult:
        return self.server.syntax_check()

    def start(self, timeout: float = 15) -> SyntaxResult:
        return self.server.start(timeout)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def log_tail(self, lines: int = 40) -> str:
        return self.server.log_tail(lines)


def _nobody_group() -> str:
    import grp

    for name in ("nogroup", "nobody"):
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            continue
    return "#65534"
