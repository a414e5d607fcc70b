"""`apachews doctor`: read the Apache this machine runs, say what it needs for WebSockets and what to run next.

Everything comes from the server itself: `apachectl -V` (version, MPM, module magic number, compiled-in
paths), `-M` (loaded modules), `-t -D DUMP_RUN_CFG` / `-D DUMP_INCLUDES` (2.4: the real ServerRoot and every
config file; 2.2: we follow Include lines ourselves), the config files (MaxRequestWorkers / MaxClients,
RequestReadTimeout, Timeout, LoadModule paths), the layout on disk, and the installed apxs and its headers.

`server_defaults()` is what other commands use for their defaults (version, distribution, MPM).

The questions to httpd are `apachews.installation` (the one code that asks); the parts here: `conffiles`
(reading the config files as httpd does), `workers` (the MPM settings they give), `loads` (will a .so load here).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from apachews import capacity, catalogue
from apachews.catalogue import Version
from apachews.distros import detect as detect_distro
from apachews.doctor.conffiles import follow_includes, module_present, scan_directives
from apachews.doctor.loads import ModuleVerdict, build_for, check_module, platform_of
from apachews.doctor.workers import apachews_sizing, mpm_settings, running_open_files
from apachews.errors import BadInput
from apachews.installation import (
    CONTROLS,
    Installation,
    apxs_headers,
    find_apxs,
    find_control,
    parse_includes,
    parse_m,
    parse_run_cfg,
    parse_v,
    run_control,
)
from apachews.serial import Serialised
from apachews.transport import LOCAL, Transport

__all__ = [  # what other modules (and tests) reach through `doctor.`
    "CONTROLS",
    "MPM_DIRECTIVES",
    "Apxs",
    "Defaults",
    "ModuleVerdict",
    "Report",
    "module_present",
    "apachews_sizing",
    "build_for",
    "check_module",
    "detect_distro",
    "examine",
    "find_apxs",
    "find_control",
    "follow_includes",
    "inspect_apxs",
    "locate_config",
    "mpm_settings",
    "owning_package",
    "parse_includes",
    "parse_m",
    "parse_run_cfg",
    "parse_v",
    "platform_of",
    "run_control",
    "running_open_files",
    "scan_directives",
    "server_defaults",
    "server_settings",
]

MPM_DIRECTIVES = ("MaxRequestWorkers", "MaxClients", "ServerLimit", "ThreadLimit", "ThreadsPerChild")


@dataclass
class Apxs:
    path: str
    version: str | None
    mmn_major: int | None
    include_dir: str | None
    matches: bool
    detail: str


@dataclass
class Report(Serialised):
    control: str
    version: str
    vendor: str | None  # the vendor in "Apache/2.4.6 (Vendor)", or the owning package's name
    built: str | None
    mmn: str | None
    mpm: str
    threaded: bool
    server_root: str
    config_file: str
    pid_file: str
    error_log: str | None
    conf_root: str  # where placement puts files
    distro: str
    modules_dir: str | None
    loaded_modules: dict[str, str] = field(default_factory=dict)  # name -> static/shared
    proxy_modules: list[str] = field(default_factory=list)
    reqtimeout: list[str] = field(default_factory=list)  # RequestReadTimeout values, as configured
    timeout: dict[str, str] = field(default_factory=dict)  # Timeout / ProxyTimeout / ProxyWebsocketIdleTimeout
    max_workers: int | None = None  # the workers httpd runs with (capacity.compute of the MPM settings)
    max_workers_source: str = ""
    capacity: dict[str, object] | None = None  # workers, WebSockets they hold, what is left for HTTP; sizing
    capacity_lines: list[tuple[str, str]] = field(default_factory=list)  # the text's lines about it
    apxs: Apxs | None = None
    needs: str = ""
    tunnelling: str = ""
    warnings: list[str] = field(default_factory=list)
    next_commands: list[str] = field(default_factory=list)
    config_files: list[str] = field(default_factory=list)
    package: str | None = None  # the distribution package that installed it, with its version
    host: str | None = None  # [user@]server[:port] when read over SSH
    machine: str | None = None  # `uname -m`: what a module must be built for
    glibc: str | None = None  # the C library's version (getconf GNU_LIBC_VERSION): a module's floor must not pass it
    module: dict[str, object] | None = None  # doctor --module: does that .so load here, and if not, why
    _omit = ("capacity_lines",)  # the text's; --json has `capacity`

    def text(self) -> str:
        lines = [
            (f"{self.host}: " if self.host else "")
            + f"Apache {self.version}"
            + (f" ({self.vendor} build)" if self.vendor else " (vanilla build)")
            + f", MPM {self.mpm}, MMN {self.mmn or '?'}",
            f"  control     {self.control}" + (f" (package {self.package})" if self.package else ""),
            f"  platform    {self.machine or '?'}, glibc {self.glibc or '? (not glibc, or unreadable)'}",
            f"  layout      {self.distro}: config {self.conf_root}, modules {self.modules_dir or '?'}",
            f"  proxy       {', '.join(self.proxy_modules) or 'no proxy module loaded'}",
            "  reqtimeout  " + ("; ".join(self.reqtimeout) if self.reqtimeout else "mod_reqtimeout loaded, defaults")
            if "reqtimeout_module" in self.loaded_modules
            else "  reqtimeout  not loaded",
            f"  timeouts    {', '.join(f'{k} {v}' for k, v in self.timeout.items())}",
        ]
        if self.capacity_lines:
            lines += [f"  {name:<11} {line}" for name, line in self.capacity_lines]
        elif self.max_workers is not None:
            lines.append(f"  workers     {self.max_workers} ({self.max_workers_source})")
        if self.module:
            lines.append(f"  module      {self.module['path']}: {self.module['summary']}")
        if self.apxs:
            lines.append(f"  apxs        {self.apxs.path}: {self.apxs.detail}")
        else:
            lines.append("  apxs        none (apache2-dev / httpd-devel not installed)")
        lines += ["", f"Needs: {self.needs}"]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += ["", "Next:"] + [f"  {command}" for command in self.next_commands]
        return "\n".join(lines)


def inspect_apxs(path: str, server_version: str, server_mmn: str | None, host: Transport = LOCAL) -> Apxs:
    """The headers apxs compiles against, compared with the running server (version and MMN major)."""
    headers = apxs_headers(path, host)
    include, version, mmn = headers.include_dir, headers.version, headers.mmn_major
    server_major = int(server_mmn.split(":")[0]) if server_mmn and server_mmn.split(":")[0].isdigit() else None
    if version is None:
        return Apxs(path, None, mmn, include, False, f"cannot read the headers' version in {include}")
    if version == server_version and (mmn == server_major or server_major is None):
        return Apxs(path, version, mmn, include, True, f"headers {version} match the server")
    if mmn is not None and mmn == server_major:
        return Apxs(path, version, mmn, include, True, f"headers {version}, same module ABI (MMN {mmn})")
    return Apxs(
        path, version, mmn, include, False, f"headers {version} (MMN {mmn}) do NOT match the server {server_version}"
    )


# -- the report ---------------------------------------------------------------------------------------------
def locate_config(
    server: Installation, config_file: str | Path | None = None, host: Transport = LOCAL
) -> tuple[Path, Path, dict[str, str], list[str]]:
    """(ServerRoot, main config file, DUMP_RUN_CFG, config files in reading order) of the server.

    2.4 tells us (DUMP_RUN_CFG, DUMP_INCLUDES). 2.2 does not: the compiled-in HTTPD_ROOT and
    SERVER_CONFIG_FILE (or config_file, for an apachectl that passes -f), then the file's own ServerRoot."""
    run_cfg: dict[str, str] = {}
    includes: list[str] = []
    info = server.info()
    defines = info.defines
    if Version.parse(info.version) >= Version(2, 4, 0):
        run_cfg, includes = server.run_cfg(), server.includes()
    server_root = Path(run_cfg.get("ServerRoot") or defines.get("HTTPD_ROOT", "/etc/httpd"))
    if includes:
        main_file = Path(includes[0])  # "(*)": the main config file, as the server resolved it
    else:
        name = str(config_file or defines.get("SERVER_CONFIG_FILE", "conf/httpd.conf"))
        main_file = Path(name) if name.startswith("/") else server_root / name
        declared = scan_directives([str(main_file)], ["ServerRoot"], {}, host)["ServerRoot"]
        if declared:
            server_root = Path(declared[0].strip('"'))
        includes = follow_includes(main_file, server_root, host=host)
    if not host.test("-f", main_file):
        raise BadInput(
            f"cannot find the server's main config file (looked at {main_file})",
            hint="pass --config FILE when its apachectl starts it with -f FILE",
        )
    return server_root, main_file, run_cfg, includes


