"""`Installation`: the one code that asks an Apache httpd about itself.

An installation answers through its binary or its control script (apachectl / apache2ctl pass these flags on):
`-v` (version), `-V` (version, vendor, MPM, module magic number, the compiled-in -D paths), `-M` (loaded
modules), `-l` (compiled in), `-t -D DUMP_RUN_CFG` / `-D DUMP_INCLUDES` (2.4: the real ServerRoot and every
config file), `-t` (syntax). Each answer is asked once. It runs here, on a server over a `Transport`
(doctor, install), or where an `Httpd`'s runner runs it (a container: verify --target).

Headers are the other half of what an Apache says about itself: ap_release.h and ap_mmn.h in the include
directory an apxs (or an unpacked dev package) compiles against (`header_values`, `read_headers`).

The parsers are functions of the text, so a test (or a container's output) feeds them the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from apachews.catalogue import Version
from apachews.errors import BadInput
from apachews.transport import LOCAL, Transport

CONTROLS = ("apache2ctl", "apachectl", "httpd", "apache2")
SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/local/apache2/bin")
VERSION_RE = re.compile(r"Apache/(\d+\.\d+\.\d+)")
_SERVER_VERSION = re.compile(rf"Server version:\s*{VERSION_RE.pattern}\s*(?:\(([^)]*)\))?")
_MPM = re.compile(r"Server MPM:[ \t]*(\w+)")  # blank when the MPM is a module its config did not load

# argv, timeout -> what it printed
RunFn = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


# -- the parsers ----------------------------------------------------------------------------------------------
def parse_version(text: str) -> str | None:
    """The x.y.z of the first `Apache/x.y.z` in text (`httpd -v`, a Server header, a log line)."""
    match = VERSION_RE.search(text)
    return match.group(1) if match else None


def parse_mpm(text: str) -> str | None:
    """`Server MPM:` of `httpd -V`, lower case without "mpm_" (2.2 says "Prefork", 2.4 "event")."""
    match = _MPM.search(text)
    return match.group(1).lower().removeprefix("mpm_") if match else None


@dataclass(frozen=True)
class ServerInfo:
    """What `httpd -V` says."""

    version: str
    vendor: str | None  # the vendor in "Apache/2.4.6 (Vendor)"; None for a vanilla build
    built: str | None
    mmn: str | None  # "20120211:88"
    mpm: str  # "prefork", "worker", "event", or "unknown"
    threaded: bool
    defines: dict[str, str] = field(default_factory=dict)  # -D HTTPD_ROOT, SERVER_CONFIG_FILE, ...

    @property
    def mmn_major(self) -> int | None:
        major = (self.mmn or "").split(":")[0]
        return int(major) if major.isdigit() else None


def parse_v(text: str) -> ServerInfo:
    """`httpd -V`: version, vendor, build date, MMN, MPM, and the -D defines (HTTPD_ROOT, SERVER_CONFIG_FILE)."""
    match = _SERVER_VERSION.search(text)
    if not match:
        raise BadInput("this does not look like Apache httpd: no 'Server version: Apache/...' in its -V output")
    vendor = match.group(2)
    mmn = re.search(r"Module Magic Number:\s*(\S+)", text)
    built = re.search(r"Server built:\s*(.+)", text)
    return ServerInfo(
        version=match.group(1),
        vendor=None if vendor in (None, "Unix", "Win32", "Win64") else vendor,
        built=built.group(1).strip() if built else None,
        mmn=mmn.group(1) if mmn else None,
        mpm=parse_mpm(text) or "unknown",
        threaded=bool(re.search(r"threaded:\s*yes", text)),
        defines=dict(re.findall(r'^\s*-D\s+(\w+)(?:="?(.*?)"?)?\s*$', text, re.MULTILINE)),
    )


def parse_m(text: str) -> dict[str, str]:
    """`httpd -M`: module name -> static / shared."""
    return dict(re.findall(r"^\s*(\w+_module)\s+\((static|shared)\)", text, re.MULTILINE))


def parse_l(text: str) -> set[str]:
    """`httpd -l`: the file names compiled in (core.c, mod_so.c, prefork.c, ...)."""
    return {line.strip() for line in text.splitlines() if line.strip().endswith(".c")}


def parse_run_cfg(text: str) -> dict[str, str]:
    """`-t -D DUMP_RUN_CFG` (2.4): ServerRoot, PidFile, Main ErrorLog."""
    return {key: value for key, value in re.findall(r'^(ServerRoot|PidFile|Main ErrorLog):\s*"(.*)"', text, re.M)}


def parse_includes(text: str) -> list[str]:
    """`-t -D DUMP_INCLUDES` (2.4): every config file, in the order Apache reads them (the main one first)."""
    return re.findall(r"^\s*\((?:\*|\d+)\)\s+(\S.*?)\s*$", text, re.MULTILINE)


def header_values(text: str) -> tuple[str | None, int | None]:
    """(version, MMN major) from the text of ap_release.h + ap_mmn.h."""

    def define(name: str) -> str | None:
        match = re.search(rf"^\s*#\s*define\s+{name}\s+(\d+)", text, re.MULTILINE)
        return match.group(1) if match else None

    parts = [define(f"AP_SERVER_{n}_NUMBER") for n in ("MAJORVERSION", "MINORVERSION", "PATCHLEVEL")]
    major = define("MODULE_MAGIC_NUMBER_MAJOR")
    return (".".join(parts) if all(parts) else None), (int(major) if major else None)  # type: ignore[arg-type]


def read_headers(include_dir: str | Path, host: Transport = LOCAL) -> tuple[str | None, int | None]:
    """(version, MMN major) of the headers in include_dir (on host): what a module compiled there is for."""
    texts = host.read_texts([str(Path(include_dir) / name) for name in ("ap_release.h", "ap_mmn.h")])
    return header_values("\n".join(texts.values()))


# -- finding one ----------------------------------------------------------------------------------------------
def find_control(apachectl: str | Path | None = None, host: Transport = LOCAL) -> Path:
    """The server's control command: the one given, else apache2ctl / apachectl / httpd on the server."""
    where = "here" if not host.remote else f"on {host.name}"
    if apachectl is not None:
        found = str(apachectl) if os.sep in str(apachectl) else host.which(str(apachectl)) or str(apachectl)
        if not host.test("-e", found):
            raise BadInput(
                f"no {apachectl} {where}", hint="give --apachectl the path of apachectl, apache2ctl or httpd"
            )
        return Path(found)
    for name in CONTROLS:
        path = host.which(name, SBIN)
        if path:
            return Path(path)
    raise BadInput(
        f"no Apache httpd found {'on this machine' if not host.remote else where} (apache2ctl, apachectl, httpd)",
        hint="pass --apachectl PATH, or --apache V to say which version to assume",
    )


