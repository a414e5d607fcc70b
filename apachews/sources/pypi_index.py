"""A PyPI client for one project: mod-wsgi-httpd, whose sdists carry pristine httpd, apr and apr-util tarballs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apachews.errors import BadInput, JobFailed
from apachews.fsutil import atomic_dir, sha256_file
from apachews.progress import Progress
from apachews.sources.checksums import Checksum
from apachews.sources.download import NotFound, open_url, verified_download

log = logging.getLogger(__name__)

PYPI_SIMPLE_URL = os.environ.get("APACHEWS_PYPI_URL", "https://pypi.org/simple")
PYPI_PROJECT = "mod-wsgi-httpd"


@dataclass(frozen=True)
class PypiBundle:
    """The pristine upstream tarballs carried by one mod-wsgi-httpd sdist."""

    directory: Path
    httpd: Path
    apr: Path
    apr_util: Path


def _sdist_entry(sdist_version: str) -> dict[str, Any]:
    url = f"{PYPI_SIMPLE_URL}/{PYPI_PROJECT}/"
    try:
        with open_url(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"}) as response:
            index = json.load(response)
    except (JobFailed, NotFound, ValueError) as error:
        raise JobFailed(f"cannot read the package index at {PYPI_SIMPLE_URL}: {error}") from error
    for entry in index.get("files", []):
        name = entry["filename"]
        if name.endswith(".tar.gz") and name.rsplit("-", 1)[-1][: -len(".tar.gz")] == sdist_version:
            return entry
    raise BadInput(f"{PYPI_PROJECT} {sdist_version} has no sdist on {PYPI_SIMPLE_URL}")


def _download_sdist(sdist_version: str, cache_dir: Path, progress: Progress) -> Path:
    entry = _sdist_entry(sdist_version)
    sdist = cache_dir / entry["filename"]
    expected = Checksum("sha256", entry["hashes"]["sha256"], "sha256 (package index)")
    if sdist.exists() and sha256_file(sdist) == expected.digest:
        return sdist
    with verified_download(entry["url"], cache_dir, lambda: expected, progress) as (partial, _):
        partial.replace(sdist)
    return sdist


def pypi_bundle(sdist_version: str, cache_dir: Path, progress: Progress | None = None) -> PypiBundle:
    """Download (once) the mod-wsgi-httpd sdist and pull out its httpd, apr and apr-util tarballs."""
    progress = progress or Progress()
    cache_dir.mkdir(parents=True, exist_ok=True)
    bundle_dir = cache_dir / f"mod-wsgi-httpd-{sdist_version}"
    found = {p.name: p for p in bundle_dir.glob("*.tar.*")} if bundle_dir.is_dir() else {}
    if found:
        log.info("cache hit: %s", bundle_dir)
    else:
        sdist = _download_sdist(sdist_version, cache_dir, progress)
        try:
            with atomic_dir(bundle_dir) as staging, tarfile.open(sdist) as archive:
                for member in archive.getmembers():
                    base = os.path.basename(member.name)
                    if member.isfile() and base.startswith(("httpd-", "apr-")) and ".tar." in base:
                        with archive.extractfile(member) as src, open(staging / base, "wb") as dst:  # type: ignore[union-attr]
                            shutil.copyfileobj(src, dst)
        except (tarfile.TarError, EOFError, zlib.error) as error:
            raise JobFailed(
                f"{sdist} is not a readable sdist: {error}", hint=f"remove {sdist} and try again"
            ) from error
        found = {p.name: p for p in bundle_dir.glob("*.tar.*")}

    def pick(prefix: str) -> Path:
        for name, path in sorted(found.items()):
            rest = name[len(prefix) :]
            if name.startswith(prefix) and rest[:1].isdigit():
                return path
        raise JobFailed(
            f"{PYPI_PROJECT} {sdist_version} carries no {prefix}* tarball",
            hint=f"remove {bundle_dir} and try again; if it persists, this sdist cannot serve as a source",
        )

    return PypiBundle(directory=bundle_dir, httpd=pick("httpd-"), apr=pick("apr-"), apr_util=pick("apr-util-"))
