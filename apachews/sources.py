"""Apache sources: release tarballs from a mirror, a local tarball or tree, or PyPI's mod-wsgi-httpd sdist."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from apachews import catalogue
from apachews.catalogue import Release, Version
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
            partial = sdist.parent / f".{sdist.name}.{os.getpid()}.part"
            try:
                with (
                    urllib.request.urlopen(entry["url"], timeout=120) as response,
                    open(partial, "wb") as out,
                ):
                    with progress.transfer(entry["filename"], entry.get("size")) as transfer:
                        for block in iter(lambda: response.read(1 << 16), b""):
                            out.write(block)
                            transfer.advance(len(block))
                if sha256_file(partial) != entry["hashes"]["sha256"]:
                    raise JobFailed(f"{entry['filename']} does not match the index's sha256")
                partial.replace(sdist)
            finally:
                partial.unlink(missing_ok=True)
        # Extract beside, then rename: an interrupted run leaves no half-filled bundle directory.
        staging = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}-", dir=cache_dir))
        try:
            with tarfile.open(sdist) as archive:
                for member in archive.getmembers():
                    base = os.path.basename(member.name)
                    if member.isfile() and base.startswith(("httpd-", "apr-")) and ".tar." in base:
                        with archive.extractfile(member) as src, open(staging / base, "wb") as dst:  # type: ignore[union-attr]
                            shutil.copyfileobj(src, dst)
            staging.chmod(0o755)
            staging.replace(bundle_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        found = {p.name: p for p in bundle_dir.glob("*.tar.*")}

    def pick(prefix: str) -> Path:
        for name, path in sorted(found.items()):
            rest = name[len(prefix) :]
            if name.startswith(prefix) and rest[:1].isdigit():
                return path
        raise ApachewsError(f"{PYPI_PROJECT} {sdist_version} carries no {prefix}* tarball")

    return PypiBundle(directory=bundle_dir, httpd=pick("httpd-"), apr=pick("apr-"), apr_util=pick("apr-util-"))


# --------------------------------------------------------------------------------------------------------
# Release sources: cache, version detection, verified downloads, safe unpacking.

DEFAULT_MIRROR = "https://archive.apache.org/dist/httpd/"
# Strongest first: the first checksum file a mirror publishes in this order is the one we trust.
CHECKSUM_ALGORITHMS = ("sha512", "sha256", "sha1", "md5")
_DIGEST_LENGTHS = {"sha512": 128, "sha256": 64, "sha1": 40, "md5": 32}
_BLOCK = 1 << 16


def cache_dir() -> Path:
    """The user cache of apachews (XDG via platformdirs); $APACHEWS_CACHE overrides it."""
    override = os.environ.get("APACHEWS_CACHE")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("apachews"))


@dataclass
class SourceTree:
    """An unpacked httpd source tree and where it came from."""

    path: Path
    version: Version
    origin: str
    has_configure: bool
    has_apr: bool
    checksum: str | None = None  # how the tarball was verified, e.g. "sha512 (mirror file)"; None: no tarball
    cache_hit: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "version": str(self.version),
            "origin": self.origin,
            "checksum": self.checksum,
            "checksum_algorithm": self.checksum.split()[0] if self.checksum else None,
            "cache_hit": self.cache_hit,
            "has_configure": self.has_configure,
            "has_apr": self.has_apr,
        }


_RELEASE_DEFINE = re.compile(r"^\s*#\s*define\s+AP_SERVER_(MAJORVERSION|MINORVERSION|PATCHLEVEL)_NUMBER\s+(\d+)")


def detect_version(tree: Path) -> Version:
    """The httpd version of a source tree, read from include/ap_release.h."""
    header = Path(tree) / "include" / "ap_release.h"
    try:
        text = header.read_text(errors="replace")
    except OSError as error:
        raise BadInput(
            f"{tree} is not an Apache httpd source tree (cannot read include/ap_release.h)",
            hint="give the top directory of an httpd source tree (the one holding include/ and modules/)",
        ) from error
    numbers: dict[str, int] = {}
    for line in text.splitlines():
        match = _RELEASE_DEFINE.match(line)
        if match:
            numbers.setdefault(match.group(1), int(match.group(2)))
    if len(numbers) != 3:
        raise BadInput(f"{header} does not define the AP_SERVER_*_NUMBER version macros")
    return Version(numbers["MAJORVERSION"], numbers["MINORVERSION"], numbers["PATCHLEVEL"])


def _tree_info(path: Path, origin: str, checksum: str | None, cache_hit: bool) -> SourceTree:
    return SourceTree(
        path=path,
        version=detect_version(path),
        origin=origin,
        has_configure=(path / "configure").is_file(),
        has_apr=(path / "srclib" / "apr" / "include").is_dir(),
        checksum=checksum,
        cache_hit=cache_hit,
    )


def _check_wanted(wanted: Version | None, found: Version, where: str) -> None:
    if wanted is not None and wanted != found:
        raise BadInput(
            f"{where} holds Apache {found}, not the {wanted} you asked for",
            hint=f"pass --apache {found}, or give the source of {wanted}",
            detected=str(found),
        )


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- safe unpacking ----------------------------------------------------------------------------------


def _check_member(member: tarfile.TarInfo) -> None:
    """Refuse anything that could write or point outside the tree, or create a device."""
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise BadInput(f"tarball member {name!r} would be written outside the tree", hint=_HOSTILE_HINT)
    if member.isdev():
        raise BadInput(f"tarball member {name!r} is a device or fifo", hint=_HOSTILE_HINT)
    if member.issym() or member.islnk():
        target = member.linkname
        if target.startswith("/"):
            raise BadInput(f"tarball link {name!r} points to the absolute path {target!r}", hint=_HOSTILE_HINT)
        # A symlink resolves from its own directory, a hard link from the archive root.
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target))
        if resolved == ".." or resolved.startswith("../"):
            raise BadInput(f"tarball link {name!r} -> {target!r} leaves the tree", hint=_HOSTILE_HINT)
    elif not (member.isfile() or member.isdir()):
        raise BadInput(f"tarball member {name!r} has an unsupported type", hint=_HOSTILE_HINT)


_HOSTILE_HINT = "this is not a pristine Apache release tarball; get it again from a trusted source"


def _unpack(tarball: Path, dest_parent: Path, progress: Progress) -> Path:
    """Unpack `tarball` (one httpd-* top directory) into dest_parent/<top>; return the staged tree.

    Members are checked before anything is written; extraction goes into a staging directory that the
    caller renames into place, so a failure leaves nothing behind.
    """
    progress.step(f"unpacking {tarball.name}")
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest_parent))
    try:
        with tarfile.open(tarball, "r:*") as archive:
            members = archive.getmembers()
            tops = set()
            for member in members:
                _check_member(member)
                top = PurePosixPath(member.name).parts[0] if member.name not in ("", ".") else ""
                if top and top != ".":
                    tops.add(top)
            if len(tops) != 1:
                raise BadInput(
                    f"{tarball.name} must hold exactly one top directory, found {sorted(tops)[:5]}",
                    hint=_HOSTILE_HINT,
                )
            if hasattr(tarfile, "data_filter"):
                archive.extractall(staging, members=members, filter="data")  # defence in depth
            else:  # pragma: no cover - Python < 3.11.4 without extraction filters
                archive.extractall(staging, members=members)
        tree = staging / tops.pop()
        if not tree.is_dir():
            raise BadInput(f"{tarball.name} has no top directory", hint=_HOSTILE_HINT)
        return tree
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, (tarfile.TarError, EOFError, OSError, zlib.error)) and not isinstance(
            error, ApachewsError
        ):
            raise BadInput(
                f"{tarball} is not a readable .tar.gz/.tar.bz2 archive: {error}",
                hint="the file is corrupt or truncated; download it again",
            ) from error
        raise


def _unpack_to_cache(
    tarball: Path, origin: str, checksum: str | None, wanted: Version | None, progress: Progress
) -> SourceTree:
    """Unpack a verified tarball into the tree cache, keyed by its content; reuse an earlier unpack."""
    content = sha256_file(tarball)
    trees = cache_dir() / "trees"
    slot = trees / content[:16]
    existing = sorted(slot.glob("httpd-*")) if slot.is_dir() else []
    for path in existing:
        if not path.name.startswith(".") and (path / "include" / "ap_release.h").is_file():
            found = detect_version(path)
            _check_wanted(wanted, found, tarball.name)
            progress.step(f"reusing the unpacked tree {path}")
            return _tree_info(path, origin, checksum, cache_hit=True)
    trees.mkdir(parents=True, exist_ok=True)
    try:
        staged = _unpack(tarball, trees, progress)
    except BaseException:
        _remove_if_empty(trees)
        raise
    try:
        found = detect_version(staged)
        _check_wanted(wanted, found, tarball.name)
        slot.mkdir(exist_ok=True)
        final = slot / f"httpd-{found}"
        _move_into_place(staged, final)
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)
        _remove_if_empty(slot)
        _remove_if_empty(trees)
    return _tree_info(final, origin, checksum, cache_hit=False)


def _move_into_place(staged: Path, final: Path) -> None:
    """Rename a finished tree into the cache; if a concurrent run got there first, keep theirs."""
    try:
        staged.rename(final)
    except OSError:
        if not (final / "include" / "ap_release.h").is_file():
            raise


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


# ---- mirror downloads ----------------------------------------------------------------------------------


def mirror_url(mirror: str | None = None) -> str:
    url = mirror or os.environ.get("APACHEWS_MIRROR") or DEFAULT_MIRROR
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise BadInput(
            f"mirror {url!r} is not an http(s) URL",
            hint="give the URL of a directory laid out like https://archive.apache.org/dist/httpd/",
        )
    return url if url.endswith("/") else url + "/"


class _NotFound(Exception):
    pass


def _open(url: str, timeout: float = 60):
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise _NotFound(url) from error
        raise JobFailed(f"{url}: HTTP {error.code} {error.reason}", url=url) from error
    except (OSError, http.client.HTTPException) as error:
        raise JobFailed(
            f"cannot reach {url}: {error}", hint="check the mirror URL (--mirror / $APACHEWS_MIRROR)", url=url
        ) from error


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


def _mirror_checksum(url: str, filename: str) -> tuple[str, str, str] | None:
    """(algorithm, digest, checksum-file URL) of the strongest checksum file the mirror publishes."""
    for algorithm in CHECKSUM_ALGORITHMS:
        sum_url = f"{url}.{algorithm}"
        try:
            with _open(sum_url) as response:
                text = response.read(1 << 16).decode("utf-8", "replace")
        except _NotFound:
            continue
        digest = parse_checksum_file(text, filename, algorithm)
        if digest is None:
            raise JobFailed(
                f"{sum_url} holds no {algorithm} digest for {filename}",
                hint="the mirror's checksum file is malformed; use another mirror (--mirror)",
                url=sum_url,
            )
        return algorithm, digest, sum_url
    return None


def _download(url: str, dest: Path, progress: Progress) -> None:
    """Download url to dest (a .part path the caller removes on failure)."""
    with _open(url, timeout=120) as response:
        length = response.headers.get("Content-Length")
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


def _release_for(apache: str | None) -> Release:
    if not apache:
        raise BadInput("which Apache release? --apache V is required here", hint="e.g. --apache 2.2.31")
    release = catalogue.load().get(apache)
    if release.released is False:
        raise BadInput(
            f"Apache {release.version} was tagged but never released: no release tarball exists",
            hint="pick a released version (`apachews versions`), or use --git with an apache/httpd clone",
        )
    return release


def _from_mirror(apache: str | None, mirror: str | None, insecure: bool, progress: Progress) -> SourceTree:
    release = _release_for(apache)
    base = mirror_url(mirror)
    downloads = cache_dir() / "downloads" / _short_hash(base)
    # A tarball verified earlier is reused (its record says how it was verified; its sha256 is re-checked).
    for name in release.tarballs:
        kept, record = downloads / name, downloads / f"{name}.json"
        if kept.is_file() and record.is_file():
            info = json.loads(record.read_text())
            if sha256_file(kept) == info.get("sha256"):
                tree = _unpack_to_cache(kept, f"mirror:{base}{name}", info["checksum"], release.version, progress)
                return tree
    tried: list[str] = []
    for name in release.tarballs:
        url = base + name
        downloads.mkdir(parents=True, exist_ok=True)
        partial = downloads / f".{name}.{os.getpid()}.part"
        try:
            progress.step(f"downloading {url}")
            try:
                _download(url, partial, progress)
            except _NotFound:
                tried.append(url)
                continue
            checksum = _verify_download(partial, name, url, release, insecure, progress)
            tree = _unpack_to_cache(partial, f"mirror:{url}", checksum, release.version, progress)
            record = {"url": url, "checksum": checksum, "sha256": sha256_file(partial)}
            (downloads / f"{name}.json.part").write_text(json.dumps(record))
            partial.replace(downloads / name)
            (downloads / f"{name}.json.part").replace(downloads / f"{name}.json")
            return tree
        finally:
            partial.unlink(missing_ok=True)
            (downloads / f"{name}.json.part").unlink(missing_ok=True)
            _remove_if_empty(downloads)
            _remove_if_empty(downloads.parent)
    raise JobFailed(
        f"Apache {release.version} is not on the mirror: {' and '.join(tried)} answered 404 Not Found",
        hint="check the mirror URL (--mirror / $APACHEWS_MIRROR) or download the tarball and use --tarball",
        urls=tried,
    )


def _verify_download(
    path: Path, name: str, url: str, release: Release, insecure: bool, progress: Progress
) -> str | None:
    """Check a download against the catalogue, else the mirror's strongest checksum file. Returns how."""
    known = release.checksums.get(name, {}).get("sha256")
    if known:
        expected, algorithm, how = known, "sha256", "sha256 (apachews catalogue)"
    else:
        found = _mirror_checksum(url, name)
        if found is None:
            if not insecure:
                raise JobFailed(
                    f"cannot verify {name}: the catalogue has no checksum for it and the mirror publishes "
                    f"no {'/'.join(CHECKSUM_ALGORITHMS)} file",
                    hint="use a mirror that publishes checksums, or pass --insecure-no-checksum",
                    url=url,
                )
            progress.note(f"{name} NOT verified: no checksum known (--insecure-no-checksum)")
            return None
        algorithm, expected, sum_url = found
        how = f"{algorithm} (mirror file {sum_url})"
    actual = _file_digest(path, algorithm)
    if actual != expected:
        raise JobFailed(
            f"{name} does not match its {how}: expected {expected}, got {actual}",
            hint="the download is corrupt or tampered with; nothing was kept. Try another mirror",
            url=url,
        )
    progress.note(f"{name} verified: {how}")
    return how


