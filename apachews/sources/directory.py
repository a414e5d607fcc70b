"""Origin "source": an unpacked tree or checkout the user points at, used in place (never written to)."""

from __future__ import annotations

from pathlib import Path

from apachews.catalogue import Release
from apachews.errors import BadInput
from apachews.sources.tree import SourceTree, check_wanted, tree_info


def from_directory(source: Path, release: Release | None) -> SourceTree:
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise BadInput(f"{source} is not a directory", hint="give the top directory of an httpd source tree")
    tree = tree_info(source, f"source:{source}", None, cache_hit=True)
    check_wanted(release, tree.version, str(source))
    return tree
