"""`apachews cache list|prune` through the real command line: the file cache, and labelled build volumes in
the real engine (only volumes these tests make are removed: the engine is shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from apachews import images

# Tagged but never released: no matrix or test builds it, so pruning by it touches only our volumes.
UNUSED_RELEASE = "2.4.5"


def run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apachews", "cache", *args, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "APACHEWS_CACHE": str(cache)},
        timeout=300,
    )


def entries(done: subprocess.CompletedProcess, key: str = "entries") -> dict[str, dict]:
    assert done.returncode == 0, done.stderr
    return {entry["name"]: entry for entry in json.loads(done.stdout)[key]}


def test_file_cache_listed_with_sizes_and_pruned(tmp_path: Path):
    cache = tmp_path / "cache"
    (cache / "downloads" / "abc").mkdir(parents=True)
    (cache / "downloads" / "abc" / "httpd-2.4.69.tar.gz").write_bytes(b"x" * 300_000)
    (cache / "trees" / "def" / "httpd-2.4.69").mkdir(parents=True)
    (cache / "trees" / "def" / "httpd-2.4.69" / "README").write_bytes(b"y" * 1000)
    (cache / "locks").mkdir()
    (cache / "locks" / "build-x.lock").touch()
    shared = tmp_path / "shared-pypi"
    (shared / "sdist").mkdir(parents=True)
    (cache / "pypi").symlink_to(shared)  # a linked directory is not ours to empty

    listed = entries(run("list", "--kind", "download", cache=cache))
    assert set(listed) == {"downloads/abc", "trees/def"}
    assert listed["downloads/abc"]["size"] >= 300_000 and listed["trees/def"]["size"] >= 1000

    dry = entries(run("prune", "--kind", "download", "--dry-run", cache=cache), "removed")
    assert set(dry) == {"downloads/abc", "trees/def"} and (cache / "downloads" / "abc").exists()
    recent = entries(run("prune", "--kind", "download", "--older-than", "1", cache=cache), "removed")
    assert recent == {}  # written a moment ago: not older than a day

    done = run("prune", "--kind", "download", cache=cache)
    assert set(entries(done, "removed")) == {"downloads/abc", "trees/def"}
    assert json.loads(done.stdout)["freed_bytes"] >= 301_000
    assert not (cache / "downloads" / "abc").exists() and not (cache / "trees" / "def").exists()
    assert (shared / "sdist").is_dir() and (cache / "locks" / "build-x.lock").exists()
    assert entries(run("list", "--kind", "download", cache=cache)) == {}


@pytest.fixture
def build_volumes(docker_engine):
    """A labelled build volume (with a file in it) and an unlabelled one named like the volumes of old builds."""
    if not images.image_exists(docker_engine, images.DEFAULT_BASE_IMAGE):
        pytest.skip(f"no {images.DEFAULT_BASE_IMAGE} to fill a volume with: `apachews image bootstrap` makes it")
    tag = uuid.uuid4().hex[:12]
    labelled = images.build_volume(
        docker_engine, f"{images.BUILD_VOLUME_PREFIX}test17-{tag}", {"apachews.version": UNUSED_RELEASE}
    )
    docker_engine.containers.run(
        images.DEFAULT_BASE_IMAGE,
        ["sh", "-c", "head -c 2000000 /dev/zero > /build/blob"],
        volumes={labelled: {"bind": "/build", "mode": "rw"}},
        network_mode="none",
        remove=True,
    )
    legacy = docker_engine.volumes.create(f"{images.BUILD_VOLUME_PREFIX}test17-old-{tag}").name
    yield labelled, legacy
    for name in (labelled, legacy):
        try:
            docker_engine.volumes.get(name).remove(force=True)
        except Exception:  # noqa: BLE001 - removed by the test already
            pass


def test_build_volumes_listed_with_labels_and_sizes(docker_engine, build_volumes, tmp_path: Path):
    labelled, legacy = build_volumes
    volumes = entries(run("list", "--kind", "volume", cache=tmp_path))
    assert volumes[labelled]["labels"]["apachews"] == "build" and volumes[labelled]["version"] == UNUSED_RELEASE
    assert volumes[labelled]["size"] >= 2_000_000
    assert legacy in volumes and volumes[legacy]["version"] is None  # found by its name
    only = entries(run("list", "--apache", UNUSED_RELEASE, cache=tmp_path))
    assert labelled in only and legacy not in only


def test_prune_spares_a_volume_whose_build_is_running(docker_engine, build_volumes, tmp_path: Path):
    labelled, _ = build_volumes
    with images.workspace_lock(labelled.removeprefix(images.BUILD_VOLUME_PREFIX)):  # what a running build holds
        held = run("prune", "--kind", "volume", "--apache", UNUSED_RELEASE, cache=tmp_path)
        kept = entries(held, "kept")
        assert labelled in kept and "lock" in kept[labelled]["in_use"]
        assert labelled not in entries(held, "removed")
        docker_engine.volumes.get(labelled)  # still there
    done = run("prune", "--kind", "volume", "--apache", UNUSED_RELEASE, cache=tmp_path)
    assert labelled in entries(done, "removed")
    assert labelled not in {v.name for v in docker_engine.volumes.list()}
