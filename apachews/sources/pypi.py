"""Origin "pypi": httpd from a mod-wsgi-httpd sdist; also apr / apr-util for trees that lack srclib/apr."""

from __future__ import annotations

from pathlib import Path

from apachews import catalogue
from apachews.catalogue import Release, Version
from apachews.errors import BadInput
from apachews.progress import Progress
from apachews.sources import checksums, store
from apachews.sources.pypi_index import PYPI_PROJECT, PypiBundle, pypi_bundle
from apachews.sources.tree import SourceTree, require_release

APR_SDIST = "2.4.12.6"  # carries apr-1.5.2 and apr-util-1.5.4, which build with httpd 2.2 and early 2.4
CURRENT_APR_SDIST = "2.4.69.1"  # carries the apr and apr-util current httpd 2.4 builds with


def from_pypi(release: Release | None, progress: Progress) -> SourceTree:
    release = require_release(release)
    sdists = catalogue.load().pypi_sdists
    sdist = sdists.get(str(release.version))
    if sdist is None:
        raise BadInput(
            f"no {PYPI_PROJECT} sdist carries Apache {release.version}",
            hint="--from-pypi serves: " + ", ".join(sorted(sdists, key=Version.parse)),
        )
    bundle = pypi_bundle(sdist, store.pypi_dir(), progress)
    how = checksums.require_catalogue(release.checksums, bundle.httpd.name).verify(
        bundle.httpd, bundle.httpd.name, hint=f"remove {bundle.directory} and try again"
    )
    progress.note(f"{bundle.httpd.name} verified: {how}")
    return store.unpack_to_cache(bundle.httpd, f"pypi:{PYPI_PROJECT}=={sdist}", how, release, progress)


def _apr_bundle(sdist: str, progress: Progress) -> PypiBundle:
    bundle = pypi_bundle(sdist, store.pypi_dir(), progress)
    known = catalogue.load().apr_checksums
    for tarball in (bundle.apr, bundle.apr_util):
        checksums.require_catalogue(known, tarball.name).verify(
            tarball, tarball.name, hint=f"remove {bundle.directory} and try again"
        )
    return bundle


def apr_sources(progress: Progress | None = None, *, old: bool = True) -> tuple[Path, Path]:
    """apr and apr-util tarballs, verified: the old pair (2.2 / early 2.4 trees without srclib/apr) or current."""
    bundle = _apr_bundle(APR_SDIST if old else CURRENT_APR_SDIST, progress or Progress())
    return bundle.apr, bundle.apr_util
