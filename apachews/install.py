"""`apachews install` / `uninstall`: a rendering (and the apachews module) into the running server's layout,
on this machine or on one reached over SSH, by the same code.

install: read the server (doctor), refuse a module it could not load, render the preset for it, plan the files
the distribution's way (distros layouts) on a mirror of the server's config tree (transaction.Mirror: a copy
on this machine), and send what changed there as one transaction that the server runs by itself
(transaction.run): every path backed up and journalled, `apachectl -t`, only then a graceful reload, kept
only on commit. Any failure, Ctrl-C or a dropped connection puts every file back byte for byte (and reloads
again if the new config was loaded). The manifest in the server's state directory is written in the same
transaction and records exactly what was changed, so `uninstall` (from any machine) removes that and
nothing else.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apachews import catalogue, config, distros, doctor, installation, transaction, tunnelling, vhosts
from apachews.distros import placement
from apachews.distros.placement import apply as apply_plan
from apachews.errors import BadInput, JobFailed
from apachews.progress import Progress
from apachews.serial import Serialised
from apachews.transport import LOCAL, Transport

STATE_ENV = "APACHEWS_STATE_DIR"
DEFAULT_STATE = Path("/var/lib/apachews")


def module_style() -> str:
    """--prefer value that routes WebSockets through a loaded mod_proxy_wstunnel (ours or stock): "apachews"
    where config knows that style (it also covers releases without a stock module), else "wstunnel"."""
    return "apachews" if "apachews" in config.PREFER else "wstunnel"


def state_dir(explicit: Path | None = None, host: Transport = LOCAL) -> Path:
    """Where install manifests live on the server (outside its tree, so uninstall leaves the tree as it was).
    This machine's environment names it only for this machine."""
    if host.remote:
        return Path(explicit or DEFAULT_STATE)
    return Path(explicit or os.environ.get(STATE_ENV) or DEFAULT_STATE)


# -- the server's control command ----------------------------------------------------------------------------
@dataclass
class Control:
    """apachectl for one server: config test, is it running (the reload is the transaction's)."""

    path: Path
    pid_file: Path
    error_log: Path | None
    host: Transport = LOCAL

    @classmethod
    def of(cls, report: doctor.Report, host: Transport = LOCAL) -> Control:
        log = Path(report.error_log) if report.error_log else None
        return cls(Path(report.control), Path(report.pid_file), log, host)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return installation.Installation.on(self.path, self.host).run(*args, timeout=timeout)

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
            return (
                pid
                if self.host.test("-d", f"/proc/{pid}") or self.host.run(["kill", "-0", str(pid)]).returncode == 0
                else None
            )
        return None


# -- install ---------------------------------------------------------------------------------------------------
@dataclass
class InstallResult(Serialised):
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
    diff: str = ""  # the unified diff of every file written or edited, in the server's paths
    vhost: dict[str, object] | None = None  # the VirtualHost the routes went into (None: server level)
    diff_shown: bool = False  # printed before the change was applied (install's show_diff): not again in text()

    _omit = ("diff_shown",)

    def text(self) -> str:
        head = (
            f"Plan for Apache {self.apache} ({self.distro} layout) at {self.server}:"
            if self.dry_run
            else f"Installed the {self.preset} preset into Apache {self.apache} ({self.distro} layout):"
        )
        lines = [head, *(f"  {step}" for step in self.plan)]
        if self.diff and not self.diff_shown:
            lines += ["", self.diff.rstrip("\n"), ""]
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


