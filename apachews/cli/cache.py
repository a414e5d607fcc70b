"""`apachews cache`: list and prune what apachews keeps (build volumes, images, the download cache)."""

from __future__ import annotations

import shutil
import time

import click

from apachews import storage
from apachews.catalogue import Release
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main
from apachews.cli._options import RELEASE


@main.group("cache")
def cache_group() -> None:
    """What apachews keeps between runs: `list` shows it with sizes, `prune` removes it."""


_KINDS = click.option(
    "--kind",
    "kinds",
    type=click.Choice(storage.KINDS),
    multiple=True,
    help="Only this kind (repeatable): volume (Docker build volumes), image, download (the file cache). Default: all.",
)
_APACHE = click.option(
    "--apache", "release", type=RELEASE, metavar="V", help="Only the build volumes of this release (labelled ones)."
)


def _age(created: float | None) -> str:
    if not created:
        return "?"
    days = (time.time() - created) / 86400
    return f"{days:.0f}d" if days >= 1 else f"{days * 24:.0f}h"


def fit_table(rows: list[list[str]], header: list[str], width: int | None = None) -> str:
    """Columns padded to their widest cell; the last column cut to what the terminal has left."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
        lines.append(line if len(line) <= width else line[: max(width - 1, 20)] + "…")
    return "\n".join(lines)


def _table(entries: list[storage.Entry]) -> str:
    rows = [
        [
            e.kind,
            storage.human_size(e.size),
            _age(e.created),
            e.version or "-",
            e.name + (f" ({e.in_use})" if e.in_use else ""),
        ]
        for e in entries
    ]
    return fit_table(rows, ["kind", "size", "age", "version", "name"])


def _total(entries: list[storage.Entry]) -> int:
    return sum(e.size or 0 for e in entries)


@command(cache_group, "list")
@_KINDS
@_APACHE
def list_command(session: Session, kinds: tuple[str, ...], release: Release | None) -> Result:
    """List build volumes, images and downloads with their sizes."""
    entries = storage.list_entries(kinds or storage.KINDS, str(release.version) if release else None)
    text = _table(entries) + f"\n{len(entries)} entries, {storage.human_size(_total(entries))}"
    return Result(data={"entries": [e.to_dict() for e in entries], "total_bytes": _total(entries)}, text=text)


@command(cache_group, "prune")
@_KINDS
@_APACHE
@click.option("--older-than", "days", type=click.FloatRange(min=0), metavar="DAYS", help="Only what is older.")
@click.option("--include-base", is_flag=True, help="Also remove base images (apachews image bootstrap re-makes them).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def prune_command(
    session: Session,
    kinds: tuple[str, ...],
    release: Release | None,
    days: float | None,
    include_base: bool,
    dry_run: bool,
) -> Result:
    """Remove build volumes, builder images and downloads (never what a running build uses)."""
    removed, kept = storage.prune(
        kinds or storage.KINDS,
        older_than=days * 86400 if days is not None else None,
        version=str(release.version) if release else None,
        include_base=include_base,
        dry_run=dry_run,
    )
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {e.kind} {e.name} ({storage.human_size(e.size)})" for e in removed]
    lines += [f"kept {e.kind} {e.name}: {e.in_use}" for e in kept]
    lines.append(f"{verb} {len(removed)} entries, {storage.human_size(_total(removed))}")
    return Result(
        data={
            "dry_run": dry_run,
            "removed": [e.to_dict() for e in removed],
            "kept": [e.to_dict() for e in kept],
            "freed_bytes": 0 if dry_run else _total(removed),
        },
        text="\n".join(lines),
    )
