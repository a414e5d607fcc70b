"""apachews.sources: verified downloads from a loopback mirror, safe unpacking, every other origin."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from apachews import catalogue, sources
from apachews.errors import BadInput, JobFailed
from apachews.progress import Progress, Transfer
from tests.fixtures.mirror import CUT_AFTER, HttpdMirror, cached_files
from tests.fixtures.sources import TEST_HTTPD


class RecordingProgress(Progress):
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.notes: list[str] = []
        self.transferred: list[tuple[str, int | None, int]] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def note(self, message: str) -> None:
        self.notes.append(message)

    @contextmanager
    def transfer(self, label: str, total: int | None):
        transfer = Transfer(total)
        yield transfer
        self.transferred.append((label, total, transfer.done))


# ---- downloads from a mirror ---------------------------------------------------------------------------


def test_mirror_download_verified_by_catalogue_then_cached(apachews_cache: Path, httpd_mirror: HttpdMirror):
    progress = RecordingProgress()
    tree = sources.provide(TEST_HTTPD, mirror=httpd_mirror.url("good"), progress=progress)
    assert tree.version == catalogue.Version.parse(TEST_HTTPD)
    assert tree.path.is_relative_to(apachews_cache / "trees")
    assert tree.path.name == f"httpd-{TEST_HTTPD}"
    assert tree.has_configure and not tree.has_apr
    assert tree.checksum == "sha256 (apachews catalogue)"
    assert not tree.cache_hit
    assert tree.origin == f"mirror:{httpd_mirror.url('good')}httpd-{TEST_HTTPD}.tar.gz"
    assert any("verified: sha256 (apachews catalogue)" in note for note in progress.notes)
    # The .tar.bz2 is tried first (404 here), then the .tar.gz arrives with a byte count.
    [(label, total, done)] = progress.transferred
    assert label == f"httpd-{TEST_HTTPD}.tar.gz" and total == done > 1_000_000
    kept = [name for name in cached_files(apachews_cache) if name.endswith(".tar.gz")]
    assert len(kept) == 1

    again = sources.provide(TEST_HTTPD, mirror=httpd_mirror.url("good"))
    assert again.cache_hit and again.path == tree.path and again.checksum == tree.checksum


def test_strongest_mirror_checksum_file_is_used(apachews_cache: Path, httpd_mirror: HttpdMirror):
    progress = RecordingProgress()
    tree = sources.provide("2.4.66", mirror=httpd_mirror.url("good"), progress=progress)
    assert str(tree.version) == "2.4.66"
    assert tree.checksum.startswith("sha512 (mirror file ")  # .sha256 is published too
    assert tree.checksum.endswith("httpd-2.4.66.tar.gz.sha512)")
    assert any(note.startswith("httpd-2.4.66.tar.gz verified: sha512") for note in progress.notes)


def test_tar_bz2_and_gpg_style_sha1(apachews_cache: Path, httpd_mirror: HttpdMirror):
    tree = sources.provide("2.4.65", mirror=httpd_mirror.url("good"))
    assert tree.checksum.startswith("sha1 (mirror file ") and tree.origin.endswith("httpd-2.4.65.tar.bz2")
    assert (tree.path / "include" / "ap_release.h").is_file()


def test_no_checksum_anywhere_is_refused_unless_opted_out(apachews_cache: Path, httpd_mirror: HttpdMirror):
    with pytest.raises(JobFailed, match="cannot verify httpd-2.4.64.tar.gz") as caught:
        sources.provide("2.4.64", mirror=httpd_mirror.url("good"))
    assert "--insecure-no-checksum" in caught.value.hint
    assert cached_files(apachews_cache) == []
    progress = RecordingProgress()
    tree = sources.provide("2.4.64", mirror=httpd_mirror.url("good"), insecure_no_checksum=True, progress=progress)
    assert tree.checksum is None and str(tree.version) == "2.4.64"
    assert any("NOT verified" in note for note in progress.notes)


def test_404_names_the_urls(apachews_cache: Path, httpd_mirror: HttpdMirror):
    with pytest.raises(JobFailed) as caught:
        sources.provide(TEST_HTTPD, mirror=httpd_mirror.url("empty"))
    for suffix in (".tar.bz2", ".tar.gz"):
        assert f"{httpd_mirror.url('empty')}httpd-{TEST_HTTPD}{suffix}" in caught.value.message
    assert cached_files(apachews_cache) == []


def test_mirror_checksum_mismatch_keeps_nothing(apachews_cache: Path, httpd_mirror: HttpdMirror):
    with pytest.raises(JobFailed, match=r"does not match its sha512 \(mirror file"):
        sources.provide("2.4.66", mirror=httpd_mirror.url("badsum"))
    assert cached_files(apachews_cache) == []


def test_catalogue_checksum_beats_the_mirror(apachews_cache: Path, httpd_mirror: HttpdMirror):
    # badsum/ serves another file as httpd-2.4.69.tar.gz with a matching .sha256: the catalogue catches it.
    with pytest.raises(JobFailed, match=r"does not match its sha256 \(apachews catalogue\)"):
        sources.provide(TEST_HTTPD, mirror=httpd_mirror.url("badsum"))
    assert cached_files(apachews_cache) == []


def test_interrupted_download_keeps_no_partial_file(apachews_cache: Path, httpd_mirror: HttpdMirror):
    with pytest.raises(JobFailed, match="interrupted") as caught:
        sources.provide(TEST_HTTPD, mirror=httpd_mirror.url("cut"))
    assert caught.value.details["url"].endswith(f"httpd-{TEST_HTTPD}.tar.gz")
    assert cached_files(apachews_cache) == []


def test_ctrl_c_during_download_keeps_no_partial_file(apachews_cache: Path, httpd_mirror: HttpdMirror):
    class Interrupting(Progress):
        @contextmanager
        def transfer(self, label: str, total: int | None):
            class Stop(Transfer):
                def advance(self, count: int) -> None:
                    super().advance(count)
                    if self.done > CUT_AFTER:
                        raise KeyboardInterrupt

            yield Stop(total)

    with pytest.raises(KeyboardInterrupt):
        sources.provide(TEST_HTTPD, mirror=httpd_mirror.url("good"), progress=Interrupting())
    assert cached_files(apachews_cache) == []


def test_corrupt_tarball_is_bad_input(apachews_cache: Path, httpd_mirror: HttpdMirror):
    with pytest.raises(BadInput, match="not a readable .tar.gz/.tar.bz2 archive"):
        sources.provide("2.4.66", mirror=httpd_mirror.url("corrupt"))
    assert cached_files(apachews_cache) == []


@pytest.mark.parametrize(
    "variant, complaint",
    [
        ("evil-dotdot", "would be written outside the tree"),
        ("evil-absolute", "would be written outside the tree"),
        ("evil-symlink", "leaves the tree"),
        ("evil-hardlink", "points to the absolute path"),
        ("evil-device", "is a device"),
    ],
)
def test_hostile_tarball_is_rejected(apachews_cache: Path, httpd_mirror: HttpdMirror, variant: str, complaint: str):
    with pytest.raises(BadInput, match=complaint):
        sources.provide("2.4.66", mirror=httpd_mirror.url(variant))
    assert cached_files(apachews_cache) == []
    assert not Path("/tmp/apachews-absolute-escape.txt").exists()
    assert not (apachews_cache / "apachews-escaped.txt").exists()
    assert not (apachews_cache.parent / "apachews-escaped.txt").exists()


def test_unknown_and_unreleased_versions(apachews_cache: Path, httpd_mirror: HttpdMirror):
    with pytest.raises(BadInput, match="not in the catalogue") as caught:
        sources.provide("2.4.99", mirror=httpd_mirror.url("good"))
    assert "2.4.9" in caught.value.details["close_matches"]
    with pytest.raises(BadInput, match="never released"):
        sources.provide("2.2.1", mirror=httpd_mirror.url("good"))
    with pytest.raises(BadInput, match="not an Apache version"):
        sources.provide("2.4", mirror=httpd_mirror.url("good"))
    assert cached_files(apachews_cache) == []


def test_mirror_from_environment_and_bad_mirror(
    apachews_cache: Path, httpd_mirror: HttpdMirror, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("APACHEWS_MIRROR", httpd_mirror.url("good").rstrip("/"))
    assert str(sources.provide("2.4.66").version) == "2.4.66"
    with pytest.raises(BadInput, match="neither an http"):
        sources.provide("2.4.66", mirror="ftp://127.0.0.1/httpd/")


def test_cache_dir_default_is_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("APACHEWS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sources.cache_dir() == tmp_path / "apachews"
    monkeypatch.setenv("APACHEWS_CACHE", str(tmp_path / "elsewhere"))
    assert sources.cache_dir() == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    "text, algorithm, names_the_file",
    [
        ("{d}  httpd-2.2.31.tar.gz\n", "sha256", True),
        ("{d} *httpd-2.2.31.tar.gz\n", "sha256", True),
        ("SHA512 (httpd-2.2.31.tar.gz) = {d}\n", "sha512", True),
        ("MD5 (httpd-2.2.31.tar.gz) = {d}\n", "md5", True),
        ("{d}\n", "sha1", False),  # a bare hash names no file: it is taken for whichever file was asked
        ("httpd-2.2.31.tar.gz: {D}\n", "sha1", True),
    ],
)
def test_parse_checksum_file_styles(text: str, algorithm: str, names_the_file: bool):
    import hashlib

    digest = hashlib.new(algorithm, b"x").hexdigest()
    grouped = " ".join(digest.upper()[i : i + 4] for i in range(0, len(digest), 4))
    content = text.format(d=digest, D=grouped)
    assert sources.parse_checksum_file(content, "httpd-2.2.31.tar.gz", algorithm) == digest
    other = sources.parse_checksum_file(content, "other.tar.gz", algorithm)
    assert other == (None if names_the_file else digest)
    truncated = text.format(d=digest[:-2], D=grouped[:-2])  # a digest of the wrong length is not one
    assert sources.parse_checksum_file(truncated, "httpd-2.2.31.tar.gz", algorithm) is None


# ---- other origins ---------------------------------------------------------------------------------------


def test_local_tarball(apachews_cache: Path, httpd24_tarball: Path):
    tree = sources.provide(TEST_HTTPD, tarball=httpd24_tarball)
    assert tree.version == catalogue.Version.parse(TEST_HTTPD)
    assert tree.checksum == "sha256 (apachews catalogue)" and tree.origin == f"tarball:{httpd24_tarball}"
    assert sources.provide(tarball=httpd24_tarball).cache_hit  # no --apache: version detected


def test_local_tarball_version_mismatch_refused(apachews_cache: Path, httpd24_tarball: Path):
    with pytest.raises(BadInput, match=f"holds Apache {TEST_HTTPD}, not the 2.4.68") as caught:
        sources.provide("2.4.68", tarball=httpd24_tarball)
    assert caught.value.details["detected"] == TEST_HTTPD
    assert cached_files(apachews_cache) == []


def test_tarball_that_is_not_httpd(apachews_cache: Path, pypi_bundle: sources.PypiBundle, tmp_path: Path):
    with pytest.raises(BadInput, match="not an Apache httpd source tree"):
        sources.provide(tarball=pypi_bundle.apr)
    with pytest.raises(BadInput, match="is not a git repository"):
        sources.provide("2.2.31", git=tmp_path)
    assert cached_files(apachews_cache) == []


def test_source_tree_used_in_place(apachews_cache: Path, httpd24_pristine: Path, tmp_path: Path):
    tree = sources.provide(TEST_HTTPD, source=httpd24_pristine)
    assert tree.path == httpd24_pristine and tree.has_configure and tree.origin.startswith("source:")
    assert sources.detect_version(httpd24_pristine) == tree.version
    with pytest.raises(BadInput, match="not the 2.2.31"):
        sources.provide("2.2.31", source=httpd24_pristine)
    with pytest.raises(BadInput, match="not an Apache httpd source tree"):
        sources.provide(TEST_HTTPD, source=tmp_path)
    assert cached_files(apachews_cache) == []


def test_exactly_one_origin(apachews_cache: Path, httpd24_tarball: Path, httpd24_pristine: Path):
    with pytest.raises(BadInput, match="exactly one source"):
        sources.provide(TEST_HTTPD, tarball=httpd24_tarball, source=httpd24_pristine)
    with pytest.raises(BadInput, match="exactly one source"):
        sources.provide(TEST_HTTPD, from_pypi=True, mirror="http://127.0.0.1:9/")


def test_source_on_git_exported_tree(apachews_cache: Path, git_tree):
    tree = sources.provide("2.2.31", source=git_tree("2.2.31"))
    assert str(tree.version) == "2.2.31"
    assert not tree.has_configure and not tree.has_apr  # git trees need buildconf and apr_sources()


def test_git_export_into_cache(apachews_cache: Path, httpd_git: Path):
    tree = sources.provide("2.4.1", git=httpd_git)
    assert str(tree.version) == "2.4.1" and not tree.cache_hit
    assert tree.path.is_relative_to(apachews_cache / "trees") and tree.origin.endswith("@2.4.1")
    assert sources.provide("2.4.1", git=httpd_git).cache_hit
    with pytest.raises(BadInput, match="needs --apache"):
        sources.provide(git=httpd_git)


def test_git_without_the_tag(apachews_cache: Path, tmp_path: Path):
    subprocess.run(["git", "init", "-q", str(tmp_path / "httpd")], check=True)
    with pytest.raises(BadInput, match="has no tag 2.4.1"):
        sources.provide("2.4.1", git=tmp_path / "httpd")
    assert cached_files(apachews_cache) == []


def test_from_pypi(apachews_cache: Path):
    tree = sources.provide(TEST_HTTPD, from_pypi=True)
    assert tree.version == catalogue.Version.parse(TEST_HTTPD) and tree.has_configure
    assert tree.checksum == "sha256 (apachews catalogue)" and tree.origin == "pypi:mod-wsgi-httpd==2.4.69.1"
    with pytest.raises(BadInput, match="no mod-wsgi-httpd sdist carries Apache 2.2.31"):
        sources.provide("2.2.31", from_pypi=True)


def test_apr_sources_for_old_trees(apachews_cache: Path):
    apr, apr_util = sources.apr_sources()
    assert (apr.name, apr_util.name) == ("apr-1.5.2.tar.gz", "apr-util-1.5.4.tar.gz")
    checksums = catalogue.load().apr_checksums
    assert sources.sha256_file(apr) == checksums[apr.name]["sha256"]


# ---- the command ----------------------------------------------------------------------------


def _fetch(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {"APACHEWS_CACHE": str(cache), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "apachews", "fetch", *args], capture_output=True, text=True, env=env)


def test_fetch_command(apachews_cache: Path, httpd_mirror: HttpdMirror):
    done = _fetch("--apache", "2.4.66", "--mirror", httpd_mirror.url("good"), "--json", cache=apachews_cache)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True and data["version"] == "2.4.66" and data["cache_hit"] is False
    assert data["checksum"].startswith("sha512 (mirror file") and data["checksum_algorithm"] == "sha512"
    assert data["origin"].startswith("mirror:http://127.0.0.1:") and Path(data["path"]).is_dir()
    assert done.stderr == ""  # no progress under --json

    plain = _fetch("--apache", "2.4.66", "--mirror", httpd_mirror.url("good"), cache=apachews_cache)
    assert plain.returncode == 0 and plain.stdout.strip() == data["path"]
    assert "\r" not in plain.stderr  # no progress bar without a terminal

    failed = _fetch("--apache", "2.4.66", "--mirror", httpd_mirror.url("badsum"), "--json", cache=apachews_cache)
    assert failed.returncode == 1 and json.loads(failed.stdout)["ok"] is False
    bad = _fetch("--apache", "2.2.1", "--mirror", httpd_mirror.url("good"), cache=apachews_cache)
    assert bad.returncode == 2 and "never released" in bad.stderr


def test_fetch_verbose_logs_what_it_does(apachews_cache: Path, httpd_mirror: HttpdMirror):
    quiet = _fetch("--apache", "2.4.66", "--mirror", httpd_mirror.url("good"), cache=apachews_cache)
    assert quiet.returncode == 0 and "INFO" not in quiet.stderr
    env = {"APACHEWS_CACHE": str(apachews_cache), "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-m", "apachews", "-v", "fetch", "--apache", "2.4.66", "--mirror", httpd_mirror.url("good")]
    verbose = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO apachews.sources.store: cache hit" in verbose.stderr
    argv[3], argv[6] = "-vv", "2.4.65"  # not cached yet: downloads
    debug = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert f"DEBUG apachews.sources.download: GET {httpd_mirror.url('good')}httpd-2.4.65" in debug.stderr


def test_fetch_draws_a_progress_bar_on_a_terminal(apachews_cache: Path, httpd_mirror: HttpdMirror):
    controller, terminal = pty.openpty()
    env = {"APACHEWS_CACHE": str(apachews_cache), "PATH": "/usr/bin:/bin"}
    mirror = httpd_mirror.url("good")
    with subprocess.Popen(
        [sys.executable, "-m", "apachews", "fetch", "--apache", TEST_HTTPD, "--mirror", mirror],
        stdout=subprocess.PIPE, stderr=terminal, env=env,
    ) as child:  # fmt: skip
        os.close(terminal)
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        out, _ = child.communicate(timeout=60)
    os.close(controller)
    assert child.returncode == 0
    assert f"httpd-{TEST_HTTPD}.tar.gz [" in drawn.decode() and "MiB" in drawn.decode()
    assert b"verified: sha256 (apachews catalogue)" in drawn
    assert out.decode().strip().endswith(f"httpd-{TEST_HTTPD}")
