"""Origin "git": the release tag exported from an apache/httpd clone (also tags that were never released)."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from apachews.catalogue import Release
from apachews.errors import BadInput, JobFailed
from apachews.progress import Progress
from apachews.sources import store
from apachews.sources.tree import SourceTree, is_tree, tree_info
from apachews.sources.unpack import unpack_single_top

log = logging.getLogger(__name__)


def _git(git_dir: Path, *args: str, text: bool = False) -> subprocess.CompletedProcess:
    log.debug("git --git-dir=%s %s", git_dir, " ".join(args))
    try:
        return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=text)
    except FileNotFoundError as error:
        raise BadInput("--git needs git on this machine", hint="apt-get install git") from error


def from_git(repo: Path, release: Release | None, progress: Progress) -> SourceTree:
    if release is None:
        raise BadInput("--git needs --apache V: the tag to export", hint="e.g. --git ~/httpd --apache 2.2.31")
    wanted = release.version
    repo = Path(repo).expanduser().resolve()
    git_dir = repo / ".git" if (repo / ".git").exists() else repo
    found = _git(git_dir, "rev-parse", "--verify", "--quiet", f"refs/tags/{wanted}^{{commit}}", text=True)
    if found.returncode != 0:
        probe = _git(git_dir, "rev-parse", "--git-dir", text=True)
        if probe.returncode != 0:
            raise BadInput(f"{repo} is not a git repository", hint="give a clone (or bare git dir) of apache/httpd")
        raise BadInput(f"{repo} has no tag {wanted}", hint="fetch the tags (git fetch --tags) or pick another version")
    commit = found.stdout.strip()
    slot = store.trees_dir() / f"git-{commit[:16]}"
    origin = f"git:{repo}@{wanted}"
    if is_tree(slot / f"httpd-{wanted}"):
        progress.step(f"reusing the exported tree {slot / f'httpd-{wanted}'}")
        log.info("cache hit: tag %s exported before", wanted)
        return tree_info(slot / f"httpd-{wanted}", origin, None, cache_hit=True)
    progress.step(f"exporting tag {wanted} from {repo}")

    def export(scratch: Path) -> Path:
        archive = _git(git_dir, "archive", "--format=tar", f"--prefix=httpd-{wanted}/", commit)
        if archive.returncode != 0:
            raise JobFailed(f"git archive {wanted} failed: {archive.stderr.decode(errors='replace').strip()}")
        tar_path = scratch / "export.tar"
        tar_path.write_bytes(archive.stdout)
        del archive
        return unpack_single_top(tar_path, scratch)

    final = store.place_tree(slot, export, release, f"tag {wanted} of {repo}")
    return tree_info(final, origin, None, cache_hit=False)
