"""`apachews patch`: the backport series, and any patch, checked, applied or rebased on a source tree."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import catalogue, patches
from apachews.cli import main
from apachews.cli._common import Result, Session, command, source_options
from apachews.errors import BadInput
from apachews.sources import SourceOptions

_PATCH_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


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
            rows.append(f"  {s['patch']}: {s['hunks']} hunks, +{s['added']} -{s['removed']}: {', '.join(s['files'])}")
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


def _tree(version: str | None, source_dir: Path | None, sources: SourceOptions, session: Session) -> Path:
    if source_dir is not None:
        return source_dir
    if not version:
        raise BadInput("which tree? give --source-dir DIR or --apache V")
    return sources.provide(version, session.progress()).path


def _run(session, version, patch_files, source_dir, sources, fuzz, strip, reverse, write: bool) -> Result:
    selected = _selected(version, patch_files)
    tree = _tree(version, source_dir, sources, session)
    operation = patches.apply if write else patches.check
    report = operation(selected, tree, fuzz=fuzz, reverse=reverse, strip=strip)
    return Result(data=report.to_dict(), text=report.table(), ok=report.ok)


def _patch_options(fn):
    fn = click.option("--apache", "version", metavar="V", help="Use the series serving this release.")(fn)
    fn = click.option("--patch", "patch_files", multiple=True, type=_PATCH_FILE, help="A patch (repeatable).")(fn)
    fn = click.option(
        "--source-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="The tree to patch."
    )(fn)
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
    return _run(session, version, patch_files, source_dir, sources, fuzz, strip, reverse, write=False)


@command(patch_group, "apply")
@_patch_options
def apply_command(session, sources, version, patch_files, source_dir, fuzz, strip, reverse) -> Result:
    """Apply all or nothing: if any hunk fails, no file changes."""
    return _run(session, version, patch_files, source_dir, sources, fuzz, strip, reverse, write=True)


@command(patch_group, "rebase")
@click.option("--patch", "patch_file", required=True, type=_PATCH_FILE, help="The patch to refresh.")
@click.option("--source-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--base-source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--base-apache", metavar="V", help="The release the patch was made for (fetched).")
@click.option("--fuzz", default=patches.DEFAULT_FUZZ, show_default=True)
@source_options
def rebase_command(session, sources, patch_file, source_dir, output, base_source, base_apache, fuzz) -> Result:
    """Refresh a patch onto SOURCE_DIR: zero offset, zero fuzz; 3-way merge with a base tree."""
    if base_source and base_apache:
        raise BadInput("give --base-source or --base-apache, not both")
    if base_apache:
        base_source = sources.provide(base_apache, session.progress()).path
    result = patches.rebase(patch_file, source_dir, output, base_tree=base_source, fuzz=fuzz)
    lines = [result.report.table(), f"wrote {result.output}"]
    lines += [f"merged (3-way): {path}" for path in result.merged]
    lines += [f"CONFLICT: {path} (see {output}.conflicts/{path})" for path in result.conflicts]
    return Result(data=result.to_dict(), text="\n".join(lines), ok=result.ok)