def examine(
    apachectl: str | Path | None = None,
    apxs: str | None = None,
    config_file: str | Path | None = None,
    max_websockets: int | None = None,
    http_reserve: int | None = None,
    host: Transport = LOCAL,
    module: Path | None = None,
) -> Report:
    """Read the server behind `apachectl` (or this machine's, or the one `host` reaches) and say what it needs;
    with `max_websockets`, whether its MPM holds that many WebSockets and still serves HTTP, and the sizing
    that would; with `module`, whether that .so loads into it."""
    if max_websockets is not None:
        max_websockets = capacity.validate_websockets(max_websockets)
    if http_reserve is not None:
        http_reserve = capacity.validate_reserve(http_reserve)
    control = find_control(apachectl, host)
    server = Installation.on(control, host)
    info = server.info()
    version, defines = info.version, info.defines
    modules = server.modules()
    loaded = modules.loaded
    server_root, config_file, run_cfg, includes = locate_config(server, config_file, host)
    distro, conf_root = detect_distro(server_root, config_file, host)

    directives = scan_directives(
        includes,
        (
            *MPM_DIRECTIVES,
            "ProxyWebsocketHandoff",
            "RequestReadTimeout",
            "Timeout",
            "ProxyTimeout",
            "ProxyWebsocketIdleTimeout",
            "LoadModule",
            "ErrorLog",
            "PidFile",
        ),
        loaded,
        host,
    )
    machine, glibc = platform_of(host)
    report = Report(
        control=str(control),
        version=version,
        vendor=info.vendor,
        built=info.built,
        mmn=info.mmn,
        mpm=info.mpm,
        threaded=info.threaded,
        server_root=str(server_root),
        config_file=str(config_file),
        pid_file=str(_under(server_root, run_cfg.get("PidFile") or defines.get("DEFAULT_PIDLOG", "logs/httpd.pid"))),
        error_log=str(_under(server_root, run_cfg["Main ErrorLog"])) if run_cfg.get("Main ErrorLog") else None,
        conf_root=str(conf_root),
        distro=distro,
        modules_dir=_modules_dir(directives["LoadModule"], server_root),
        loaded_modules=loaded,
        proxy_modules=sorted(m.removesuffix("_module") for m in loaded if m.startswith("proxy")),
        reqtimeout=directives["RequestReadTimeout"],
        config_files=includes,
        package=owning_package(control, host),
        host=host.name if host.remote else None,
        machine=machine,
        glibc=str(glibc) if glibc else None,
    )
    if report.vendor is None and report.package:  # some vendor builds say "(Unix)"
        report.vendor = report.package.split()[0]
    if report.error_log is None and directives["ErrorLog"]:  # 2.2: no DUMP_RUN_CFG
        log = directives["ErrorLog"][0].strip('"')
        report.error_log = None if log.startswith(("|", "syslog")) else str(_under(server_root, log))
    if not run_cfg.get("PidFile") and directives["PidFile"]:
        report.pid_file = str(_under(server_root, directives["PidFile"][-1].strip('"')))
    report.timeout = {"Timeout": (directives["Timeout"] or ["60 (default)"])[-1]}
    for name in ("ProxyTimeout", "ProxyWebsocketIdleTimeout"):
        if directives[name]:
            report.timeout[name] = directives[name][-1]
    _workers(report, directives, max_websockets, http_reserve, host)
    apxs_path = find_apxs(apxs, host)
    if apxs_path:
        report.apxs = inspect_apxs(apxs_path, version, report.mmn, host)
    _advise(report)
    if module is not None:
        verdict = check_module(report, module)
        report.module = verdict.to_dict()
        if not verdict.loads:
            report.warnings.append(f"{module} would not load here; build one that does: {verdict.build}")
    if modules.complaint is not None:  # -M parses the whole config: a broken one tells us nothing about modules
        report.warnings.insert(0, f"`{control} -M` failed ({modules.complaint}): fix the config first")
    return report


