"""`apachews build` (see DEVELOPERS.md for the stage it fronts)."""

from apachews.cli import main  # noqa: F401
