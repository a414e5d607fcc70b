"""The patch engine: quilt-style series, and check / apply / rebase of unified diffs on Apache trees.

One model, parsed once (model.py, with unidiff): a Series is a list of Patch, a Patch a list of FilePatch, a
FilePatch a list of Hunk; lines are bytes, line ends included (CRLF files stay CRLF). Every operation is
defined on it. Placement follows GNU patch 2.7 hunk by hunk (placement.py); check and apply run it over a
tree, all or nothing (engine.py); rebase refreshes a patch onto a tree (rebase.py). Two differences from GNU
patch, on purpose: a hunk whose reverse fits better than itself is "already applied", and `apply` writes
nothing unless every hunk fits. tests/test_patch_differential.py holds the engine to GNU patch's verdicts
on real history.
"""

from __future__ import annotations

import json
from pathlib import Path

from apachews.errors import BadInput
from apachews.patches.engine import DEFAULT_FUZZ, apply, check, detect_strip, patch_file_bytes
from apachews.patches.model import FilePatch, Hunk, Patch, Series, parse_patch
from apachews.patches.placement import HunkResult
from apachews.patches.rebase import RebaseReport, rebase, unified_diff
from apachews.patches.report import FileResult, PatchResult, Report
from apachews.resources import patches_dir

__all__ = [
    "DEFAULT_FUZZ",
    "FilePatch",
    "FileResult",
    "Hunk",
    "HunkResult",
    "Patch",
    "PatchResult",
    "RebaseReport",
    "Report",
    "Series",
    "apply",
    "check",
    "detect_strip",
    "list_series",
    "load_patches",
    "load_series",
    "parse_patch",
    "patch_file_bytes",
    "rebase",
    "unified_diff",
]


def load_patches(paths: list[Path]) -> list[Patch]:
    return [parse_patch(Path(p)) for p in paths]


def _index() -> dict[str, dict[str, object]]:
    index_file = patches_dir() / "index.json"
    return json.loads(index_file.read_text()).get("series", {}) if index_file.exists() else {}


def list_series() -> list[Series]:
    return [load_series(name) for name in _index()]


def load_series(name: str) -> Series:
    directory = patches_dir() / name
    series_file = directory / "series"
    if not series_file.is_file():
        raise BadInput(f"no patch series {name!r}", hint="apachews patch list shows the series")
    files = []
    for line in series_file.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            files.append((directory / entry).resolve())
    return Series(name, directory, files, load_patches(files), _index().get(name, {}))
