"""Origin "mirror": release tarballs from a directory laid out like https://archive.apache.org/dist/httpd/."""

from __future__ import annotations

import json
import logging
import os
import urllib.parse

from apachews.catalogue import Release
from apachews.errors import BadInput, JobFailed
from apachews.fsutil import remove_empty, sha256_file, write_atomic
from apachews.progress import Progress
from apachews.sources import cache, checksums
from apachews.sources.checksums import Checksum
from apachews.sources.download import NotFound, open_url, verified_download
from apachews.sources.tree import SourceTree, require_release

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "https://archive.apache.org/dist/httpd/"


def mirror_url(mirror: str | None = None) -> str:
    url = mirror or os.environ.get("APACHEWS_MIRROR") or DEFAULT_MIRROR
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise BadInput(
            f"mirror {url!r} is not an http(s) URL",
            hint="give the URL of a directory laid out like https://archive.apache.org/dist/httpd/",
        )
    return url if url.endswith("/") else url + "/"


def mirror_checksum(url: str, filename: str) -> Checksum | None:
    """The strongest checksum file the mirror publishes for `url`, or None."""
    for algorithm in checksums.ALGORITHMS:
        sum_url = f"{url}.{algorithm}"
        try:
            with open_url(sum_url) as response:
                text = response.read(1 << 16).decode("utf-8", "replace")
        except NotFound:
            continue
        digest = checksums.parse_checksum_file(text, filename, algorithm)
        if digest is None:
            raise JobFailed(
                f"{sum_url} holds no {algorithm} digest for {filename}",
                hint="the mirror's checksum file is malformed; use another mirror (--mirror)",
                url=sum_url,
            )
        return Checksum(algorithm, digest, f"{algorithm} (mirror file {sum_url})")
    return None


def _expected(release: Release, name: str, url: str, insecure: bool, progress: Progress):
    """The catalogue's checksum, else the mirror's strongest file, else (only if allowed) none."""

    def resolve() -> Checksum | None:
        found = checksums.from_catalogue(release.checksums, name) or mirror_checksum(url, name)
        if found is None:
            if not insecure:
                raise JobFailed(
                    f"cannot verify {name}: the catalogue has no checksum for it and the mirror publishes "
                    f"no {'/'.join(checksums.ALGORITHMS)} file",
                    hint="use a mirror that publishes checksums, or pass --insecure-no-checksum",
                    url=url,
                )
            progress.note(f"{name} NOT verified: no checksum known (--insecure-no-checksum)")
            log.warning("%s NOT verified (--insecure-no-checksum)", name)
        return found

    return resolve


def from_mirror(release: Release | None, mirror: str | None, insecure: bool, progress: Progress) -> SourceTree:
    release = require_release(release)
    base = mirror_url(mirror)
    downloads = cache.downloads_dir(base)
    # A tarball verified earlier is reused (its record says how it was verified; its sha256 is re-checked).
    for name in release.tarballs:
        kept, record = downloads / name, downloads / f"{name}.json"
        if kept.is_file() and record.is_file():
            info = json.loads(record.read_text())
            if sha256_file(kept) == info.get("sha256"):
                log.info("cache hit: %s, verified earlier by %s", kept, info["checksum"])
                return cache.unpack_to_cache(kept, f"mirror:{base}{name}", info["checksum"], release, progress)
    tried: list[str] = []
    try:
        for name in release.tarballs:
            url = base + name
            try:
                with verified_download(url, downloads, _expected(release, name, url, insecure, progress), progress) as (
                    partial,
                    checksum,
                ):
                    how = checksum.how if checksum else None
                    tree = cache.unpack_to_cache(partial, f"mirror:{url}", how, release, progress)
                    record = {"url": url, "checksum": how, "sha256": sha256_file(partial)}
                    partial.replace(downloads / name)
                    write_atomic(downloads / f"{name}.json", json.dumps(record))
                    return tree
            except NotFound:
                log.info("%s: 404 Not Found", url)
                tried.append(url)
    finally:
        remove_empty(downloads, downloads.parent)
    raise JobFailed(
        f"Apache {release.version} is not on the mirror: {' and '.join(tried)} answered 404 Not Found",
        hint="check the mirror URL (--mirror / $APACHEWS_MIRROR) or download the tarball and use --tarball",
        urls=tried,
    )
