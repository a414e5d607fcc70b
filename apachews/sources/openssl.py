"""OpenSSL sources for mod_ssl, from one origin of the same shape as httpd's: a directory, a git ref, or a
tarball with its sha256. Releases whose mod_ssl needs an OpenSSL the build image lacks (2.2, early 2.4:
1.0.2, see build-flags.json) build it from these sources, statically, into their mod_ssl.

<cache>/trees/openssl-git-<commit>/openssl-V/      a git ref, exported
<cache>/trees/openssl-<tarball sha256>/openssl-V/  a tarball, unpacked
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from apachews.errors import BadInput, JobFailed
from apachews.fsutil import move_into_place, remove_empty, scratch_dir, sha256_file
from apachews.progress import Progress
from apachews.sources import store
from apachews.sources.unpack import HOSTILE_HINT, unpack_single_top

log = logging.getLogger(__name__)

_VERSION_TEXT = re.compile(r'^\s*#\s*define\s+OPENSSL_VERSION_TEXT\s+"OpenSSL\s+([0-9][0-9a-z.-]*)', re.M)
_SHA256 = re.compile(r"[0-9a-f]{64}")
HINT = "give --openssl-source DIR, --openssl-git PATH [--openssl-ref REF] or --openssl-tarball FILE --openssl-sha256 X"


@dataclass(frozen=True)
class OpenSSLTree:
    path: Path  # the build digests its content: that names it in the build's identity
    version: str  # e.g. "1.0.2u"
    origin: str


def detect_version(tree: Path) -> str:
    """The OpenSSL version of a source tree, read from crypto/opensslv.h (include/openssl/ on 1.1+)."""
    for header in (tree / "crypto" / "opensslv.h", tree / "include" / "openssl" / "opensslv.h"):
        if header.is_file():
            found = [v.removesuffix("-fips") for v in _VERSION_TEXT.findall(header.read_text(errors="replace"))]
            if found:
                return found[-1]
    raise BadInput(
        f"{tree} is not an OpenSSL source tree (no OPENSSL_VERSION_TEXT in crypto/opensslv.h)",
        hint="give the top directory of an OpenSSL source tree (the one holding Configure and crypto/)",
    )


@dataclass(frozen=True)
class OpenSSLOptions:
    """Where OpenSSL comes from, as the user said it (`--openssl-*`); `without`: build no mod_ssl."""

    source: Path | None = None
    git: Path | None = None
    ref: str | None = None
    tarball: Path | None = None
    sha256: str | None = None
    without: bool = False

    def __post_init__(self) -> None:
        chosen = [name for name in ("source", "git", "tarball") if getattr(self, name)]
        if len(chosen) > 1:
            raise BadInput("give one OpenSSL origin: " + ", ".join(f"--openssl-{name}" for name in chosen), hint=HINT)
        if self.without and chosen:
            raise BadInput("--without-ssl and --openssl-* ask for different builds", hint="give one of them")
        if self.ref and not self.git:
            raise BadInput("--openssl-ref names a commit of --openssl-git", hint="add --openssl-git PATH")
        if self.tarball and not self.sha256:
            raise BadInput(
                "--openssl-tarball needs --openssl-sha256: nothing else can say it is the real release",
                hint="give the sha256 published beside the tarball (openssl-V.tar.gz.sha256)",
            )
        if self.sha256 and not self.tarball:
            raise BadInput("--openssl-sha256 checks --openssl-tarball", hint="add --openssl-tarball FILE")
        if self.sha256 and not _SHA256.fullmatch(self.sha256.lower()):
            raise BadInput(f"--openssl-sha256 {self.sha256!r} is not 64 hex digits")

    @property
    def given(self) -> bool:
        return bool(self.source or self.git or self.tarball)

    def identity(self) -> dict[str, str]:
        """What names the origin in a cache key (the sources' own digest is added once they are provided)."""
        return {name: str(value) for name, value in self.__dict__.items() if value}

    def provide(self, progress: Progress | None = None) -> OpenSSLTree:
        progress = progress or Progress()
        if self.source:
            return from_directory(self.source)
        if self.git:
            return from_git(self.git, self.ref or "HEAD", progress)
        if self.tarball:
            return from_tarball(self.tarball, self.sha256 or "", progress)
        raise BadInput("no OpenSSL sources given", hint=HINT)


def from_directory(source: Path) -> OpenSSLTree:
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise BadInput(f"{source} is not a directory", hint="give the top directory of an OpenSSL source tree")
    return OpenSSLTree(source, detect_version(source), f"source:{source}")


def _git(git_dir: Path, *args: str, text: bool = False) -> subprocess.CompletedProcess:
    log.debug("git --git-dir=%s %s", git_dir, " ".join(args))
    try:
        return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=text)
    except FileNotFoundError as error:
        raise BadInput("--openssl-git needs git on this machine", hint="apt-get install git") from error