def unified_diff(ops: Sequence[transaction.Op]) -> str:
    """The unified diff (difflib) of the ops, in the server's paths: files written or edited as text; links,
    directories and binary files as one `#` line each (which patch(1) skips)."""

    def text(state: transaction.State) -> list[str] | None:
        if state.kind == "none":
            return []
        if state.kind != "file" or b"\0" in state.data:
            return None
        try:
            return state.data.decode().splitlines(keepends=True)
        except UnicodeDecodeError:
            return None

    out: list[str] = []
    for op in ops:
        before, after = text(op.before), text(op.after)
        if op.after.kind == "link":
            out.append(f"# link {op.path} -> {op.after.target}\n")
        elif op.before.kind == "link" and op.after.kind == "none":
            out.append(f"# remove link {op.path} (-> {op.before.target})\n")
        elif "dir" in (op.before.kind, op.after.kind):
            out.append(f"# {'make' if op.after.kind == 'dir' else 'remove'} directory {op.path}\n")
        elif before is None or after is None:
            size = len(op.after.data)
            out.append(
                f"# binary file {op.path} ({size} bytes)\n" if op.after.kind == "file" else f"# remove {op.path}\n"
            )
        else:
            old = "/dev/null" if op.before.kind == "none" else op.path
            new = "/dev/null" if op.after.kind == "none" else op.path
            for line in difflib.unified_diff(before, after, old, new):
                out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def tunnel_choice(version: str, mpm: str, module: Path | None) -> tuple[str | None, bool, list[str]]:
    """--prefer, handoff and what to tell the user, for a server whose release has no mod_proxy_http
    upgrade=websocket but a stock mod_proxy_wstunnel (2.4.5-2.4.46, e.g. 2.4.37 and 2.4.41 as shipped). With
    a module: the apachews module, with ProxyWebsocketHandoff where the MPM has threads. Without: the stock
    module, and why that may not do. Other releases: (None, False, []) (the usual choice)."""
    release = catalogue.load().get(version)
    if release.proxy_http_upgrade or not release.stock_wstunnel or not release.stock_wstunnel_usable:
        return None, False, []
    if module is None:
        cve = (
            " It tunnels whatever the backend answers, a refused handshake included (CVE-2019-17567)."
            if tunnelling.has_cve_2019_17567(release)
            else ""
        )
        return (
            None,
            False,
            [
                f"Apache {version} has no mod_proxy_http upgrade=websocket (2.4.47+): the routes use the stock "
                f"mod_proxy_wstunnel.{cve} The apachews module fixes that and can hand open tunnels to an event loop: "
                f"apachews build --apache {version} --backport, then install again with --module FILE."
            ],
        )
    handoff = mpm in ("worker", "event")
    why = (
        f"with ProxyWebsocketHandoff On (the {mpm} MPM): an open tunnel gives its worker back"
        if handoff
        else f"without ProxyWebsocketHandoff (the {mpm} MPM has no threads to give back)"
    )
    return (
        "apachews",
        handoff,
        [
            f"Apache {version} has no mod_proxy_http upgrade=websocket (2.4.47+), and its stock mod_proxy_wstunnel "
            f"tunnels refused handshakes (CVE-2019-17567): the routes use the apachews module {module.name}, {why}."
        ],
    )