def owning_package(path: Path, host: Transport = LOCAL) -> str | None:
    """ "name version" of the dpkg or rpm package that installed path, or None (built from source, or a
    wrapper of ours). A distribution's httpd is not the vanilla release of its number: this says whose it is."""
    if host.which("dpkg-query"):
        found = host.run(["dpkg", "-S", str(path)])
        name = found.stdout.split(":", 1)[0].strip() if found.returncode == 0 else ""
        if name and " " not in name and "," not in name:
            version = host.run(["dpkg-query", "-W", "-f", "${Version}", name]).stdout.strip()
            return f"{name} {version}".strip()
    if host.which("rpm"):
        found = host.run(["rpm", "-qf", "--qf", "%{NAME} %{VERSION}-%{RELEASE}", str(path)])
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip()
    return None


def _under(server_root: Path, name: str) -> Path:
    return Path(name) if name.startswith("/") else server_root / name


def _modules_dir(loads: list[str], server_root: Path) -> str | None:
    """The directory most LoadModule lines point into."""
    dirs: dict[str, int] = {}
    for value in loads:
        parts = value.split(None, 1)
        if len(parts) != 2:
            continue
        so = Path(parts[1].strip('"'))
        so = so if so.is_absolute() else server_root / so
        dirs[str(so.parent)] = dirs.get(str(so.parent), 0) + 1
    return max(dirs, key=lambda d: dirs[d]) if dirs else None


