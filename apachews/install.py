"""`apachews install` / `uninstall`: a rendering (and the apachews module) into the running server's layout.

install: read the server (doctor), render the preset for it, place the files the distribution's way
(distros.place), `apachectl -t`, and only then a graceful reload. Any failure puts every file back byte for
byte (the server keeps running the old config: it was never reloaded onto a bad one). A manifest in the
state directory records exactly what was changed, so `uninstall` removes that and nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apachews import config, distros, doctor, transaction
from apachews.distros import placement
from apachews.distros.placement import apply as apply_plan
from apachews.errors import BadInput, JobFailed
from apachews.progress import Progress
from apachews.transport import LOCAL, Transport

STATE_ENV = "APACHEWS_STATE_DIR"
DEFAULT_STATE = Path("/var/lib/apachews")
RELOAD_TIMEOUT = 20.0


def module_style() -> str:
    """--prefer value that routes WebSockets through a loaded mod_proxy_wstunnel (ours or stock): "apachews"
    where config knows that style (it also covers releases without a stock module), else "wstunnel"."""
    return "apachews" if "apachews" in config.PREFER else "wstunnel"


def state_dir(explicit: Path | None = None) -> Path:
    """Where install manifests live (outside the server's tree, so uninstall leaves the tree as it was)."""
    return Path(explicit or os.environ.get(STATE_ENV) or DEFAULT_STATE)


# -- the server's control command ----------------------------------------------------------------------------
@dataclass
class Control:
    """apachectl for one server: config test, graceful reload (waited for), is it running."""

    path: Path
    pid_file: Path
    error_log: Path | None
    host: Transport = LOCAL

    @classmethod
    def of(cls, report: doctor.Report, host: Transport = LOCAL) -> Control:
        log = Path(report.error_log) if report.error_log else None
        return cls(Path(report.control), Path(report.pid_file), log, host)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return doctor.run_control(self.path, *args, timeout=timeout, host=self.host)

    def config_test(self) -> tuple[bool, str]:
        result = self.run("-t")
        return result.returncode == 0, (result.stdout + result.stderr).strip()

    def pid(self) -> int | None:
        """The running parent's pid, or None. An empty pid file is one being rewritten: read it again."""
        for _ in range(20):
            try:
                pid = int(self.host.read_text(self.pid_file).strip())
            except OSError:
                return None
            except ValueError:
                time.sleep(0.05)
                continue
            if self.host.remote:
                return pid if self.host.test("-d", f"/proc/{pid}") else None
            return pid if _alive(pid) else None
        return None

    def _log_size(self) -> int:
        try:
            return self.error_log.stat().st_size if self.error_log else 0
        except OSError:
            return 0

    def graceful(self) -> None:
        """Graceful reload, returning once the parent has re-read its config (the error log says so)."""
        parent = self.pid()
        if parent is None:
            raise JobFailed(f"the server is not running (no live pid in {self.pid_file})", hint="start it first")
        offset = self._log_size()
        result = self.run("-k", "graceful")
        if result.returncode != 0:
            raise JobFailed("graceful reload failed", hint=(result.stdout + result.stderr).strip())
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while time.monotonic() < deadline:
            # The parent keeps its pid across a graceful restart; its pid file is rewritten meanwhile (2.2
            # truncates it first), so watch the process, not the file.
            if not _alive(parent):
                raise JobFailed("the server exited during the reload", hint=f"see {self.error_log}")
            if self.error_log is None:  # logs to syslog or a pipe: nothing to watch
                time.sleep(1)
                return
            with self.error_log.open("rb") as log:
                log.seek(offset)
                if b"resuming normal operations" in log.read():  # AH00489 (2.4), also 2.2's wording
                    return
            time.sleep(0.05)
        raise JobFailed(f"no sign of the reload in {self.error_log} after {RELOAD_TIMEOUT:.0f} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def no_interrupts() -> Iterator[None]:
    """Hold Ctrl-C while putting a server's config back: a half-restored tree is worse than a late exit."""
    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


# -- install ---------------------------------------------------------------------------------------------------
@dataclass
class InstallResult:
    preset: str
    server: str
    apache: str
    distro: str
    plan: list[str]
    dry_run: bool
    reloaded: bool = False
    manifest: str | None = None
    notes: list[str] = field(default_factory=list)
    rendering: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "server": self.server,
            "apache": self.apache,
            "distro": self.distro,
            "plan": self.plan,
            "dry_run": self.dry_run,
            "reloaded": self.reloaded,
            "manifest": self.manifest,
            "notes": self.notes,
            "rendering": self.rendering,
        }

    def text(self) -> str:
        head = (
            f"Plan for Apache {self.apache} ({self.distro} layout) at {self.server}:"
            if self.dry_run
            else f"Installed the {self.preset} preset into Apache {self.apache} ({self.distro} layout):"
        )
        lines = [head, *(f"  {step}" for step in self.plan)]
        if self.dry_run:
            lines += [
                "  then: apachectl -t, and only if it passes, apachectl -k graceful",
                "(dry run: nothing changed)",
            ]
        else:
            lines.append("config test passed; " + ("reloaded gracefully" if self.reloaded else "server not running"))
            lines.append(f"manifest: {self.manifest} (apachews uninstall {self.preset} removes exactly this)")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def loaded_from(config_files: Sequence[str], module: str, host: Transport = LOCAL) -> str | None:
    """file:line of the first active `LoadModule <module>` in the server's config files."""
    for name in config_files:
        try:
            lines = host.read_text(name).splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            words = line.split()
            if len(words) >= 2 and words[0].lower() == "loadmodule" and words[1] == module:
                return f"{name}:{number}"
    return None


def refuse_unloadable(report: doctor.Report, module: Path) -> None:
    """BadInput, before anything changes, when the server could not load `module` (glibc, architecture, MMN),
    naming the build that would."""
    verdict = doctor.check_module(report, module)
    if not verdict.loads:
        where = report.host or report.control
        raise BadInput(
            f"{module} would not load into Apache {report.version} at {where}: {'; '.join(verdict.reasons)}",
            hint=f"build one that does: {verdict.build} (nothing was changed)",
        )


def manifest_path(states: Path, conf_root: str, preset: str) -> Path:
    tag = hashlib.sha256(conf_root.encode()).hexdigest()[:12]
    return states / f"install-{preset}-{tag}.json"


def _write_manifest(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(staged, path)


def install(
    preset: str,
    *,
    apachectl: str | Path | None = None,
    config_file: Path | None = None,
    module: Path | None = None,
    modules_dir: Path | None = None,
    backends: Sequence[str] = (),
    path: str | None = None,
    allow: Sequence[str] = (),
    prefer: str | None = None,
    states: Path | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    host: Transport = LOCAL,
) -> InstallResult:
    """Install `preset` into the server behind `apachectl` (on this machine, or the one `host` reaches)."""
    progress = progress or Progress()
    progress.step("reading the server (doctor)")
    report = doctor.examine(apachectl, config_file=config_file, host=host)
    if module is not None:
        refuse_unloadable(report, module)
        prefer = prefer or module_style()  # a given module must be the one tunnelling
    rendering = config.render(
        preset,
        apache=report.version,
        distro=report.distro,
        backends=backends,
        path=path,
        allow=allow,
        prefer=prefer,
    )
    if module is not None and report.distro in ("generic", "gentoo"):
        # Their main config loads modules before any file we add: a mod_proxy_wstunnel it loads would win.
        loaded_by = loaded_from(report.config_files, "proxy_wstunnel_module", host)
        if loaded_by:
            raise BadInput(
                f"{loaded_by} already loads a mod_proxy_wstunnel, which would be used instead of {module}",
                hint="comment out that LoadModule line (install then loads the given module), "
                "or leave out --module to keep the loaded one",
            )
    conf_root = Path(report.conf_root)
    modules_dir = Path(modules_dir) if modules_dir else Path(report.modules_dir) if report.modules_dir else None
    layout = distros.get(report.distro)
    if host.remote:
        remote = RemoteInstall(host, report, preset, rendering, module, modules_dir, states)
        return remote.install(dry_run, progress)
    # generic layout: an Include line at the end of the main config file enables the files.
    actions, notes = layout.plan(
        rendering, conf_root, module_so=module, modules_dir=modules_dir, main_config=Path(report.config_file)
    )
    result = InstallResult(
        preset,
        report.control,
        report.version,
        report.distro,
        [action.describe() for action in actions],
        dry_run,
        notes=notes,
        rendering=rendering.to_dict(),
    )
    manifest = manifest_path(state_dir(states), str(conf_root), preset)
    if dry_run:
        return result
    if manifest.exists():
        raise BadInput(f"{preset} is already installed here ({manifest})", hint=f"apachews uninstall {preset} first")
    if not actions:
        raise BadInput("nothing to install: every file is already in place")
    control = Control.of(report)
    ok, output = control.config_test()
    if not ok:  # we could not tell our change from an existing fault
        raise BadInput("the server's config fails apachectl -t before any change", hint=output[-2000:])
    running = control.pid() is not None
    progress.step(f"placing {len(actions)} files and links")
    placement = apply_plan(conf_root, actions, notes)
    reloading = False
    try:
        progress.step("apachectl -t")
        ok, output = control.config_test()
        if not ok:
            raise JobFailed("apachectl -t rejected the new config: every file was put back", hint=output[-2000:])
        _write_manifest(
            manifest,
            {
                "preset": preset,
                "server": report.control,
                "apache": report.version,
                "distro": report.distro,
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "placement": placement.to_dict(),
            },
        )
        if running:
            progress.step("graceful reload")
            reloading = True
            control.graceful()
    except BaseException:
        with no_interrupts():
            distros.unplace(placement, force=True)
            manifest.unlink(missing_ok=True)
            if reloading and control.pid() is not None:
                control.graceful()  # back onto the old config, in case the new one got loaded
        raise
    result.reloaded = running
    result.manifest = str(manifest)
    return result


# -- uninstall -------------------------------------------------------------------------------------------------
@dataclass
class UninstallResult:
    preset: str
    removed: list[str]
    restored: list[str]
    reloaded: bool
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "removed": self.removed,
            "restored": self.restored,
            "reloaded": self.reloaded,
            "dry_run": self.dry_run,
        }

    def text(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {path}" for path in self.removed]
        lines += [f"{'would re-enable' if self.dry_run else 're-enabled'} {path}" for path in self.restored]
        if not self.dry_run:
            lines.append("config test passed; " + ("reloaded gracefully" if self.reloaded else "server not running"))
        return "\n".join(lines)


def installed(states: Path | None = None) -> list[dict[str, Any]]:
    found = []
    for manifest in sorted(state_dir(states).glob("install-*.json")):
        data = json.loads(manifest.read_text())
        data["manifest"] = str(manifest)
        found.append(data)
    return found


def uninstall(
    preset: str | None = None,
    *,
    apachectl: str | Path | None = None,
    config_file: Path | None = None,
    states: Path | None = None,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    host: Transport = LOCAL,
) -> UninstallResult:
    progress = progress or Progress()
    report = doctor.examine(apachectl, config_file=config_file, host=host)
    if host.remote:
        return RemoteInstall(host, report, preset or "", None, None, None, states).uninstall(dry_run, force, progress)
    here = [m for m in installed(states) if m["placement"]["conf_root"] == report.conf_root]
    chosen = [m for m in here if preset is None or m["preset"] == preset]
    if not chosen:
        names = ", ".join(m["preset"] for m in here) or "none"
        raise BadInput(f"no apachews install{f' of {preset}' if preset else ''} on this server (installed: {names})")
    if len(chosen) > 1:
        raise BadInput("several presets are installed here", hint="name one: " + ", ".join(m["preset"] for m in chosen))
    entry = chosen[0]
    placement = distros.Placement.from_dict(entry["placement"])
    removed = [str(p) for p in placement.paths] + [f"the Include lines at the end of {p}" for p in placement.appended]
    restored = [c["path"] for c in placement.changes if c["kind"] == "unlink"]
    result = UninstallResult(entry["preset"], removed, restored, False, dry_run)
    if dry_run:
        return result
    control = Control.of(report)
    running = control.pid() is not None
    saved = _save(placement)
    progress.step(f"removing {len(removed)} files and links")
    distros.unplace(placement, force=force)
    reloading = False
    try:
        ok, output = control.config_test()
        if not ok:
            raise JobFailed("apachectl -t fails without the apachews files: they were put back", hint=output[-2000:])
        if running:
            progress.step("graceful reload")
            reloading = True
            control.graceful()
    except BaseException:
        with no_interrupts():
            _restore(saved)
            if reloading and control.pid() is not None:
                control.graceful()
        raise
    Path(entry["manifest"]).unlink()
    result.reloaded = running
    return result


def _save(placement: distros.Placement) -> list[tuple[dict[str, Any], bytes | str | None]]:
    saved: list[tuple[dict[str, Any], bytes | str | None]] = []
    for change in placement.changes:
        path = Path(change["path"])
        if change["kind"] == "unlink":
            saved.append((change, None))
        elif path.is_symlink():
            saved.append((change, os.readlink(path)))
        elif path.exists():
            saved.append((change, path.read_bytes()))
    return saved


def _restore(saved: list[tuple[dict[str, Any], bytes | str | None]]) -> None:
    """Put back what uninstall removed (and take away the links it re-created)."""
    for change, content in saved:
        path = Path(change["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        if change["kind"] == "unlink":
            if path.is_symlink():
                path.unlink()
        elif isinstance(content, str) and not os.path.lexists(path):
            os.symlink(content, path)
        elif change["kind"] == "append" and isinstance(content, bytes):
            path.write_bytes(content)  # the main config as it was, our Include lines included
        elif isinstance(content, bytes) and not os.path.lexists(path):
            path.write_bytes(content)
            path.chmod(0o644)


# -- over SSH: the plan made on a mirror of the server's files, applied there as one transaction ----------------
def _chosen(entries: list[dict[str, Any]], conf_root: str, preset: str | None, where: str) -> dict[str, Any]:
    """The one install manifest of `preset` (or the only one) for the server whose config root is conf_root."""
    here = [m for m in entries if m["placement"]["conf_root"] == conf_root]
    chosen = [m for m in here if not preset or m["preset"] == preset]
    if not chosen:
        names = ", ".join(m["preset"] for m in here) or "none"
        raise BadInput(f"no apachews install{f' of {preset}' if preset else ''} {where} (installed: {names})")
    if len(chosen) > 1:
        raise BadInput("several presets are installed here", hint="name one: " + ", ".join(m["preset"] for m in chosen))
    return chosen[0]


def with_parents(paths: Sequence[Path], root: Path) -> list[Path]:
    """paths and each of their ancestors below root (the directories a placement may create)."""
    found: dict[Path, None] = {}
    for path in paths:
        for parent in reversed(path.parents):
            if parent != root and root in parent.parents:
                found[parent] = None
        found[path] = None
    return list(found)


@dataclass
class RemoteInstall:
    """install / uninstall on a server reached over SSH: the same plan and placement code as on this machine,
    run on a mirror of the server's files; what changed there goes to the server as one transaction
    (transaction.run) with the manifest among its files, so uninstall works from any machine."""

    host: Transport
    report: doctor.Report
    preset: str
    rendering: config.Rendering | None
    module: Path | None
    modules_dir: Path | None
    states: Path | None

    @property
    def state_dir(self) -> str:
        return str(self.states or DEFAULT_STATE)  # on the server: this machine's environment says nothing of it

    def _run(self, ops: list[transaction.Op], progress: Progress) -> bool:
        report = self.report
        with transaction.run(
            self.host,
            self.state_dir,
            ops,
            control=report.control,
            pid_file=report.pid_file,
            error_log=report.error_log,
            progress=progress,
        ) as change:
            change.commit()
        return change.reloaded

    def _config_test(self) -> None:
        ok, output = Control.of(self.report, self.host).config_test()
        if not ok:
            raise BadInput("the server's config fails apachectl -t before any change", hint=output[-2000:])

    def install(self, dry_run: bool, progress: Progress) -> InstallResult:
        report, host, rendering = self.report, self.host, self.rendering
        assert rendering is not None
        conf_root = report.conf_root
        layout = distros.get(report.distro)
        modules = str(self.modules_dir or layout.default_modules_dir(Path(conf_root)))
        manifest = str(manifest_path(Path(self.state_dir), conf_root, self.preset))
        fetch = [conf_root, report.config_file, f"{modules}/{placement.MODULE_FILE}", manifest]
        if not dry_run:
            self._recover(progress)
        progress.step(f"reading {conf_root} on {host.name}")
        with transaction.mirrored(host, fetch) as mirror:
            mirror.local(modules).mkdir(parents=True, exist_ok=True)
            actions, notes = layout.plan(
                rendering,
                mirror.local(conf_root),
                module_so=self.module,
                modules_dir=mirror.local(modules),
                main_config=mirror.local(report.config_file),
            )
            actions = [dataclasses.replace(a, text=mirror.unmirror(a.text)) if a.text else a for a in actions]
            result = InstallResult(
                self.preset,
                f"{host.name}:{report.control}",
                report.version,
                report.distro,
                [mirror.unmirror(action.describe()) for action in actions],
                dry_run,
                notes=[mirror.unmirror(note) for note in notes],
                rendering=rendering.to_dict(),
            )
            if dry_run:
                return result
            if mirror.local(manifest).exists():
                raise BadInput(
                    f"{self.preset} is already installed on {host.name} ({manifest})",
                    hint=f"apachews uninstall {self.preset} --host {host.name} first",
                )
            if not actions:
                raise BadInput("nothing to install: every file is already in place")
            self._config_test()
            touched = with_parents([a.path for a in actions], mirror.root)
            before = mirror.states([mirror.remote(path) for path in touched])
            placed = apply_plan(mirror.local(conf_root), actions, notes)
            record = {
                "preset": self.preset,
                "server": report.control,
                "apache": report.version,
                "distro": report.distro,
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "placement": json.loads(mirror.unmirror(json.dumps(placed.to_dict()))),
            }
            ops = mirror.ops(before)
            data = (json.dumps(record, indent=2) + "\n").encode()
            ops.append(transaction.Op(manifest, transaction.State("none"), transaction.State("file", data, 0o600)))
            progress.step(f"changing {len(ops)} paths on {host.name} (one transaction)")
            result.reloaded = self._run(ops, progress)
        result.manifest = f"{host.name}:{manifest}"
        return result

    def _recover(self, progress: Progress) -> None:
        for stage in transaction.recover(self.host, self.state_dir):
            progress.step(f"rolled back an unfinished change on {self.host.name} ({stage})")

    def uninstall(self, dry_run: bool, force: bool, progress: Progress) -> UninstallResult:
        report, host = self.report, self.host
        if not dry_run:
            self._recover(progress)
        entries = []
        for name in host.glob(f"{self.state_dir}/install-*.json"):
            entries.append({**json.loads(host.read_text(name)), "manifest": name})
        entry = _chosen(entries, report.conf_root, self.preset, f"on {host.name}")
        record = distros.Placement.from_dict(entry["placement"])
        removed = [str(p) for p in record.paths] + [f"the Include lines at the end of {p}" for p in record.appended]
        restored = [c["path"] for c in record.changes if c["kind"] == "unlink"]
        result = UninstallResult(entry["preset"], removed, restored, False, dry_run)
        if dry_run:
            return result
        paths = [c["path"] for c in record.changes] + record.created_dirs
        with transaction.mirrored(host, [report.conf_root, *paths, entry["manifest"]]) as mirror:
            before = mirror.states(paths)
            local = distros.Placement(
                mirror.local(record.conf_root),
                [{**c, "path": str(mirror.local(c["path"]))} for c in record.changes],
                [str(mirror.local(d)) for d in record.created_dirs],
                record.notes,
            )
            distros.unplace(local, force=force)
            ops = mirror.ops(before)
            manifest = mirror.states([entry["manifest"]])[entry["manifest"]]
            ops.append(transaction.Op(entry["manifest"], manifest, transaction.State("none")))
            progress.step(f"changing {len(ops)} paths on {host.name} (one transaction)")
            try:
                result.reloaded = self._run(ops, progress)
            except JobFailed as error:
                if "apachectl -t rejected" in error.message:
                    raise JobFailed(
                        "apachectl -t fails without the apachews files: they were put back", hint=error.hint
                    ) from None
                raise
        return result