def find_apxs(apxs: str | None = None, host: Transport = LOCAL) -> str | None:
    """The apxs given (a name is looked up on the server), else apxs / apxs2 there; None when there is none."""
    if apxs:
        return apxs if os.sep in apxs else host.which(apxs)
    for name in ("apxs", "apxs2"):
        found = host.which(name, SBIN)
        if found:
            return found
    return None


def run_control(
    control: Path, *args: str, timeout: float = 60, host: Transport = LOCAL
) -> subprocess.CompletedProcess[str]:
    """`control ARGS` on host (what install's transaction and diagnose run besides the questions below)."""
    return host.run([str(control), *args], timeout=timeout)


# -- the installation -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Modules:
    """What `httpd -M` said: the loaded modules, and its complaint when it failed (a broken config)."""

    loaded: dict[str, str]
    complaint: str | None


class Installation:
    """An Apache httpd as it answers about itself, through `command` (its binary or control script)."""

    def __init__(self, command: Path, run: RunFn, where: str = "") -> None:
        self.command = Path(command)
        self._run = run
        self.where = where  # "" here, else the host or container it runs on
        self._answers: dict[tuple[str, ...], subprocess.CompletedProcess[str]] = {}

    @classmethod
    def on(cls, control: str | Path, host: Transport = LOCAL) -> Installation:
        """The server behind `control` on host (this machine by default)."""
        return cls(
            Path(control), lambda argv, timeout: host.run(argv, timeout=timeout), host.name if host.remote else ""
        )

    @classmethod
    def find(cls, apachectl: str | Path | None = None, host: Transport = LOCAL) -> Installation:
        """The server behind the control command given, else the one found on host (`find_control`)."""
        return cls.on(find_control(apachectl, host), host)

    def __repr__(self) -> str:
        return f"Installation({str(self.command)!r}{', ' + self.where if self.where else ''})"

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`command ARGS`, every time it is called."""
        return self._run([str(self.command), *args], timeout)

    def ask(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`command ARGS`, asked once: the same question is answered from memory."""
        if args not in self._answers:
            self._answers[args] = self.run(*args)
        return self._answers[args]

    def version(self) -> Version:
        """`-v`: the version (the quick question)."""
        said = self.ask("-v")
        found = parse_version(said.stdout + said.stderr)
        if found is None:
            raise BadInput(
                f"{self.command} does not look like Apache httpd (`{self.command} -v` said: {said.stdout.strip()!r})"
            )
        return Version.parse(found)

    def info(self) -> ServerInfo:
        """`-V`: version, vendor, MPM, module magic number, compiled-in paths."""
        said = self.ask("-V")
        return parse_v(said.stdout + said.stderr)

    def mpm(self) -> str:
        return self.info().mpm

    def modules(self) -> Modules:
        """`-M`: the loaded modules (it reads the whole config: a broken one gives none, and a complaint)."""
        said = self.ask("-M")
        loaded = parse_m(said.stdout)
        lines = (said.stderr or said.stdout).strip().splitlines()
        return Modules(loaded, None if loaded else lines[-1] if lines else "no output")

    def compiled_files(self) -> set[str]:
        """`-l`: the file names compiled in (core.c, mod_so.c, event.c, ...)."""
        return parse_l(self.ask("-l").stdout)

    def compiled_in(self) -> set[str]:
        """The modules compiled into the binary, by name ({"so", "unixd", ...})."""
        return {m.group(1) for m in re.finditer(r"mod_(\w+)\.c", "\n".join(sorted(self.compiled_files())))}

    def static_mpm(self) -> str | None:
        """The MPM compiled into the binary (2.2, or a 2.4 built without --enable-mpms-shared), else None."""
        files = self.compiled_files()
        return next((name for name in ("prefork", "worker", "event") if f"{name}.c" in files), None)

    def run_cfg(self) -> dict[str, str]:
        """`-t -D DUMP_RUN_CFG` (2.4 only): ServerRoot, PidFile, Main ErrorLog."""
        return parse_run_cfg(self.ask("-t", "-D", "DUMP_RUN_CFG").stdout)

    def includes(self) -> list[str]:
        """`-t -D DUMP_INCLUDES` (2.4 only): every config file in reading order, the main one first."""
        return parse_includes(self.ask("-t", "-D", "DUMP_INCLUDES").stdout)

    def syntax(self) -> subprocess.CompletedProcess[str]:
        """`-t`, asked afresh each time (the config may have changed)."""
        return self.run("-t")


@dataclass(frozen=True)
class ApxsHeaders:
    """The headers an apxs compiles against: where they are, and the version and MMN major they say."""

    apxs: str
    include_dir: str | None
    version: str | None
    mmn_major: int | None


def apxs_headers(apxs: str, host: Transport = LOCAL) -> ApxsHeaders:
    """`apxs -q INCLUDEDIR`, then its ap_release.h and ap_mmn.h."""
    include = host.run([apxs, "-q", "INCLUDEDIR"], timeout=30).stdout.strip() or None
    version, mmn = read_headers(include, host) if include else (None, None)
    return ApxsHeaders(apxs, include, version, mmn)