def manifest_path(states: Path, conf_root: str, preset: str) -> Path:
    tag = hashlib.sha256(conf_root.encode()).hexdigest()[:12]
    return states / f"install-{preset}-{tag}.json"


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
    vhost: str | None = None,
    server_wide: bool = False,
    show_diff: Callable[[str], None] | None = None,
) -> InstallResult:
    """Install `preset` into the server behind `apachectl` (on this machine, or the one `host` reaches).

    vhost: NAME[:PORT], the server's own VirtualHost the routes go into (one Include line before its
    </VirtualHost>); without it, the only one of the preset's scheme (vhosts.choose), else server level.
    server_wide: server level whatever the vhosts. show_diff: called with the diff before the change is sent
    (the CLI prints it there, so it is seen also when apachectl -t then rejects the change)."""
    progress = progress or Progress()
    if vhost is not None and server_wide:
        raise BadInput("--vhost and --server-wide contradict each other", hint="give one of them")
    progress.step("reading the server (doctor)")
    report = doctor.examine(apachectl, config_file=config_file, host=host)
    handoff, choice_notes = False, list[str]()
    if module is not None:
        refuse_unloadable(report, module)
    if prefer is None:
        prefer, handoff, choice_notes = tunnel_choice(report.version, report.mpm, module)
    if module is not None:
        prefer = prefer or module_style()  # a given module must be the one tunnelling
    deployment = config.Deployment.of(
        preset,
        apache=report.version,
        distro=report.distro,
        backends=backends,
        path=path,
        allow=allow,
        prefer=prefer,
        handoff=handoff,
    )
    rendering = config.render(deployment)
    choice = vhosts.Choice(None)
    if not server_wide:
        progress.step("reading the VirtualHosts (apachectl -S)")
        where = f" on {host.name}" if host.remote else ""
        try:
            found = vhosts.read(report.control, host)
        except JobFailed as error:
            if vhost is not None:
                raise
            found = []  # today's server-level install; say why the vhosts were not looked at
            choice_notes.append(f"at server level: {error.message}")
        choice = vhosts.choose(found, vhost, where)
        if vhost is None and choice.vhost is not None and not placement.routes_separable(rendering):
            choice = vhosts.Choice(None)  # this layout keeps the routes in its own wrapper: server level
    if choice.vhost is not None:  # the rewrite rules are in the vhost: nothing left to include by hand
        rendering.notes = [note for note in rendering.notes if note != config.VHOST_REWRITE_NOTE]
    if module is not None and distros.get(report.distro).main_config_loads_modules:
        # Their main config loads modules before any file we add: a mod_proxy_wstunnel it loads would win.
        loaded_by = loaded_from(report.config_files, "proxy_wstunnel_module", host)
        if loaded_by:
            raise BadInput(
                f"{loaded_by} already loads a mod_proxy_wstunnel, which would be used instead of {module}",
                hint="comment out that LoadModule line (install then loads the given module), "
                "or leave out --module to keep the loaded one",
            )
    modules_dir = Path(modules_dir) if modules_dir else Path(report.modules_dir) if report.modules_dir else None
    staged = Staged(host, report, preset, rendering, module, modules_dir, states, choice.vhost, show_diff)
    result = staged.install(dry_run, progress)
    result.notes = [*([choice.note] if choice.note else []), *choice_notes, *result.notes]
    return result


