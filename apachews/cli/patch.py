"""`apachews patch`: the backport series, and any patch, checked, applied or rebased on a source tree.

The tree is named like everywhere else: `--source DIR` (a tree of yours, patched in place), or `--apache V`
with an origin (`--git`, `--tarball`, `--mirror`, `--from-pypi`), which gives a tree from the verified
cache: `check` and `rebase` read it, `apply` patches a copy of it (`--into DIR`), never the cache itself.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import click

from apachews import catalogue, patches, sources
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main
from apachews.cli._options import source_options
from apachews.errors import BadInput
from apachews.sources import SourceOptions

_PATCH_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@main.group("patch")
def patch_group() -> None:
    """List, check, apply and rebase patches (quilt-style series in patches/)."""


@command(patch_group, "list")
def list_command(session: Session) -> Result:
    """The bundled series, the releases they serve, and what each patch touches."""
    data, rows = [], []
    for series in patches.list_series():
        stats = [patch.stats() for patch in series.patches]
        data.append({"series": series.name, **series.info, "patches": stats})
        rows.append(f"{series.name}: {series.info.get('description', '')}")
        rows.append(f"  applies to: {', '.join(series.info.get('applies_to', []))}")  # type: ignore[arg-type]
        for s in stats:
            hunks = f"{s['hunks']} hunk{'s' if s['hunks'] != 1 else ''}"
            rows.append(f"  {s['patch']}: {hunks}, +{s['added']} -{s['removed']}: {', '.join(s['files'])}")
    return Result(data={"series": data}, text="\n".join(rows))


def _selected(version: str | None, patch_files: tuple[Path, ...]) -> patches.Series | list[patches.Patch]:
    if patch_files:
        return patches.load_patches(list(patch_files))
    if not version:
        raise BadInput("name the patches: --apache V (its series) or --patch FILE")
    release = catalogue.load().get(version)
    if release.series is None:
        raise BadInput(
            f"Apache {version} needs no apachews series (it has a stock mod_proxy_wstunnel)",
            hint="pass --patch FILE to check another patch",
        )
    return patches.load_series(release.series)


def _named_tree(sources_options: SourceOptions, source_dir: Path | None) -> Path | None:
    """The tree the user named with --source (or its old spelling --source-dir); both must agree."""
    given = sources_options.source
    if given is not None and source_dir is not None and given.resolve() != source_dir.resolve():
        raise BadInput(
            f"--source {given} and --source-dir {source_dir} name different trees",
            hint="give the tree once, with --source DIR",
        )
    return given if given is not None else source_dir


def _in_cache(path: Path) -> bool:
    cache = sources.cache_dir().expanduser().resolve()
    return path.resolve().is_relative_to(cache)


def _tree(version: str | None, named: Path | None, options: SourceOptions, session: Session) -> tuple[Path, bool]:
    """The tree to work on, and whether it is the verified cache (never to be written)."""
    if named is not None:
        return named, _in_cache(named)
    if not version:
        raise BadInput("which tree? give --source DIR, or --apache V (with --git, --tarball, ... to fetch it)")
    return options.provide(version, session.progress()).path, True


def _copy_for_apply(tree: Path, into: Path) -> Path:
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise BadInput(f"{into} exists and is not empty", hint="--into names a new directory for the patched copy")
    into.parent.mkdir(parents=True, exist_ok=True)
    if into.exists():
        into.rmdir()
    shutil.copytree(tree, into, symlinks=True)
    return into


def _run(session, version, patch_files, source_dir, into, sources, fuzz, strip, reverse, write: bool) -> Result:
    selected = _selected(version, patch_files)
    named = _named_tree(sources, source_dir)
    tree, cached = _tree(version, named, sources, session)
    if not write:
        report = patches.check(selected, tree, fuzz=fuzz, reverse=reverse, strip=strip)
        return Result(data=report.to_dict(), text=report.table(), ok=report.ok)
    copied = False
    if into is not None:
        tree, copied = _copy_for_apply(tree, into), True
    elif cached:
        raise BadInput(
            f"refusing to patch {tree}: it is the verified source cache, which later fetches hand back as pristine",
            hint="add --into DIR to patch a copy there, or give --source DIR for a tree of your own",
        )
    try:
        report = patches.apply(selected, tree, fuzz=fuzz, reverse=reverse, strip=strip)
    except BaseException:
        if copied:
            shutil.rmtree(tree, ignore_errors=True)
        raise
    if copied and not report.ok:
        shutil.rmtree(tree, ignore_errors=True)  # a copy that did not get the patches is of no use
    data = report.to_dict()
    text = report.table()
    if copied and report.ok:
        data["copy"] = str(tree)
        text += f"\npatched copy: {tree}"
    return Result(data=data, text=text, ok=report.ok)


def _patch_options(fn):
    fn = click.option("--apache", "version", metavar="V", help="Use the series serving this release.")(fn)
    fn = click.option("--patch", "patch_files", multiple=True, type=_PATCH_FILE, help="A patch (repeatable).")(fn)
    fn = click.option("--source-dir", type=_DIR, hidden=True, help="Old spelling of --source.")(fn)
    fn = click.option("--fuzz", default=patches.DEFAULT_FUZZ, show_default=True, help="Context lines that may differ.")(
        fn
    )
    fn = click.option("-p", "strip", type=int, help="Strip level (default: detected).")(fn)
    fn = click.option("--reverse", "-R", is_flag=True, help="Take the patches back out.")(fn)
    return source_options(fn)


@command(patch_group, "check")
@_patch_options
def check_command(session, sources, version, patch_files, source_dir, fuzz, strip, reverse) -> Result:
    """Dry run: every hunk reported (clean, offset, fuzz, failed, already applied)."""
    return _run(session, version, patch_files, source_dir, None, sources, fuzz, strip, reverse, write=False)


@command(patch_group, "apply")
@_patch_options
@click.option(
    "--into",
    type=click.Path(file_okay=False, path_type=Path),
    help="Patch a copy of the tree made here (needed for a tree from the cache).",
)
def apply_command(session, sources, version, patch_files, source_dir, into, fuzz, strip, reverse) -> Result:
    """Apply all or nothing: if any hunk fails, no file changes. Already applied: exit 0, nothing changes."""
    return _run(session, version, patch_files, source_dir, into, sources, fuzz, strip, reverse, write=True)


@command(patch_group, "rebase")
@click.option("--patch", "patch_file", required=True, type=_PATCH_FILE, help="The patch to refresh.")
@click.option("--apache", "version", metavar="V", help="Rebase onto this release (fetched with the origin options).")
@click.option("--source-dir", type=_DIR, hidden=True, help="Old spelling of --source.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the rebased patch here.",
)
@click.option("--base-source", type=_DIR, help="The tree the patch was made for (enables the 3-way merge).")
@click.option("--base-apache", metavar="V", help="The release the patch was made for (fetched).")
@click.option("--resolved", type=_DIR, help="Files you resolved from an earlier OUTPUT.conflicts/ directory.")
@click.option("--fuzz", default=patches.DEFAULT_FUZZ, show_default=True, help="Context lines that may differ.")
@source_options
def rebase_command(
    session, sources, patch_file, version, source_dir, output, base_source, base_apache, resolved, fuzz
) -> Result:
    """Refresh a patch onto a tree (--source DIR): zero offset, zero fuzz; 3-way merge with a base tree.
    Writes a complete patch or none (conflicts go to OUTPUT.conflicts/, exit 1)."""
    if base_source and base_apache:
        raise BadInput("give --base-source or --base-apache, not both")
    tree, _ = _tree(version, _named_tree(sources, source_dir), sources, session)
    if base_apache:  # the base comes from the same origin options, never from the target's --source
        base_source = dataclasses.replace(sources, source=None).provide(base_apache, session.progress()).path
    result = patches.rebase(patch_file, tree, output, base_tree=base_source, fuzz=fuzz, resolved=resolved)
    lines = [result.report.table()]
    lines.append(f"wrote {result.output}" if result.written else f"NOT written: {result.output}")
    lines += [f"merged (3-way): {path}" for path in result.merged]
    lines += [f"CONFLICT: {path} (see {result.conflict_dir}/{path})" for path in result.conflicts]
    if result.next_step():
        lines.append(f"next: {result.next_step()}")
    return Result(data=result.to_dict(), text="\n".join(lines), ok=result.ok)