def _workers(
    report: Report,
    directives: dict[str, list[str]],
    wanted: int | None = None,
    reserve: int | None = None,
    host: Transport = LOCAL,
) -> None:
    family = Version.parse(report.version).family
    if report.mpm not in capacity.MPMS:
        return
    settings = mpm_settings(directives, family, report.mpm, running_open_files(report.pid_file, host))
    current = capacity.compute(settings)
    report.max_workers, report.max_workers_source = current.workers, current.configured
    report.warnings += [f"httpd adjusts the MPM settings: {note}" for note in current.adjustments]
    sized = apachews_sizing(report.config_files, host)
    data: dict[str, object] = current.to_dict()
    lines: list[tuple[str, str]] = [("workers", current.summary())]
    held = "a thread" if current.threaded else "a whole process"
    threshold = reserve or capacity.MIN_HTTP_RESERVE
    if current.handoff:
        files = f"open files {current.open_files}" + ("" if current.open_files_known else ", assumed")
        lines.append(
            (
                "websockets",
                f"ProxyWebsocketHandoff On: {'a child' if current.threaded else 'the tunnel keeper'}'s event loop "
                f"holds {current.loop_tunnels_per_child} tunnels ({files}), more hold a worker each",
            )
        )
    else:
        lines.append(
            (
                "websockets",
                f"each open WebSocket holds {held}: {current.workers} take them all and plain HTTP stops; "
                f"{current.websockets_leaving(threshold)} leave {threshold} for HTTP",
            )
        )
    if wanted is None and sized is not None and sized.get("websockets", "").isdigit():
        wanted = int(sized["websockets"])  # what the admin sized the server for with apachews
        lines.append(("sized", f"by apachews for {wanted} WebSockets ({sized['file']})"))
    if wanted is not None:
        left = current.http_left(wanted)
        data.update(websockets=wanted, http_left=left, http_threshold=threshold)
        held_now = current.held_workers(wanted)
        if left >= threshold:
            lines.append(("wanted", f"{wanted} WebSockets leave {left} workers for plain HTTP"))
        else:
            if left < 0:
                said = (
                    f"{wanted} WebSockets need {held_now} workers, there are {current.workers}: plain HTTP stops "
                    f"answering and {-left} WebSockets wait too"
                )
            elif left == 0:
                said = f"{wanted} WebSockets take all {current.workers} workers: plain HTTP stops answering"
            else:
                said = (
                    f"{wanted} WebSockets hold {held_now} of the {current.workers} workers: only {left} left for "
                    f"plain HTTP (fewer than {threshold})"
                )
            lines.append(("wanted", said))
            report.warnings.append(f"{said}; size the MPM: apachews config generic --max-websockets {wanted}")
        try:
            sizing = capacity.size(current, wanted, reserve, handoff=current.handoff)
        except BadInput as error:
            report.warnings.append(f"cannot size for {wanted} WebSockets: {error.message} ({error.hint})")
        else:
            data["sizing"] = sizing.to_dict()
            files = (
                f"open files {sizing.open_files}"
                if sizing.open_files_raise
                else f"open files: {capacity.DEFAULT_OPEN_FILES} is enough"
            )
            settings = ", ".join(f"{name} {value}" for name, value in sizing.directives())
            lines.append(("sizing", f"{wanted} + {sizing.http_reserve} for HTTP: {settings}; {files}"))
    elif not current.handoff:
        report.warnings.append(
            f"{current.workers} open WebSockets take every worker and plain HTTP on the whole server stops answering "
            "(Apache has no per-route limit): check your need with doctor --max-websockets N, size the MPM with "
            "apachews config generic --max-websockets N"
        )
    report.capacity, report.capacity_lines = data, lines