# ---- other origins -----------------------------------------------------------------------------------


def _from_tarball(tarball: Path, apache: str | None, progress: Progress) -> SourceTree:
    tarball = Path(tarball).expanduser().resolve()
    if not tarball.is_file():
        raise BadInput(f"{tarball} is not a file", hint="give the path of an httpd-*.tar.gz or .tar.bz2")
    wanted = Version.parse(apache) if apache else None
    release = catalogue.load().get(apache) if apache else None
    how = None
    known = release.checksums.get(tarball.name, {}).get("sha256") if release else None
    if known:
        if sha256_file(tarball) != known:
            raise BadInput(
                f"{tarball.name} does not match the catalogue's sha256 for Apache {release.version}",
                hint="this is not the pristine release tarball; get it again from a trusted source",
            )
        how = "sha256 (apachews catalogue)"
    return _unpack_to_cache(tarball, f"tarball:{tarball}", how, wanted, progress)


def _from_source(source: Path, apache: str | None) -> SourceTree:
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise BadInput(f"{source} is not a directory", hint="give the top directory of an httpd source tree")
    tree = _tree_info(source, f"source:{source}", None, cache_hit=True)
    _check_wanted(Version.parse(apache) if apache else None, tree.version, str(source))
    return tree


def _git(git_dir: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, **kwargs)


