"""Docker images for builds: a base made with debootstrap (no registry needed) and builder images.

`bootstrap()` makes `apachews/base:<suite>` from a suite's packages with every build dependency
preinstalled, so module builds need no network. `builder_image()` renders the Dockerfile template of
the base image's family (templates/docker/) and builds it once per rendered text.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound

from apachews.distros import catalogue as distributions
from apachews.errors import BadInput, JobFailed
from apachews.fsutil import fingerprint
from apachews.progress import Progress
from apachews.resources import template_environment
from apachews.serial import Serialised

log = logging.getLogger(__name__)

DEFAULT_SUITE = distributions.build_base().suite
BASE_REPOSITORY = "apachews/base"
BUILDER_REPOSITORY = "apachews/builder"
DEFAULT_BASE_IMAGE = f"{BASE_REPOSITORY}:{DEFAULT_SUITE}"
# A real older distribution's own Apache, to run a module on a system other than the build host: a root
# of its packages, as the base image is made (debootstrap, no registry). It also runs an sshd, so the
# server stage can reach it the way an admin reaches a server.
TARGET_REPOSITORY = "apachews/target"
TARGET_PACKAGES = distributions.build_base().target_packages
# Everything apachews makes in the engine carries the label `apachews=<base|builder|build>`, so that
# `apachews cache list|prune` finds it (volumes made before the labels: by their name prefix).
LABEL = "apachews"
# A bootstrapped image also carries the fingerprint of the package list it was made from: an image made from
# an older list (e.g. before libssl-dev joined BUILD_PACKAGES) is stale, and bootstrap() makes it again.
PACKAGES_LABEL = "apachews.packages"
BUILD_VOLUME_PREFIX = "apachews-build-"
# What httpd 2.2 and 2.4 need to buildconf, configure and compile (apr and apr-util come as sources).
# The packages of the base image (ccache: build.sh shares one compiler cache across releases and MPMs;
# libssl-dev: mod_ssl of 2.4.52+ links its libssl.a/libcrypto.a) and the image names yum serves: distribution
# facts, kept in apachews/data/distributions.json.
BUILD_PACKAGES = distributions.build_base().packages
NO_DAEMON_HINT = (
    "start a Docker engine (as root: dockerd --bridge=none --iptables=false > /var/log/dockerd.log 2>&1 &), "
    "or build with the host toolchain: --builder local"
)


def client() -> docker.DockerClient:
    """A client for a Docker engine that answers, or BadInput saying how to get one."""
    try:
        engine = docker.from_env(timeout=600)
        engine.ping()
    except DockerException as error:
        raise BadInput(f"no Docker engine reachable ({error})", hint=NO_DAEMON_HINT) from error
    return engine


def packages_fingerprint(packages: tuple[str, ...]) -> str:
    return fingerprint(sorted(packages), 12)


def image_packages(engine: docker.DockerClient, tag: str) -> str | None:
    """The package-list fingerprint an image was bootstrapped from (None: not ours, or made before the label)."""
    labels = engine.images.get(tag).labels or {}
    return labels.get(PACKAGES_LABEL)


def is_stale(engine: docker.DockerClient, tag: str, packages: tuple[str, ...] = BUILD_PACKAGES) -> bool:
    """Whether the bootstrapped image `tag` exists but was made from another package list than `packages`."""
    return image_exists(engine, tag) and image_packages(engine, tag) != packages_fingerprint(packages)


def image_exists(engine: docker.DockerClient, tag: str) -> bool:
    try:
        engine.images.get(tag)
        return True
    except ImageNotFound:
        return False


def build_volume(engine: docker.DockerClient, name: str, labels: dict[str, str]) -> str:
    """Create the named build volume with its labels (what it builds), unless it exists already."""
    try:
        engine.volumes.get(name)
    except docker.errors.NotFound:
        engine.volumes.create(name, labels={LABEL: "build", **labels})
    return name


def lock_dir() -> Path:
    """Where build workspace locks live: one directory for the whole host (not per $APACHEWS_CACHE), since
    the Docker engine and its volumes are shared by every user and cache of this host."""
    path = Path(os.environ.get("APACHEWS_LOCK_DIR") or Path(tempfile.gettempdir()) / "apachews-locks")
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            path.chmod(0o1777)  # any user of the engine may lock; only the owner may remove a lock file
    return path


def workspace_lock_path(key: str) -> Path:
    return lock_dir() / f"build-{key}.lock"


@contextlib.contextmanager
def workspace_lock(key: str, progress: Progress | None = None) -> Iterator[None]:
    """Hold the lock of build workspace `key` (a volume, or a local build tree): one build at a time in it.
    Says so when another build holds it, rather than waiting in silence."""
    path = workspace_lock_path(key)
    with open(path, "a") as handle:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            (progress or Progress()).step("waiting for another build of the same release and image to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def single_file_tar(name: str, data: bytes, mode: int = 0o644) -> bytes:
    """An in-memory tar holding one file: how the Docker API takes a build context or a put_archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class ImageInfo(Serialised):
    tag: str
    id: str
    created: bool
    seconds: float
    _rounded = {"seconds": 1}


