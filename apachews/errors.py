"""Errors the CLI turns into exit codes: 2 for bad input or usage, 1 for a job that failed."""

from __future__ import annotations


class ApachewsError(Exception):
    """Base error. `hint` tells the user what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"error": self.message, "error_type": type(self).__name__}
        if self.hint:
            data["hint"] = self.hint
        data.update(self.details)
        return data


class BadInput(ApachewsError):
    """The user gave something we cannot use (unknown version, corrupt tarball, hostile value...)."""

    exit_code = 2


class JobFailed(ApachewsError):
    """The input was fine but the job did not succeed (a hunk failed, a build broke, a check went red)."""

    exit_code = 1