def _from_git(repo: Path, apache: str | None, progress: Progress) -> SourceTree:
    if not apache:
        raise BadInput("--git needs --apache V: the tag to export", hint="e.g. --git ~/httpd --apache 2.2.31")
    wanted = Version.parse(apache)
    repo = Path(repo).expanduser().resolve()
    git_dir = repo / ".git" if (repo / ".git").exists() else repo
    found = _git(git_dir, "rev-parse", "--verify", "--quiet", f"refs/tags/{wanted}^{{commit}}", text=True)
    if found.returncode != 0:
        probe = _git(git_dir, "rev-parse", "--git-dir", text=True)
        if probe.returncode != 0:
            raise BadInput(f"{repo} is not a git repository", hint="give a clone (or bare git dir) of apache/httpd")
        raise BadInput(f"{repo} has no tag {wanted}", hint="fetch the tags (git fetch --tags) or pick another version")
    commit = found.stdout.strip()
    slot = cache_dir() / "trees" / f"git-{commit[:16]}"
    final = slot / f"httpd-{wanted}"
    origin = f"git:{repo}@{wanted}"
    if (final / "include" / "ap_release.h").is_file():
        progress.step(f"reusing the exported tree {final}")
        return _tree_info(final, origin, None, cache_hit=True)
    progress.step(f"exporting tag {wanted} from {repo}")
    slot.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=slot))
    try:
        archive = _git(git_dir, "archive", "--format=tar", f"--prefix=httpd-{wanted}/", commit)
        if archive.returncode != 0:
            raise JobFailed(f"git archive {wanted} failed: {archive.stderr.decode(errors='replace').strip()}")
        tar_path = staging / "export.tar"
        tar_path.write_bytes(archive.stdout)
        del archive
        tree = _unpack(tar_path, staging, progress)
        _check_wanted(wanted, detect_version(tree), f"tag {wanted} of {repo}")
        _move_into_place(tree, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_if_empty(slot)
        _remove_if_empty(slot.parent)
    return _tree_info(final, origin, None, cache_hit=False)


def _from_pypi(apache: str | None, progress: Progress) -> SourceTree:
    release = _release_for(apache)
    sdists = catalogue.load().pypi_sdists
    sdist = sdists.get(str(release.version))
    if sdist is None:
        raise BadInput(
            f"no {PYPI_PROJECT} sdist carries Apache {release.version}",
            hint="--from-pypi serves: " + ", ".join(sorted(sdists, key=Version.parse)),
        )
    bundle = pypi_bundle(sdist, cache_dir() / "pypi", progress)
    known = release.checksums.get(bundle.httpd.name, {}).get("sha256")
    if not known:
        raise JobFailed(f"the catalogue has no sha256 for {bundle.httpd.name}; cannot verify it")
    if sha256_file(bundle.httpd) != known:
        raise JobFailed(
            f"{bundle.httpd.name} from {PYPI_PROJECT} {sdist} does not match the catalogue's sha256",
            hint=f"remove {bundle.directory} and try again",
        )
    how = "sha256 (apachews catalogue)"
    progress.note(f"{bundle.httpd.name} verified: {how}")
    return _unpack_to_cache(bundle.httpd, f"pypi:{PYPI_PROJECT}=={sdist}", how, release.version, progress)


APR_SDIST = "2.4.12.6"  # carries apr-1.5.2 and apr-util-1.5.4, which build with httpd 2.2 and early 2.4


def apr_sources(progress: Progress | None = None) -> tuple[Path, Path]:
    """apr and apr-util tarballs for a tree without srclib/apr (2.2 / early 2.4 from git), verified."""
    progress = progress or Progress()
    bundle = pypi_bundle(APR_SDIST, cache_dir() / "pypi", progress)
    known = catalogue.load().apr_checksums
    for tarball in (bundle.apr, bundle.apr_util):
        expected = known.get(tarball.name, {}).get("sha256")
        if expected is None or sha256_file(tarball) != expected:
            raise JobFailed(
                f"{tarball} does not match the catalogue's sha256",
                hint=f"remove {bundle.directory} and try again",
            )
    return bundle.apr, bundle.apr_util


def provide(
    apache: str | None = None,
    *,
    tarball: Path | None = None,
    source: Path | None = None,
    git: Path | None = None,
    from_pypi: bool = False,
    mirror: str | None = None,
    insecure_no_checksum: bool = False,
    progress: Progress | None = None,
) -> SourceTree:
    """An unpacked httpd source tree from exactly one origin (default: a mirror download of `apache`)."""
    progress = progress or Progress()
    chosen = [
        name
        for name, value in (("tarball", tarball), ("source", source), ("git", git), ("from_pypi", from_pypi))
        if value
    ]
    if len(chosen) > 1 or (chosen and mirror):
        raise BadInput(
            "give exactly one source: " + ", ".join(chosen + (["mirror"] if mirror else [])),
            hint="pick one of --mirror, --tarball, --source, --git, --from-pypi",
        )
    if apache:
        Version.parse(apache)  # malformed versions are bad input for every origin
    if tarball:
        return _from_tarball(tarball, apache, progress)
    if source:
        return _from_source(source, apache)
    if git:
        return _from_git(git, apache, progress)
    if from_pypi:
        return _from_pypi(apache, progress)
    return _from_mirror(apache, mirror, insecure_no_checksum, progress)


@dataclass(frozen=True)
class SourceOptions:
    """Where sources come from, as the user said it (the options of `apachews fetch`)."""

    tarball: Path | None = None
    source: Path | None = None
    git: Path | None = None
    from_pypi: bool = False
    mirror: str | None = None
    insecure_no_checksum: bool = False

    def provide(self, apache: str | None, progress: Progress | None = None) -> SourceTree:
        return provide(
            apache,
            tarball=self.tarball,
            source=self.source,
            git=self.git,
            from_pypi=self.from_pypi,
            mirror=self.mirror,
            insecure_no_checksum=self.insecure_no_checksum,
            progress=progress,
        )
