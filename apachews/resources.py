"""Where the bundled data (templates, patch series) lives, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory of bundled data `name` ("templates" or "patches").

    A wheel carries it as apachews/_data/<name>; a source checkout has it at the top level.
    """
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled data directory {name!r} is missing from the apachews installation")


def templates_dir() -> Path:
    return data_dir("templates")


def patches_dir() -> Path:
    return data_dir("patches")


def package_data(name: str) -> Path:
    """A file shipped inside the package itself (apachews/data/)."""
    return _PACKAGE_DIR / "data" / name
