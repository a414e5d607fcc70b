"""Checksums: the one way a file is checked against an expected digest, wherever the digest came from."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from apachews.errors import ApachewsError, JobFailed
from apachews.fsutil import file_digest

log = logging.getLogger(__name__)

# Strongest first: the first checksum file a mirror publishes in this order is the one we trust.
ALGORITHMS = ("sha512", "sha256", "sha1", "md5")
_DIGEST_LENGTHS = {"sha512": 128, "sha256": 64, "sha1": 40, "md5": 32}
CATALOGUE = "sha256 (apachews catalogue)"


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: str
    how: str  # what the user is told, e.g. "sha256 (apachews catalogue)"

    def verify(self, path: Path, name: str, error: type[ApachewsError] = JobFailed, hint: str | None = None) -> str:
        """Raise `error` unless the file matches; return `how` (what SourceTree.checksum records)."""
        actual = file_digest(path, self.algorithm)
        if actual != self.digest:
            raise error(
                f"{name} does not match its {self.how}: expected {self.digest}, got {actual}",
                hint=hint or "the file is corrupt or tampered with; nothing was kept. Get it again",
            )
        log.info("%s verified: %s", name, self.how)
        return self.how


def from_catalogue(table: dict[str, dict[str, str]], name: str) -> Checksum | None:
    """The catalogue's sha256 of a file (`table`: a release's checksums, or the apr checksums)."""
    known = table.get(name, {}).get("sha256")
    return Checksum("sha256", known, CATALOGUE) if known else None


def require_catalogue(table: dict[str, dict[str, str]], name: str) -> Checksum:
    checksum = from_catalogue(table, name)
    if checksum is None:
        raise JobFailed(f"the catalogue has no sha256 for {name}; cannot verify it")
    return checksum


def parse_checksum_file(text: str, filename: str, algorithm: str) -> str | None:
    """The digest of `filename` in a checksum file.

    Understands `HASH  name` / `HASH *name` (coreutils), `ALGO (name) = HASH` (BSD, openssl), a bare hash,
    and gpg --print-md's `name: AB12 CD34 ...` (possibly wrapped over several lines).
    """
    length = _DIGEST_LENGTHS[algorithm]
    hexdigits = set("0123456789abcdef")

    def clean(value: str) -> str | None:
        value = "".join(value.split()).lower()
        return value if len(value) == length and set(value) <= hexdigits else None

    bsd = re.search(r"^\s*[A-Za-z0-9-]+\s*\(([^)]*)\)\s*=\s*([0-9A-Fa-f]+)\s*$", text, re.M)
    if bsd and os.path.basename(bsd.group(1)) == filename:
        return clean(bsd.group(2))
    gpg = re.search(rf"^\s*{re.escape(filename)}\s*:\s*((?:[0-9A-Fa-f]+\s*)+)", text, re.M)
    if gpg:
        return clean(gpg.group(1))
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 1 and clean(fields[0]):
            return clean(fields[0])
        if len(fields) >= 2 and os.path.basename(fields[-1].lstrip("*")) == filename:
            return clean(fields[0])
    return None
