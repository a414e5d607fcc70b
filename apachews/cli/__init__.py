"""The `apachews` command line: a thin layer over the stage modules (sources, patches, build, ...).

Each stage's commands live in a module of this package and register themselves on `main`.
"""

from __future__ import annotations

# Stage commands register themselves on `main` when imported.
from apachews.cli import (  # noqa: F401
    bench,
    build,
    cache,
    config,
    diagnose,
    doctor,
    fetch,
    image,
    install,
    matrix,
    package,
    patch,
    torture,
    verify,
    versions,
)
from apachews.cli._main import main

__all__ = ["main"]