def base_tag(suite: str) -> str:
    return f"{BASE_REPOSITORY}:{suite}"


def target_tag(target: str) -> str:
    return f"{TARGET_REPOSITORY}:{target}"


def target_image(target: str, force: bool = False, progress: Progress | None = None) -> ImageInfo:
    """`apachews/target:<target>`: a root of that distribution's own Apache (and sshd) from its packages.

    `target` is a distribution of the catalogue with a suite that debootstrap can fetch."""
    from apachews.distros import catalogue  # the distribution facts; images stays below distros

    distribution = catalogue.get(target)
    if distribution.suite is None:
        with_suite = [d.key for d in catalogue.distributions().values() if d.suite]
        raise BadInput(
            f"{distribution.name} cannot be made here: no suite of it is reachable",
            hint=f"targets that can be made: {', '.join(with_suite)}",
        )
    return bootstrap(
        distribution.suite,
        tag=target_tag(target),
        force=force,
        progress=progress,
        packages=TARGET_PACKAGES,
        label="target",
    )


def bootstrap(
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    tag: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
    packages: tuple[str, ...] = BUILD_PACKAGES,
    label: str = "base",
) -> ImageInfo:
    """debootstrap an image of `packages` (by default the build base) from `suite`'s packages and import it."""
    progress = progress or Progress()
    if not re.fullmatch(r"[a-z][a-z0-9-]{1,30}", suite):
        raise BadInput(f"{suite!r} is not a suite name debootstrap takes", hint=f"e.g. {DEFAULT_SUITE}")
    tag = tag or base_tag(suite)
    engine = client()
    started = time.monotonic()
    if image_exists(engine, tag) and not force:
        if not is_stale(engine, tag, packages):
            log.info("base image %s exists", tag)
            return ImageInfo(tag, engine.images.get(tag).id, False, 0.0)
        progress.step(f"{tag} was made from another package list than this apachews needs: making it again")
    if shutil.which("debootstrap") is None:
        raise BadInput("debootstrap is not installed", hint="apt-get install debootstrap")
    mirror = mirror or distributions.host_apt_mirror()
    workdir = Path(tempfile.mkdtemp(prefix="apachews-bootstrap-"))
    try:
        rootfs = workdir / "rootfs"
        progress.step(f"debootstrap {suite} from {mirror} (a few minutes)")
        _debootstrap(suite, mirror, rootfs, progress, packages)
        progress.step("packing the root filesystem")
        archive = workdir / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(rootfs.iterdir()):
                tar.add(entry, arcname=entry.name)
        progress.step(f"importing as {tag}")
        repository, _, version = tag.partition(":")
        try:
            engine.api.import_image_from_file(
                str(archive),
                repository=repository,
                tag=version or "latest",
                changes=[
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    'CMD ["/bin/bash"]',
                    f"LABEL {LABEL}={label}",
                    f"LABEL {PACKAGES_LABEL}={packages_fingerprint(packages)}",
                ],
            )
        except DockerException as error:
            raise JobFailed(f"the Docker engine refused to import {tag}: {error}") from error
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ImageInfo(tag, engine.images.get(tag).id, True, time.monotonic() - started)


