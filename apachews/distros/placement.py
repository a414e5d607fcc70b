"""Putting a rendering into a server's configuration tree: the shared placement API.

`distros.place(rendering, conf_root, module_so=None)` writes a rendering's files where the distribution keeps them and
enables them the way its tools would (Debian: mods-enabled / conf-enabled symlinks like a2enmod / a2enconf),
as pure file operations: every change is planned first (`plan`, what `--dry-run` prints), then applied one
atomic step at a time (write beside, rename), and undone in reverse order if any step fails. The returned
`Placement` records exactly what changed (with checksums), so `unplace` removes exactly that and nothing else.

Used by `apachews install` on a live server and by verify to install into a throwaway copy of a tree.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apachews import vhosts
from apachews.errors import BadInput, JobFailed
from apachews.resources import template_environment
from apachews.serial import Serialised

if TYPE_CHECKING:
    from apachews.rendering import Rendering

MODULE_NAME = "proxy_wstunnel_apachews"
"""The apachews module never takes a packaged file's name: on disk it is mod_proxy_wstunnel_apachews.so (the
module inside is still proxy_wstunnel_module), so a distribution upgrade cannot overwrite it and uninstall
cannot remove a file the package manager owns. Debian enables it as mods-available/proxy_wstunnel_apachews.load,
which sorts after proxy.load (mod_proxy must be loaded first)."""
MODULE_FILE = f"mod_{MODULE_NAME}.so"
_LOAD_WSTUNNEL = re.compile(r"^(\s*LoadModule\s+proxy_wstunnel_module\s+)\S+", re.MULTILINE)


@dataclass(frozen=True)
class Action:
    """One file operation. kind: "write" (text), "copy" (source file), "link" (symlink to target),
    "unlink" (remove an existing symlink to target; undone by re-creating it), "append" (text at the end of
    an existing file, the server's main config: undone by taking exactly that text off again), "insert" (a
    line into an existing file before its 0-based line `line`, a vhost's </VirtualHost>: undone by taking
    exactly that line out again)."""

    kind: str
    path: Path
    text: str | None = None
    source: Path | None = None
    target: str | None = None
    why: str = ""
    line: int = 0

    def describe(self) -> str:
        if self.kind == "write":
            assert self.text is not None
            what = f"write {self.path} ({len(self.text.splitlines())} lines)"
        elif self.kind == "copy":
            what = f"copy {self.source} -> {self.path}"
        elif self.kind == "link":
            what = f"link {self.path} -> {self.target}"
        elif self.kind == "append":
            assert self.text is not None
            what = f"append to {self.path}: {' / '.join(self.text.strip().splitlines())}"
        elif self.kind == "insert":
            assert self.text is not None
            what = f"insert into {self.path} before line {self.line + 1}: {self.text.strip()}"
        else:
            what = f"unlink {self.path} (-> {self.target})"
        return f"{what}{f'  # {self.why}' if self.why else ''}"


@dataclass
class Placement(Serialised):
    """What `place` changed: created files/links with their sha256, removed links, created directories."""

    conf_root: Path
    changes: list[dict[str, Any]] = field(default_factory=list)
    created_dirs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        """Every file and link `place` created (not the links it removed, nor files it appended to)."""
        return [Path(c["path"]) for c in self.changes if c["kind"] not in ("unlink", "append", "insert")]

    @property
    def appended(self) -> list[Path]:
        """Existing files `place` added lines to (the main config, for the generic layout)."""
        return [Path(c["path"]) for c in self.changes if c["kind"] == "append"]

    @property
    def inserted(self) -> list[tuple[Path, str]]:
        """Existing files `place` put a line into (a vhost's Include), with that line."""
        return [(Path(c["path"]), c["text"]) for c in self.changes if c["kind"] == "insert"]

    def __iter__(self) -> Iterator[Path]:
        return iter(self.paths)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Placement:
        return cls(Path(data["conf_root"]), list(data["changes"]), list(data["created_dirs"]), list(data["notes"]))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_module_path(text: str, module_path: Path) -> str:
    """Point a rendering's `LoadModule proxy_wstunnel_module` line at the installed apachews module."""
    return _LOAD_WSTUNNEL.sub(lambda m: f'{m.group(1)}"{module_path}"', text)


def checked_files(rendering: Rendering) -> dict[str, str]:
    """The rendering's files, refusing names that could leave the config root."""
    for name in rendering.files:
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise BadInput(f"rendering file name {name!r} is not a relative path inside the config root")
    return dict(rendering.files)


def module_actions(rendering: Rendering, module_so: Path | None, modules_dir: Path) -> tuple[list[Action], Path | None]:
    """Copying the apachews module into the modules directory; returns the actions and its installed path."""
    if module_so is None:
        return [], None
    module_so = Path(module_so)
    if not module_so.is_file():
        raise BadInput(f"no module at {module_so}", hint="build it: apachews build --apxs $(which apxs)")
    if "proxy_wstunnel" not in rendering.modules:
        raise BadInput(
            f"the {rendering.preset} rendering for {rendering.apache} tunnels via {rendering.tunnelling}, "
            "so it would not use the module",
            hint="render with --prefer wstunnel to route WebSockets through mod_proxy_wstunnel",
        )
    installed = Path(modules_dir) / MODULE_FILE
    return [Action("copy", installed, source=module_so, why="the apachews mod_proxy_wstunnel")], installed


def write_actions(conf_root: Path, files: dict[str, str], module_path: Path | None) -> list[Action]:
    """Write each file under conf_root (LoadModule of mod_proxy_wstunnel pointed at the apachews module);
    a file already there with the same bytes is left alone, a different one is a conflict."""
    actions = []
    for name, text in files.items():
        if module_path is not None:
            text = rewrite_module_path(text, module_path)
        path = conf_root / name
        if path.is_file() and not path.is_symlink() and path.read_text(errors="replace") == text:
            continue
        actions.append(Action("write", path, text=text, why="apachews config"))
    return actions


# -- applying a plan ----------------------------------------------------------------------------------------
def check_plan(actions: Sequence[Action]) -> None:
    """Refuse before touching anything: no step may replace an existing file, every removed link must be there."""
    edits = ("unlink", "append", "insert")
    clashes = [str(a.path) for a in actions if a.kind not in edits and os.path.lexists(a.path)]
    if clashes:
        raise BadInput(
            f"would overwrite {', '.join(clashes)}",
            hint="an earlier install? remove it with `apachews uninstall`, or move these files away",
        )
    missing = [str(a.path) for a in actions if a.kind == "unlink" and not a.path.is_symlink()]
    missing += [str(a.path) for a in actions if a.kind in ("append", "insert") and not a.path.is_file()]
    if missing:
        raise BadInput(f"expected symlink(s) {', '.join(missing)} are gone")


def _stage_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.apachews-tmp")


def _do(action: Action) -> dict[str, Any]:
    path = action.path
    staged = _stage_beside(path)
    try:
        if action.kind == "write":
            assert action.text is not None
            staged.write_text(action.text)
            staged.chmod(0o644)
        elif action.kind == "copy":
            assert action.source is not None
            shutil.copyfile(action.source, staged)
            staged.chmod(0o644)
        elif action.kind == "link":
            assert action.target is not None
            os.symlink(action.target, staged)
        elif action.kind in ("append", "insert"):  # a file the admin owns: its digest before is kept for undo
            assert action.text is not None
            before = path.read_bytes()
            if action.kind == "append":
                after = before + action.text.encode()
            else:
                lines = before.splitlines(keepends=True)
                lines.insert(action.line, action.text.encode())
                after = b"".join(lines)
            staged.write_bytes(after)
            shutil.copymode(path, staged)
            os.replace(staged, path)
            return {
                "kind": action.kind,
                "path": str(path),
                "text": action.text,
                "sha256_before": hashlib.sha256(before).hexdigest(),
                "sha256": _sha256(path),
            }
        if action.kind == "unlink":
            target = os.readlink(path)
            path.unlink()
            return {"kind": "unlink", "path": str(path), "target": target}
        os.replace(staged, path)
    except BaseException:
        if os.path.lexists(staged):
            staged.unlink()
        raise
    change: dict[str, Any] = {"kind": action.kind, "path": str(path)}
    if action.kind == "link":
        change["target"] = action.target
    else:
        change["sha256"] = _sha256(path)
    return change


def strip_appended(path: Path, text: str) -> bool:
    """Take `text` off the end of path (atomically, mode kept); False if it does not end with it."""
    data, tail = path.read_bytes(), text.encode()
    if not data.endswith(tail):
        return False
    staged = _stage_beside(path)
    staged.write_bytes(data[: len(data) - len(tail)])
    shutil.copymode(path, staged)
    os.replace(staged, path)
    return True


def strip_inserted(path: Path, text: str) -> bool:
    """Take the one line `text` out of path (atomically, mode kept); False unless it is there exactly once."""
    lines = path.read_bytes().splitlines(keepends=True)
    ours = [index for index, line in enumerate(lines) if line == text.encode()]
    if len(ours) != 1:
        return False
    del lines[ours[0]]
    staged = _stage_beside(path)
    staged.write_bytes(b"".join(lines))
    shutil.copymode(path, staged)
    os.replace(staged, path)
    return True


def _undo(change: dict[str, Any]) -> None:
    path = Path(change["path"])
    if change["kind"] == "unlink":
        if not os.path.lexists(path):
            os.symlink(change["target"], path)
    elif change["kind"] == "append":
        strip_appended(path, change["text"])
    elif change["kind"] == "insert":
        strip_inserted(path, change["text"])
    elif os.path.lexists(path):
        path.unlink()


def _make_parents(path: Path, created: list[str]) -> None:
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir()
        created.append(str(directory))


def apply(conf_root: Path, actions: Sequence[Action], notes: Sequence[str] = ()) -> Placement:
    """Apply a plan step by step; if any step fails (or Ctrl-C), undo the steps done, newest first."""
    check_plan(actions)
    placement = Placement(Path(conf_root), notes=list(notes))
    try:
        for action in actions:
            _make_parents(action.path, placement.created_dirs)
            placement.changes.append(_do(action))
    except BaseException:
        _rollback(placement)
        raise
    return placement


def _rollback(placement: Placement) -> None:
    for change in reversed(placement.changes):
        _undo(change)
    for directory in reversed(placement.created_dirs):
        try:
            os.rmdir(directory)
        except OSError:
            pass  # something else now lives there: keep it


def unplace(placement: Placement, force: bool = False) -> list[Path]:
    """Undo a placement exactly: remove what it created (refusing files edited since, unless force), re-create
    the links it removed, remove directories it made if empty. All or nothing. Returns the paths removed."""
    edited = []
    for change in placement.changes:
        path = Path(change["path"])
        if change["kind"] == "link":
            if path.is_symlink() and os.readlink(path) != change["target"]:
                edited.append(str(path))
        elif change["kind"] == "append":
            # The main config is the admin's (and may hold a vhost install edited too): only our lines matter.
            if not path.read_bytes().endswith(change["text"].encode()):
                raise BadInput(f"{path} no longer ends with the lines install added", hint="remove them by hand")
        elif change["kind"] == "insert":
            # The vhost's file is the admin's: edits elsewhere in it are theirs to keep; only our line goes.
            if path.read_bytes().splitlines(keepends=True).count(change["text"].encode()) != 1:
                raise BadInput(
                    f"{path} no longer holds the line install added once: {change['text'].strip()}",
                    hint="put it back as it was, or remove it and the file it includes by hand",
                )
        elif change["kind"] != "unlink" and path.is_file() and _sha256(path) != change["sha256"]:
            edited.append(str(path))
        elif change["kind"] == "unlink" and os.path.lexists(path):
            edited.append(f"{path} (re-created since)")
    if edited and not force:
        raise BadInput(f"changed since install: {', '.join(edited)}", hint="keep your edits elsewhere, or pass --force")
    # Keep the bytes of everything removed, to put back if a later step fails.
    saved: list[tuple[dict[str, Any], bytes | str | None]] = []
    removed: list[Path] = []
    try:
        for change in reversed(placement.changes):
            path = Path(change["path"])
            if change["kind"] == "unlink":
                if not os.path.lexists(path):
                    os.symlink(change["target"], path)
                    saved.append((change, None))
                continue
            if change["kind"] in ("append", "insert"):
                saved.append((change, path.read_bytes()))
                strip = strip_appended if change["kind"] == "append" else strip_inserted
                strip(path, change["text"])
                continue
            if path.is_symlink():
                saved.append((change, os.readlink(path)))
                path.unlink()
                removed.append(path)
            elif path.exists():
                saved.append((change, path.read_bytes()))
                path.unlink()
                removed.append(path)
    except BaseException as error:
        for change, content in reversed(saved):
            path = Path(change["path"])
            if change["kind"] == "unlink":
                path.unlink(missing_ok=True)
            elif change["kind"] in ("append", "insert") and isinstance(content, bytes):
                path.write_bytes(content)
            elif isinstance(content, str):
                os.symlink(content, path)
            elif isinstance(content, bytes):
                path.write_bytes(content)
        if isinstance(error, OSError):
            raise JobFailed(f"could not remove the installed files: {error}") from error
        raise
    for directory in reversed(placement.created_dirs):
        try:
            os.rmdir(directory)
        except OSError:
            pass
    return removed


# -- into one of the server's own <VirtualHost>s -----------------------------------------------------------
def _has_directives(text: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())


def _routes_body(rendering: Rendering) -> str:
    """The routes as the files holding them end: proxy_conf less the header lines each file starts with once."""
    header = {line.strip() for line in rendering.header.splitlines() if line.strip()}
    return "".join(
        line for line in rendering.proxy_conf.splitlines(keepends=True) if line.strip() not in header
    ).lstrip("\n")


def routes_separable(rendering: Rendering) -> bool:
    """Whether the rendering's routes can leave its files for a vhost: each file holding them ends with them
    (Debian, RHEL, a plain build), none wraps them (Gentoo's <IfDefine>)."""
    routes = _routes_body(rendering)
    directives = {line.strip() for line in routes.splitlines() if _has_directives(line) and "</" not in line}
    return all(
        text.endswith(routes) or not directives & {line.strip() for line in text.splitlines()}
        for text in rendering.files.values()
    )


def into_vhost(
    rendering: Rendering, routes_file: Path, vhost_file: Path, opening: int, closing: int
) -> tuple[Rendering, list[Action]]:
    """The rendering without its routes (what stays at server level: the modules), and the actions that put
    the routes into routes_file and one `Include` of it into vhost_file before its </VirtualHost> (0-based
    line `closing`; `opening` is its <VirtualHost> line, whose body sets the indentation)."""
    routes = _routes_body(rendering)
    files = {}
    if not routes_separable(rendering):
        raise BadInput(
            f"the {rendering.distro} layout wraps the routes in its file: they cannot go into a VirtualHost",
            hint="install without --vhost (server level), or Include the rendered routes there yourself",
        )
    for name, text in checked_files(rendering).items():
        if not text.endswith(routes):
            files[name] = text
        elif _has_directives(text[: len(text) - len(routes)]):
            files[name] = text[: len(text) - len(routes)]
    lines = vhost_file.read_text(errors="replace").splitlines()
    if vhosts.block(lines, opening + 1) != (opening, closing):
        raise BadInput(f"{vhost_file} changed while apachews read it", hint="run the command again")
    body = [line for line in lines[opening + 1 : closing] if line.strip()]
    indent = body[0][: len(body[0]) - len(body[0].lstrip())] if body else "    "
    include = (
        template_environment("apache").get_template("vhost-include.j2").render(indent=indent, path=str(routes_file))
    )
    actions = [
        Action(
            "write",
            routes_file,
            text=f"{rendering.header}\n{routes}" if rendering.header else routes,
            why="the routes, included by the VirtualHost",
        ),
        Action("insert", vhost_file, text=include, line=closing, why="apachews's one line in the VirtualHost"),
    ]
    return replace(rendering, files=files), actions
