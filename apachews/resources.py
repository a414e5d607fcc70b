"""Where the bundled data (templates, patch series) lives, installed or in a checkout."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory of bundled data `name` ("templates" or "patches").

    A wheel carries it as apachews/_data/<name>; a source checkout has it at the top level.
    """
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    from apachews.errors import JobFailed

    raise JobFailed(
        f"bundled data directory {name!r} is missing from the apachews installation",
        hint="reinstall apachews (pip install --force-reinstall apachews), or run it from a full checkout",
    )


def templates_dir() -> Path:
    return data_dir("templates")


def patches_dir() -> Path:
    return data_dir("patches")


def package_data(name: str) -> Path:
    """A file shipped inside the package itself (apachews/data/)."""
    return _PACKAGE_DIR / "data" / name


@functools.cache
def template_environment(kind: str) -> jinja2.Environment:
    """The Jinja environment for templates/<kind>/ ("apache", "docker", "build"), made once.

    StrictUndefined: a template that names a value nobody passed fails instead of rendering a blank.
    No autoescaping: these are config files and scripts, not HTML; values are validated before.
    """
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / kind)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