def _debootstrap(suite: str, mirror: str, rootfs: Path, progress: Progress, packages: tuple[str, ...]) -> None:
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        suite,
        str(rootfs),
        mirror,
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    stages_seen: set[str] = set()
    for line in process.stdout:
        lines.append(line.rstrip())
        word = line.split()[1] if line.startswith("I: ") and len(line.split()) > 1 else ""
        if word in ("Retrieving", "Extracting", "Installing", "Configuring", "Unpacking") and word not in stages_seen:
            stages_seen.add(word)  # debootstrap repeats each stage per package: report it once
            progress.step(f"debootstrap: {word.lower()} packages")
    if process.wait() != 0:
        tail = "\n".join(lines[-40:])
        raise JobFailed(f"debootstrap {suite} failed (exit {process.returncode})", hint=tail)


def render_dockerfile(base_image: str) -> str:
    family = distributions.build_base().family_of(base_image)
    return (
        template_environment("docker")
        .get_template(f"{family}.Dockerfile.j2")
        .render(base_image=base_image, apt_packages=BUILD_PACKAGES)
    )


def builder_tag(base_image: str, engine: docker.DockerClient | None = None) -> str:
    """The builder image's tag: a hash of its Dockerfile and of the base image's id, so that a changed
    template or a re-bootstrapped base gets a new builder. Names the image before it exists."""
    engine = engine or client()
    try:
        base_id = engine.images.get(base_image).id
    except ImageNotFound:
        base_id = None  # not pulled yet: builder_image() pulls it first
    return f"{BUILDER_REPOSITORY}:{fingerprint([render_dockerfile(base_image), base_id], 12)}"


def builder_image(base_image: str, progress: Progress | None = None) -> ImageInfo:
    """The builder image for `base_image`, built once per (Dockerfile, base image) and reused."""
    progress = progress or Progress()
    engine = client()
    if not image_exists(engine, base_image):
        if base_image.startswith(BASE_REPOSITORY + ":"):
            raise BadInput(
                f"base image {base_image} does not exist",
                hint=f"make it first: apachews image bootstrap --suite {base_image.split(':', 1)[1]}",
            )
        progress.step(f"pulling {base_image}")
        try:
            engine.images.pull(base_image)
        except DockerException as error:
            raise JobFailed(
                f"cannot pull {base_image}: {error}",
                hint="import the image into this engine (docker load / docker import), or pick another --base-image",
            ) from error
    tag = builder_tag(base_image, engine)
    dockerfile = render_dockerfile(base_image)
    if image_exists(engine, tag):
        log.info("builder image %s exists (from %s)", tag, base_image)
        return ImageInfo(tag, engine.images.get(tag).id, False, 0.0)
    started = time.monotonic()
    progress.step(f"building builder image {tag} from {base_image}")
    context = io.BytesIO(single_file_tar("Dockerfile", dockerfile.encode()))
    try:
        # Host networking only matters for a pulled base that lacks packages; ours needs none.
        image, _ = engine.images.build(
            fileobj=context, custom_context=True, tag=tag, rm=True, network_mode="host", labels={LABEL: "builder"}
        )
    except DockerException as error:
        raise JobFailed(f"building the builder image from {base_image} failed: {error}") from error
    log.info("built builder image %s from %s", tag, base_image)
    return ImageInfo(tag, image.id, True, time.monotonic() - started)
