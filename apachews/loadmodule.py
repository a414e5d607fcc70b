"""`LoadModule` lines: the one place apachews writes them (templates/apache/modules.conf.j2).

A module of its own, below httpd and distros: the lab ServerRoot (httpd) and the layouts (distros) both load
modules, and neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from apachews.resources import template_environment


def load_module_lines(
    names: Iterable[str],
    modules_path: str | Path,
    *,
    guarded: bool = True,
    paths: Mapping[str, str | Path] | None = None,
    define: str | None = None,
) -> str:
    """`LoadModule` lines for `names` from modules_path/mod_NAME.so (or `paths[name]`), rendered from
    templates/apache/modules.conf.j2: the one place apachews writes them."""
    paths = paths or {}
    modules = []
    for name in names:
        path = str(paths.get(name) or f"{modules_path}/mod_{name}.so")
        modules.append({"name": name, "path": f'"{path}"' if any(c.isspace() for c in path) else path})
    text = (
        template_environment("apache")
        .get_template("modules.conf.j2")
        .render(modules=modules, guarded=guarded, define=define)
    )
    # One blank-free block: the template's lines, each block on its own lines.
    return "\n".join(line for line in text.splitlines() if line.strip()) + ("\n" if modules else "")