# -- uninstall -------------------------------------------------------------------------------------------------
@dataclass
class UninstallResult(Serialised):
    preset: str
    removed: list[str]
    restored: list[str]
    reloaded: bool
    dry_run: bool

    def text(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {path}" for path in self.removed]
        lines += [f"{'would re-enable' if self.dry_run else 're-enabled'} {path}" for path in self.restored]
        if not self.dry_run:
            lines.append("config test passed; " + ("reloaded gracefully" if self.reloaded else "server not running"))
        return "\n".join(lines)


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
    """Remove exactly what install put into the server behind `apachectl` (its manifest says what)."""
    progress = progress or Progress()
    report = doctor.examine(apachectl, config_file=config_file, host=host)
    return Staged(host, report, preset or "", None, None, None, states, None).uninstall(dry_run, force, progress)


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
class Staged:
    """install / uninstall through a transport: the distribution's plan and placement run on a mirror of the
    server's files; what changed there goes to the server as one transaction (transaction.run) with the
    manifest among its files, so uninstall works from any machine."""

    host: Transport
    report: doctor.Report
    preset: str
    rendering: config.Rendering | None
    module: Path | None
    modules_dir: Path | None
    states: Path | None
    vhost: vhosts.VHost | None
    show_diff: Callable[[str], None] | None = None

    @property
    def state_dir(self) -> str:
        return str(state_dir(self.states, self.host))

    @property
    def where(self) -> str:
        return f" on {self.host.name}" if self.host.remote else " here"

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
        if not modules.startswith("/"):  # the generic layout's "modules", relative to ServerRoot
            modules = str(Path(report.server_root) / modules)
        manifest = str(manifest_path(Path(self.state_dir), conf_root, self.preset))
        fetch = [conf_root, report.config_file, f"{modules}/{placement.MODULE_FILE}", manifest]
        vhost = self.vhost
        if vhost is not None:
            fetch.append(vhost.real_file)
        if not dry_run:
            self._recover(progress)
        progress.step(f"reading {conf_root}" + (f" on {host.name}" if host.remote else ""))
        with transaction.mirrored(host, fetch) as mirror:
            mirror.local(modules).mkdir(parents=True, exist_ok=True)
            into: list[distros.Action] = []
            if vhost is not None:
                routes = mirror.local(vhosts.include_path(conf_root, self.preset))
                where = mirror.local(vhost.real_file)
                rendering, into = placement.into_vhost(rendering, routes, where, vhost.line - 1, vhost.close_line - 1)
            actions, notes = layout.plan(
                rendering,
                mirror.local(conf_root),
                module_so=self.module,
                modules_dir=mirror.local(modules),
                main_config=mirror.local(report.config_file),
            )
            actions = [dataclasses.replace(a, text=mirror.unmirror(a.text)) if a.text else a for a in [*actions, *into]]
            result = InstallResult(
                self.preset,
                f"{host.name}:{report.control}" if host.remote else report.control,
                report.version,
                report.distro,
                [mirror.unmirror(action.describe()) for action in actions],
                dry_run,
                notes=[mirror.unmirror(note) for note in notes],
                rendering=self.rendering.to_dict() if self.rendering else {},
                vhost=vhost.to_dict() if vhost else None,
            )
            if mirror.local(manifest).exists() and not dry_run:
                again = f" --host {host.name}" if host.remote else ""
                raise BadInput(
                    f"{self.preset} is already installed{self.where} ({manifest})",
                    hint=f"apachews uninstall {self.preset}{again} first",
                )
            if not actions and dry_run:
                return result
            if not actions:
                raise BadInput("nothing to install: every file is already in place")
            touched = with_parents([a.path for a in actions], mirror.root)
            before = mirror.states([mirror.remote(path) for path in touched])
            placed = apply_plan(mirror.local(conf_root), actions, notes)
            result.diff = mirror.unmirror(unified_diff(mirror.ops(before)))
            if dry_run:
                return result
            self._config_test()
            if self.show_diff is not None and result.diff:
                self.show_diff(result.diff)
                result.diff_shown = True
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
            progress.step(f"changing {len(ops)} paths{self.where} (one transaction)")
            result.reloaded = self._run(ops, progress)
        result.manifest = f"{host.name}:{manifest}" if host.remote else manifest
        return result

    def _recover(self, progress: Progress) -> None:
        for stage in transaction.recover(self.host, self.state_dir):
            progress.step(f"rolled back an unfinished change{self.where} ({stage})")

    def uninstall(self, dry_run: bool, force: bool, progress: Progress) -> UninstallResult:
        report, host = self.report, self.host
        if not dry_run:
            self._recover(progress)
        entries = []
        for name in host.glob(f"{self.state_dir}/install-*.json"):
            entries.append({**json.loads(host.read_text(name)), "manifest": name})
        entry = _chosen(entries, report.conf_root, self.preset, self.where.strip())
        record = distros.Placement.from_dict(entry["placement"])
        removed = [str(p) for p in record.paths] + [f"the Include lines at the end of {p}" for p in record.appended]
        removed += [f"the line {text.strip()} from {p}" for p, text in record.inserted]
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
            progress.step(f"removing {len(removed)} files and links{self.where} (one transaction)")
            try:
                result.reloaded = self._run(ops, progress)
            except JobFailed as error:
                if "apachectl -t rejected" in error.message:
                    raise JobFailed(
                        "apachectl -t fails without the apachews files: they were put back", hint=error.hint
                    ) from None
                raise
        return result