def _advise(report: Report) -> None:
    ctl = f" --apachectl {report.control}" + (f" --host {report.host}" if report.host else "")
    version = Version.parse(report.version)
    has_none = version < Version(2, 4, 5)
    try:
        release = catalogue.load().get(report.version)
        style = release.tunnelling
        report.tunnelling = str(style)  # the description ("mod_proxy_http upgrade=websocket", ...)
        has_none = release.needs_backport
        # The catalogue's default style: the apachews module where there is no stock one, or it is unusable.
        needs_module = has_none or getattr(style, "value", None) == "apachews"
    except BadInput:  # a version newer than the catalogue: what the newest knows holds
        needs_module = has_none
        report.tunnelling = "mod_proxy_http upgrade=websocket" if not needs_module else "apachews module"
    apxs_ok = report.apxs is not None and report.apxs.matches
    build = (
        f"apachews build --apxs {report.apxs.path}"
        if apxs_ok and report.apxs
        else f"apachews build --apache {report.version}"
        + ("   (vendor build: better install its dev package and use --apxs)" if report.vendor else "")
    )
    module_so = (
        f"dist/apxs-{report.apxs.version}/modules/mod_proxy_wstunnel.so"
        if apxs_ok and report.apxs
        else f"dist/httpd-{report.version}/modules/mod_proxy_wstunnel.so"
    )
    if needs_module:
        report.needs = (
            f"the apachews mod_proxy_wstunnel (Apache {report.version} "
            + ("has none" if has_none else "has one that fails under load")
            + "), built against this server's "
            + ("headers with its apxs" if apxs_ok else "version")
        )
        if report.vendor:
            report.warnings.append(
                f"{report.vendor}'s {report.version} carries backports inside mod_proxy: build with its own headers "
                "(apache2-dev / httpd-devel and --apxs), not vanilla sources"
            )
        report.next_commands = [
            build,
            f"apachews install generic{ctl} --module {module_so} --dry-run",
            f"apachews install generic{ctl} --module {module_so}",
            f"apachews live-verify{ctl}",
        ]
    else:
        report.needs = f"nothing to build: {report.tunnelling} (stock modules)"
        report.next_commands = [
            f"apachews install generic{ctl} --dry-run",
            f"apachews install generic{ctl}",
            f"apachews live-verify{ctl}",
        ]
    if Version(2, 4, 6) <= version <= Version(2, 4, 46):
        report.warnings.append(
            "CVE-2019-17567: mod_proxy_wstunnel in 2.4.6-2.4.46 tunnels requests the backend did not upgrade; "
            "upgrade to 2.4.48+ unless your vendor backported the fix, or use the apachews module"
        )
    if report.mmn is None:
        report.warnings.append("no module magic number in -V output")
    if report.apxs and not report.apxs.matches:
        report.warnings.append(f"{report.apxs.path}: {report.apxs.detail}; a module built with it may not load")
    if not any(m in report.loaded_modules for m in ("proxy_module",)):
        report.warnings.append("mod_proxy is not loaded: install enables it")