def from_git(repo: Path, ref: str, progress: Progress) -> OpenSSLTree:
    repo = Path(repo).expanduser().resolve()
    git_dir = repo / ".git" if (repo / ".git").exists() else repo
    if ref.startswith("-"):
        raise BadInput(f"--openssl-ref {ref!r} is not a git ref")
    found = _git(git_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", text=True)
    if found.returncode != 0:
        if _git(git_dir, "rev-parse", "--git-dir", text=True).returncode != 0:
            raise BadInput(f"{repo} is not a git repository", hint="give a clone (or bare git dir) of OpenSSL")
        raise BadInput(
            f"{repo} has no ref {ref}",
            hint="give a tag, branch or commit it has (git --git-dir=PATH log --oneline), or leave out --openssl-ref",
        )
    commit = found.stdout.strip()
    slot = store.trees_dir() / f"openssl-git-{commit[:16]}"
    origin = f"git:{repo}@{ref}"
    kept = _kept(slot)
    if kept is not None:
        progress.step(f"reusing the exported OpenSSL {kept}")
        return OpenSSLTree(kept, detect_version(kept), origin)
    progress.step(f"exporting OpenSSL {ref} from {repo}")

    def export(scratch: Path) -> Path:
        archive = _git(git_dir, "archive", "--format=tar", "--prefix=openssl/", commit)
        if archive.returncode != 0:
            raise JobFailed(f"git archive {ref} failed: {archive.stderr.decode(errors='replace').strip()}")
        tar_path = scratch / "export.tar"
        tar_path.write_bytes(archive.stdout)
        del archive
        return unpack_single_top(tar_path, scratch)

    path = _place(slot, export)
    return OpenSSLTree(path, detect_version(path), origin)


def from_tarball(tarball: Path, sha256: str, progress: Progress) -> OpenSSLTree:
    tarball = Path(tarball).expanduser().resolve()
    if not tarball.is_file():
        raise BadInput(f"{tarball} is not a file", hint="give the path of an openssl-*.tar.gz")
    actual = sha256_file(tarball)
    if actual != sha256.lower():
        raise BadInput(f"{tarball.name}: sha256 {actual}, not the {sha256.lower()} given", hint=HOSTILE_HINT)
    slot = store.trees_dir() / f"openssl-{actual[:16]}"
    kept = _kept(slot)
    if kept is None:
        progress.step(f"unpacking {tarball.name}")
        kept = _place(slot, lambda scratch: unpack_single_top(tarball, scratch))
    return OpenSSLTree(kept, detect_version(kept), f"tarball:{tarball}")


def _kept(slot: Path) -> Path | None:
    for path in sorted(slot.glob("openssl-*")) if slot.is_dir() else []:
        if (path / "crypto" / "opensslv.h").is_file() or (path / "include" / "openssl" / "opensslv.h").is_file():
            return path
    return None


def _place(slot: Path, make) -> Path:
    """Make a tree in a scratch dir, name it slot/openssl-V; a concurrent run's tree is kept if it came first."""
    try:
        with scratch_dir(slot, prefix=".unpack-") as scratch:
            staged = make(scratch)
            final = slot / f"openssl-{detect_version(staged)}"
            move_into_place(staged, final)
    finally:
        remove_empty(slot, slot.parent)
    return final
