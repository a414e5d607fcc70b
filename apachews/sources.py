"""Apache sources: release tarballs from a mirror, a local tarball or tree, or PyPI's mod-wsgi-httpd sdist."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from apachews.errors import ApachewsError, BadInput, JobFailed
from apachews.progress import Progress

PYPI_SIMPLE_URL = os.environ.get("APACHEWS_PYPI_URL", "https://pypi.org/simple")
PYPI_PROJECT = "mod-wsgi-httpd"


@dataclass(frozen=True)
class PypiBundle:
    """The pristine upstream tarballs carried by one mod-wsgi-httpd sdist."""

    directory: Path
    httpd: Path
    apr: Path
    apr_util: Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pypi_sdist_entry(sdist_version: str) -> dict:
    request = urllib.request.Request(
        f"{PYPI_SIMPLE_URL}/{PYPI_PROJECT}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            index = json.load(response)
    except OSError as error:
        raise JobFailed(f"cannot read the package index at {PYPI_SIMPLE_URL}: {error}") from error
    for entry in index.get("files", []):
        name = entry["filename"]
        if name.endswith(".tar.gz") and name.rsplit("-", 1)[-1][: -len(".tar.gz")] == sdist_version:
            return entry
    raise BadInput(f"{PYPI_PROJECT} {sdist_version} has no sdist on {PYPI_SIMPLE_URL}")


def pypi_bundle(sdist_version: str, cache_dir: Path, progress: Progress | None = None) -> PypiBundle:
    """Download (once) the mod-wsgi-httpd sdist and pull out its httpd, apr and apr-util tarballs."""
    progress = progress or Progress()
    cache_dir.mkdir(parents=True, exist_ok=True)
    bundle_dir = cache_dir / f"mod-wsgi-httpd-{sdist_version}"
    found = {p.name: p for p in bundle_dir.glob("*.tar.*")} if bundle_dir.is_dir() else {}
    if not found:
        entry = _pypi_sdist_entry(sdist_version)
        sdist = cache_dir / entry["filename"]
        if not sdist.exists() or sha256_file(sdist) != entry["hashes"]["sha256"]:
            partial = sdist.with_suffix(".part")
            try:
                with urllib.request.urlopen(entry["url"], timeout=120) as response, open(partial, "wb") as out:
                    with progress.transfer(entry["filename"], entry.get("size")) as transfer:
                        for block in iter(lambda: response.read(1 << 16), b""):
                            out.write(block)
                            transfer.advance(len(block))
                if sha256_file(partial) != entry["hashes"]["sha256"]:
                    raise JobFailed(f"{entry['filename']} does not match the index's sha256")
                partial.replace(sdist)
            finally:
                partial.unlink(missing_ok=True)
        staging = bundle_dir.with_suffix(".part")
        staging.mkdir(exist_ok=True)
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                base = os.path.basename(member.name)
                if member.isfile() and base.startswith(("httpd-", "apr-")) and ".tar." in base:
                    with archive.extractfile(member) as src, open(staging / base, "wb") as dst:  # type: ignore[union-attr]
                        dst.write(src.read())
        staging.replace(bundle_dir)
        found = {p.name: p for p in bundle_dir.glob("*.tar.*")}

    def pick(prefix: str) -> Path:
        for name, path in sorted(found.items()):
            rest = name[len(prefix) :]
            if name.startswith(prefix) and rest[:1].isdigit():
                return path
        raise ApachewsError(f"{PYPI_PROJECT} {sdist_version} carries no {prefix}* tarball")

    return PypiBundle(
        directory=bundle_dir, httpd=pick("httpd-"), apr=pick("apr-"), apr_util=pick("apr-util-")
    )
