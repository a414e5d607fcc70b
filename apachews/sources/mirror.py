"""Origin "mirror": release tarballs from a directory laid out like https://archive.apache.org/dist/httpd/,
over http(s), or local: a file:// URL or a plain directory (a copy of the archive, no HTTP server needed)."""

from __future__ import annotations

import http.client
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from apachews.catalogue import Release
from apachews.errors import BadInput, JobFailed
from apachews.fsutil import remove_empty, sha256_file, write_atomic
from apachews.progress import Progress
from apachews.sources import checksums, store
from apachews.sources.checksums import Checksum
from apachews.sources.download import NotFound, open_url, verified_download
from apachews.sources.tree import SourceTree, require_release

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "https://archive.apache.org/dist/httpd/"


OTHER_SOURCES_HINT = (
    "without the network, take the sources from elsewhere: --tarball FILE (a downloaded httpd-V.tar.gz), "
    "--git DIR (an apache/httpd clone), --from-pypi (PyPI's mod-wsgi-httpd, for the 2.4 releases it carries), "
    "or --mirror DIR / APACHEWS_MIRROR=DIR (a local copy of the archive's dist/httpd/, or a file:// URL)"
)


def mirror_url(mirror: str | None = None) -> str:
    """The mirror as a URL ending in /: http(s)://, file://, or a local directory (made a file:// URL)."""
    given = mirror or os.environ.get("APACHEWS_MIRROR") or DEFAULT_MIRROR
    scheme = urllib.parse.urlsplit(given).scheme
    if scheme in ("http", "https", "file"):
        url = given
    elif os.path.isdir(given):
        url = Path(given).resolve().as_uri()
    else:
        raise BadInput(
            f"mirror {given!r} is neither an http(s):// or file:// URL nor a directory",
            hint="give the URL or the local copy of a directory laid out like https://archive.apache.org/dist/httpd/",
        )
    return url if url.endswith("/") else url + "/"


def _local_path(url: str) -> Path | None:
    """The file a file:// URL names (None for http)."""
    parts = urllib.parse.urlsplit(url)
    return Path(urllib.request.url2pathname(parts.path)) if parts.scheme == "file" else None


def _open(url: str):
    """open_url, with a missing local file meaning 404 (urllib reports it as an unreachable URL)."""
    local = _local_path(url)
    if local is not None and not local.is_file():
        raise NotFound(url)
    return open_url(url)


def mirror_checksum(url: str, filename: str) -> Checksum | None:
    """The strongest checksum file the mirror publishes for `url`, or None."""
    for algorithm in checksums.ALGORITHMS:
        sum_url = f"{url}.{algorithm}"
        try:
            with _open(sum_url) as response:
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
    downloads = store.downloads_dir(base)
    # A tarball verified earlier is reused (its record says how it was verified; its sha256 is re-checked).
    for name in release.tarballs:
        kept, record = downloads / name, downloads / f"{name}.json"
        if kept.is_file() and record.is_file():
            info = json.loads(record.read_text())
            if sha256_file(kept) == info.get("sha256"):
                log.info("cache hit: %s, verified earlier by %s", kept, info["checksum"])
                return store.unpack_to_cache(kept, f"mirror:{base}{name}", info["checksum"], release, progress)
    tried: list[str] = []
    try:
        for name in release.tarballs:
            url = base + name
            try:
                if (local := _local_path(url)) is not None and not local.is_file():
                    raise NotFound(url)
                with verified_download(url, downloads, _expected(release, name, url, insecure, progress), progress) as (
                    partial,
                    checksum,
                ):
                    how = checksum.how if checksum else None
                    tree = store.unpack_to_cache(partial, f"mirror:{url}", how, release, progress)
                    record = {"url": url, "checksum": how, "sha256": sha256_file(partial)}
                    partial.replace(downloads / name)
                    write_atomic(downloads / f"{name}.json", json.dumps(record))
                    return tree
            except NotFound:
                log.info("%s: 404 Not Found", url)
                tried.append(url)
    except JobFailed as error:
        if _unreachable(error):  # offline, or a mirror that does not answer: name the other origins
            error.hint = f"check the mirror URL (--mirror / $APACHEWS_MIRROR); {OTHER_SOURCES_HINT}"
        raise
    finally:
        remove_empty(downloads, downloads.parent)
    raise JobFailed(
        f"Apache {release.version} is not on the mirror: {' and '.join(tried)} answered 404 Not Found",
        hint=f"check the mirror URL (--mirror / $APACHEWS_MIRROR); {OTHER_SOURCES_HINT}",
        urls=tried,
    )


def _unreachable(error: JobFailed) -> bool:
    """The download path's "cannot reach" (a socket or DNS error), as opposed to an HTTP status or a checksum."""
    cause = error.__cause__
    return isinstance(cause, (OSError, http.client.HTTPException)) and not isinstance(cause, urllib.error.HTTPError)
