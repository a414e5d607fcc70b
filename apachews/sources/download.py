"""HTTP downloads: the one download-and-verify path every origin that downloads goes through."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import posixpath
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from apachews.errors import JobFailed
from apachews.progress import Progress
from apachews.sources.checksums import Checksum

log = logging.getLogger(__name__)

_BLOCK = 1 << 16


class NotFound(Exception):
    """The server answered 404: the caller may try another name."""


def open_url(url: str, timeout: float = 60, headers: dict[str, str] | None = None) -> IO[bytes]:
    log.debug("GET %s", url)
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise NotFound(url) from error
        raise JobFailed(f"{url}: HTTP {error.code} {error.reason}", url=url) from error
    except (OSError, http.client.HTTPException) as error:
        raise JobFailed(
            f"cannot reach {url}: {error}", hint="check the mirror URL (--mirror / $APACHEWS_MIRROR)", url=url
        ) from error


def _download(url: str, dest: Path, progress: Progress) -> None:
    with open_url(url, timeout=120) as response:
        length = response.headers.get("Content-Length")  # type: ignore[attr-defined]
        total = int(length) if length and length.isdigit() else None
        received = 0
        try:
            with open(dest, "wb") as out, progress.transfer(posixpath.basename(url), total) as transfer:
                for block in iter(lambda: response.read(_BLOCK), b""):
                    out.write(block)
                    received += len(block)
                    transfer.advance(len(block))
        except (OSError, http.client.HTTPException) as error:
            raise JobFailed(f"download of {url} was interrupted: {error}", url=url) from error
        if total is not None and received != total:
            raise JobFailed(f"download of {url} was interrupted after {received} of {total} bytes", url=url)
    log.info("downloaded %s (%d bytes)", url, received)


@contextlib.contextmanager
def verified_download(
    url: str, directory: Path, expected: Callable[[], Checksum | None], progress: Progress
) -> Iterator[tuple[Path, Checksum | None]]:
    """Download `url` into a hidden file in `directory`, check it, and yield (file, checksum used).

    `expected` is asked after the download (a 404 must not cost a checksum lookup); it returns None only
    when the caller accepts an unverified file. The file is removed after the block unless the caller
    renamed it into place: a failure keeps nothing.
    """
    directory.mkdir(parents=True, exist_ok=True)
    name = posixpath.basename(url)
    partial = directory / f".{name}.{os.getpid()}.part"
    try:
        progress.step(f"downloading {url}")
        _download(url, partial, progress)
        checksum = expected()
        if checksum is not None:
            checksum.verify(partial, name, hint="the download is corrupt or tampered with; nothing was kept")
            progress.note(f"{name} verified: {checksum.how}")
        yield partial, checksum
    finally:
        partial.unlink(missing_ok=True)