def assumed_version() -> str:
    """What to render for when there is no server and no --apache: the newest released 2.4."""
    return str([r for r in catalogue.load().all("2.4") if r.released][-1].version)


@dataclass(frozen=True)
class Defaults:
    """What other commands take as defaults: version, distribution layout, MPM (and where they came from)."""

    apache: str
    distro: str
    mpm: str
    source: str  # the server's control ("host:control" over SSH), or "assumed"
    control: str | None = None  # its control command on the server

    def note(self) -> str:
        if self.source == "assumed":
            return f"no Apache found here: assumed {self.apache} (pass --apache V for yours)"
        return f"for the server at {self.source}: Apache {self.apache}, {self.distro} layout, {self.mpm} MPM"


def server_defaults(
    apachectl: str | Path | None = None, config_file: str | Path | None = None, host: Transport = LOCAL
) -> Defaults:
    """The running server's version, layout and MPM; without a server, the assumed newest 2.4."""
    try:
        control = find_control(apachectl, host)
        server = Installation.on(control, host)
        info = server.info()
    except (BadInput, OSError, subprocess.SubprocessError):
        if apachectl is not None or host.remote:
            raise
        return Defaults(assumed_version(), "generic", "event", "assumed")
    try:
        server_root, main_file, _, _ = locate_config(server, config_file, host)
        distro, _ = detect_distro(server_root, main_file, host)
    except BadInput:
        if apachectl is not None or config_file is not None or host.remote:
            raise
        distro = "generic"  # the version and MPM are still this server's
    where = f"{host.name}:{control}" if host.remote else str(control)
    return Defaults(info.version, distro, info.mpm, where, str(control))


def server_settings(
    apachectl: str | Path | None = None, config_file: str | Path | None = None, host: Transport = LOCAL
) -> capacity.Settings:
    """The MPM settings of the server behind `apachectl` (or this machine's): what `config --max-websockets`
    sizes from. Raises BadInput when there is no server or its MPM is not one of prefork, worker, event."""
    control = find_control(apachectl, host)
    server = Installation.on(control, host)
    info = server.info()
    version, mpm, defines = info.version, info.mpm, info.defines
    if mpm not in capacity.MPMS:
        raise BadInput(f"{control} runs the {mpm} MPM, not one apachews sizes", hint="pass --apache V and --mpm M")
    server_root, _, run_cfg, includes = locate_config(server, config_file, host)
    loaded = server.modules().loaded
    directives = scan_directives(includes, (*MPM_DIRECTIVES, "ProxyWebsocketHandoff", "PidFile"), loaded, host)
    default_pid = defines.get("DEFAULT_PIDLOG", "logs/httpd.pid")
    pid_file = run_cfg.get("PidFile") or (directives["PidFile"] or [default_pid])[-1]
    open_files = running_open_files(_under(server_root, pid_file.strip('"')), host)
    return mpm_settings(directives, Version.parse(version).family, mpm, open_files)
