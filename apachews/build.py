"""`apachews build`: source -> patch series -> compile in a container -> dist/httpd-<version>/.

The recipe is one shell script (templates/build/build.sh.j2) run by either builder:
- "docker": in a builder image (apachews.images) with networking off; sources go in and artifacts come
  out as archives through the Docker SDK; a named volume per (version, image, flags) keeps the configured
  tree and its object files, so a rebuild recompiles only what changed.
- "local": the same script with the host toolchain, its tree kept in the user cache dir.
Both use ccache when it is installed, with one cache for every release (the apachews-ccache volume, or
<cache>/ccache). Without --with-httpd only the module is made. A dist built from the same inputs is kept.
The module itself is compiled by zig cc at the plan's glibc floor (apachews/floor.py): the Docker builder
mounts the host's ziglang package read-only at /opt/zig, and zig's cache lives beside ccache's. The
finished .so is read back (apachews/binary.py) into build.json; a module above its floor fails the build.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.errors import DockerException

from apachews import __version__, binary, floor, images, module, patches, sources, toolchain
from apachews.catalogue import Release
from apachews.dist import Dist
from apachews.errors import BadInput, JobFailed
from apachews.fsutil import move_into_place, scratch_dir, sha256_file, write_atomic
from apachews.plan import BuildPlan
from apachews.progress import Progress
from apachews.resources import template_environment
from apachews.serial import Serialised
from apachews.sources.openssl import HINT as OPENSSL_HINT

log = logging.getLogger(__name__)

STEP_MARKER = "==> apachews step: "
MODULE_FILE = Path("modules/proxy/mod_proxy_wstunnel.c")
DEFAULT_BASE_IMAGE = images.DEFAULT_BASE_IMAGE
CCACHE_VOLUME = "apachews-ccache"  # one compiler cache for every build (used when the image has ccache)
NOOP_BUILDCONF = "#!/bin/sh\n# apachews: this apr release tarball already has configure and build-outputs.mk\nexit 0\n"


@dataclass
class BuildResult(Serialised):
    dist: Path
    module: Path
    info: dict[str, object] = field(default_factory=dict)
    _renamed = {"info": "build"}


def render_script(
    recipe: toolchain.Recipe,
    jobs: int,
    with_httpd: bool,
    glibc_floor: floor.Floor | None = None,
    zig: str = f"{floor.DOCKER_ZIG_DIR}/zig",
    ssl: str = "off",
    openssl_id: str = "",
) -> str:
    """The build script; `zig`: the zig binary as the builder sees it (the Docker builder's mount by default);
    `ssl`/`openssl_id`: how mod_ssl gets its OpenSSL (plan.ssl) and which sources those are."""
    glibc_floor = glibc_floor or floor.resolve(recipe.version.family)
    return (
        template_environment("build")
        .get_template("build.sh.j2")
        .render(
            cflags=recipe.cflags_line,
            configure_args=recipe.configure_args,
            jobs=jobs,
            make_args=[shlex.quote(f"{name}={value}") for name, value in recipe.make_vars],
            with_httpd=with_httpd,
            prefix=toolchain.PREFIX,
            wrapper=floor.wrapper_script(zig, glibc_floor.zig_target()),
            zig=shlex.quote(zig),
            zig_target=glibc_floor.zig_target(),
            link_args=" ".join(floor.LINK_ARGS),
            ssl=ssl,
            openssl_id=" ".join([openssl_id, *recipe.openssl_config]),
            openssl_config=" ".join(recipe.openssl_config),
        )
    )


# -- preparing the tree ---------------------------------------------------------------------------------
def prepare_tree(plan: BuildPlan, tree: Path, workdir: Path, progress: Progress) -> Path:
    """A private copy of `tree` with the module source the plan asks for (its series, or our module)."""
    copy = workdir / "tree"
    progress.step("copying the source tree")
    shutil.copytree(tree, copy, symlinks=True)
    series = plan.series()
    if series is not None:
        progress.step(f"applying patch series {series.name}")
        report = patches.apply(series, copy)
        if not report.ok:
            raise JobFailed(
                f"patch series {series.name} does not apply to Apache {plan.version}",
                hint=f"see: apachews patch check --apache {plan.version} --source {tree}",
            )
    elif plan.backport:
        progress.step("replacing the stock mod_proxy_wstunnel.c with the apachews backport")
        module.install_into(copy)
    return copy


def _input_archive(tree: Path, recipe: toolchain.Recipe) -> bytes:
    """A tar of the tree, with apr and apr-util unpacked into srclib/ when the tree has none."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as out:
        out.add(tree, arcname=".")
        if (
            not (tree / "srclib" / "apr" / "configure.in").exists()
            and not (tree / "srclib" / "apr" / "configure").exists()
        ):
            for tarball, name in zip(sources.apr_sources(old=recipe.apr == "old"), ("apr", "apr-util")):
                with tarfile.open(tarball) as src:
                    for member in src.getmembers():
                        parts = member.name.split("/", 1)
                        if len(parts) < 2 or not parts[1]:
                            continue
                        member.name = f"srclib/{name}/{parts[1]}"
                        if member.islnk():
                            linked = member.linkname.split("/", 1)
                            member.linkname = f"srclib/{name}/{linked[1] if len(linked) > 1 else ''}"
                        if parts[1] == "buildconf":
                            # A release tarball ships its generated files; its buildconf (run by httpd's)
                            # would regenerate them with a Python 2 script. Nothing to do: say so.
                            stub = NOOP_BUILDCONF.encode()
                            member.size = len(stub)
                            out.addfile(member, io.BytesIO(stub))
                            continue
                        out.addfile(member, src.extractfile(member) if member.isfile() else None)
    return buffer.getvalue()


def _tree_archive(tree: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as out:
        out.add(tree, arcname=".")
    return buffer.getvalue()


def _content_digest(archive: bytes) -> str:
    """A digest of what the archive holds (names, modes, link targets, bytes), not of when it was written:
    the copy and the patches give the tree fresh mtimes on every build."""
    digest = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            digest.update(f"{member.name}\0{member.type!r}\0{member.mode:o}\0{member.linkname}\0".encode())
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                digest.update(hashlib.sha256(extracted.read()).digest())
    return digest.hexdigest()


def _up_to_date(dist: Path, input_digest: str) -> dict[str, object] | None:
    """The build.json of `dist` when it was built from exactly these inputs and its files are intact."""
    info = Dist(dist).info()
    if info.get("input_digest") != input_digest:
        return None
    artifacts = info.get("artifacts") or {}
    for relative, digest in artifacts.items():
        path = dist / relative
        if not path.is_file() or sha256_file(path) != digest:
            return None
    return info


# -- builders -------------------------------------------------------------------------------------------------
class BuildFailed(JobFailed):
    pass


def _fail(log_text: str, log_path: Path, what: str) -> BuildFailed:
    lines = log_text.splitlines()
    steps = [line[len(STEP_MARKER) :] for line in lines if line.startswith(STEP_MARKER)]
    step = steps[-1] if steps else "start"
    tail = "\n".join(lines[-40:])
    return BuildFailed(
        f"{what} failed at step '{step}'",
        hint=f"last lines:\n{tail}\nfull log: {log_path}",
        step=step,
        log=str(log_path),
    )


def _keep_failed_log(text: str, key: str) -> Path:
    path = sources.cache_dir() / "logs" / f"build-{key}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    write_atomic(path, text)
    log.warning("build failed; its log: %s", path)
    return path


def build_in_docker(
    archive: bytes,
    script: str,
    key: str,
    image: str,
    out: Path,
    progress: Progress,
    labels: dict[str, str] | None = None,
    openssl: bytes | None = None,
) -> tuple[str, str]:
    """Run the recipe in a container; artifacts land in `out`. Returns (log text, volume name).
    `openssl`: a tar of the OpenSSL sources mod_ssl is built against (at /incoming-openssl)."""
    try:
        return _run_container(archive, script, key, image, out, progress, labels or {}, openssl)
    except DockerException as error:
        raise JobFailed(
            f"the Docker engine failed the build: {error}", hint="check the engine (docker info) and try again"
        ) from error


def _run_container(
    archive: bytes,
    script: str,
    key: str,
    image: str,
    out: Path,
    progress: Progress,
    labels: dict[str, str],
    openssl: bytes | None = None,
) -> tuple[str, str]:
    engine = images.client()
    # Labelled, so `apachews cache list|prune` can say what each volume builds.
    volume = images.build_volume(engine, f"{images.BUILD_VOLUME_PREFIX}{key}", {"apachews.image": image, **labels})
    container = engine.containers.create(
        image,
        command=["bash", "/incoming/.apachews-build.sh"],
        network_mode="none",
        volumes={
            volume: {"bind": "/build", "mode": "rw"},
            CCACHE_VOLUME: {"bind": "/ccache", "mode": "rw"},
            # zig (a static binary and its libc stubs and headers) from the host's ziglang package
            str(floor.zig_dir()): {"bind": floor.DOCKER_ZIG_DIR, "mode": "ro"},
        },
        labels={"apachews": "build"},
    )
    log.info("build container %s (image %s, volume %s, no network)", container.short_id, image, volume)
    lines: list[str] = []
    try:
        container.put_archive("/", _single_dir_archive("incoming"))
        container.put_archive("/incoming", archive)
        container.put_archive("/incoming", images.single_file_tar(".apachews-build.sh", script.encode(), 0o755))
        if openssl is not None:
            container.put_archive("/", _single_dir_archive("incoming-openssl"))
            container.put_archive("/incoming-openssl", openssl)
        container.start()
        for chunk in container.logs(stream=True, follow=True):
            for line in chunk.decode(errors="replace").splitlines():
                lines.append(line)
                log.debug("build: %s", line)
                if line.startswith(STEP_MARKER):
                    progress.step(f"build: {line[len(STEP_MARKER) :]}")
                else:
                    progress.output(line)  # the current make step, on the progress line
        status = container.wait()
        text = "\n".join(lines) + "\n"
        if status.get("StatusCode") != 0:
            failure = _fail(text, _keep_failed_log(text, key), "the Docker build")
            failure.details["container"] = container.name  # removed below; named so a caller can check
            raise failure
        stream, _ = container.get_archive("/out")
        blob = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(out, filter="data")  # lands as out/out/...
        return text, volume
    finally:
        with contextlib.suppress(DockerException):
            container.remove(force=True)


def _single_dir_archive(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    return buffer.getvalue()


def build_locally(
    archive: bytes, script: str, key: str, out: Path, progress: Progress, openssl: bytes | None = None
) -> str:
    root = sources.cache_dir() / "local-builds" / key
    root.mkdir(parents=True, exist_ok=True)
    log.info("local build in %s", root)
    with tempfile.TemporaryDirectory(prefix="apachews-in-") as incoming:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(incoming, filter="tar")
        script_path = Path(incoming) / ".apachews-build.sh"
        script_path.write_text(script)
        env = {
            **os.environ,
            "APACHEWS_IN": incoming,
            "APACHEWS_ROOT": str(root),
            "APACHEWS_OUT": str(out / "out"),
            "APACHEWS_CCACHE": str(sources.cache_dir() / "ccache"),
        }
        if openssl is not None:
            with tarfile.open(fileobj=io.BytesIO(openssl)) as tar:
                tar.extractall(Path(incoming) / ".openssl", filter="tar")
            env["APACHEWS_OPENSSL_IN"] = str(Path(incoming) / ".openssl")
        (sources.cache_dir() / "ccache").mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            ["bash", str(script_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            log.debug("build: %s", lines[-1])
            if line.startswith(STEP_MARKER):
                progress.step(f"build: {line[len(STEP_MARKER) :].strip()}")
            else:
                progress.output(line)
        text = "\n".join(lines) + "\n"
        if process.wait() != 0:
            raise _fail(text, _keep_failed_log(text, key), "the local build")
    return text


def _check_builder(plan: BuildPlan, progress: Progress) -> None:
    if plan.builder == "docker":
        images.client()  # BadInput with the fix when no engine answers
        progress.note("builder: docker (a container matching --base-image, networking off)")
    elif shutil.which("gcc") is None or shutil.which("make") is None:
        raise BadInput("--builder local needs gcc and make on this machine", hint="apt-get install build-essential")
    else:
        progress.note("builder: local (the host's gcc for the tree, zig cc at the glibc floor for the module)")


def _builder_image(plan: BuildPlan, progress: Progress) -> images.ImageInfo | None:
    if plan.builder != "docker":
        return None
    if plan.base_image == DEFAULT_BASE_IMAGE:
        engine = images.client()
        if not images.image_exists(engine, plan.base_image):
            progress.step(f"no {plan.base_image} yet: bootstrapping it (debootstrap)")
            images.bootstrap(progress=progress)
        elif images.is_stale(engine, plan.base_image):  # e.g. made before libssl-dev was a build package
            images.bootstrap(progress=progress)  # says why, and makes it again from today's package list
    return images.builder_image(plan.base_image, progress)


def mod_ssl_linking(path: Path) -> str | None:
    """How a built mod_ssl.so has its OpenSSL: "static" (linked in) or "dynamic" (needs libssl.so); None: none."""
    if not path.is_file():
        return None
    needed = binary.inspect_module(path, "ssl_module").needed
    return "dynamic" if any(name.startswith(("libssl.", "libcrypto.")) for name in needed) else "static"


# -- the pipeline -----------------------------------------------------------------------------------------------
def build(
    plan: BuildPlan | Release | str, *, progress: Progress | None = None, rebuild: bool = False, **fields: Any
) -> BuildResult:
    """Build what `plan` says into plan.dist (replaced as a whole, or left untouched on failure).

    A plan.dist built from the same inputs (sources after patching, recipe, image) with its files intact
    is kept as it is, without starting a builder, unless `rebuild`. Callers that hold a release or a
    version string may pass it with the plan's fields as keywords.
    """
    if not isinstance(plan, BuildPlan):
        plan = BuildPlan(plan, **fields)  # type: ignore[arg-type]
    elif fields:
        raise TypeError("give a BuildPlan or a release with keywords, not both")
    progress = progress or Progress()
    started = time.monotonic()
    recipe = plan.recipe
    log.info("build plan: %s", plan.to_dict())
    _check_builder(plan, progress)
    image_info = _builder_image(plan, progress)
    tree = plan.source.provide(plan.release, progress)
    openssl = plan.openssl.provide(progress) if plan.ssl == "static" else None
    if plan.ssl == "missing":
        progress.note(
            f"no mod_ssl: Apache {plan.version}'s mod_ssl needs OpenSSL {recipe.openssl} sources ({OPENSSL_HINT};"
            " or --without-ssl to build without it)"
        )
    with scratch_dir(plan.out_dir, prefix=".apachews-build-") as stage:
        patched = prepare_tree(plan, tree.path, stage / "work", progress)
        progress.step("packing the sources")
        archive = _input_archive(patched, recipe)
        zig = f"{floor.DOCKER_ZIG_DIR}/zig" if image_info else str(floor.zig_dir() / "zig")
        openssl_archive = _tree_archive(openssl.path) if openssl else None
        openssl_id = f"{openssl.version} {_content_digest(openssl_archive)[:16]}" if openssl and openssl_archive else ""
        script = render_script(recipe, plan.jobs, plan.with_httpd, plan.floor, zig, plan.ssl, openssl_id)
        key = plan.cache_key(image_info.tag if image_info else "local", scope="workspace")
        image_identity = [image_info.tag, image_info.id] if image_info else "local"
        identity = [_content_digest(archive), script, image_identity, plan.kind]
        input_digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        kept = None if rebuild else _up_to_date(plan.dist, input_digest)
        if kept is not None:
            progress.note(f"{plan.dist} is up to date (same sources, recipe and image): not rebuilt")
            log.info("%s up to date (input digest %s)", plan.dist, input_digest[:12])
            return BuildResult(plan.dist, Dist(plan.dist).module_path, {**kept, "reused": True})
        artifacts = stage / "artifacts"
        artifacts.mkdir()
        # One build at a time per workspace: two builds sharing a cache volume would corrupt it.
        with images.workspace_lock(key, progress):  # host-wide: the engine's volumes are shared by every cache
            if image_info is not None:
                labels = {"apachews.version": str(plan.version), "apachews.key": key}
                log_text, _ = build_in_docker(
                    archive, script, key, image_info.tag, artifacts, progress, labels, openssl_archive
                )
            else:
                log_text = build_locally(archive, script, key, artifacts, progress, openssl_archive)
        dist = stage / "dist"
        shutil.move(str(artifacts / "out"), dist)
        shutil.rmtree(stage / "work", ignore_errors=True)
        (dist / "build.log").write_text(log_text)
        compiler, _, module_compiler = (dist / "compiler.txt").read_text().strip().partition("\n")
        (dist / "compiler.txt").unlink()
        binary = floor.check(dist / "modules" / "mod_proxy_wstunnel.so", plan.floor)  # JobFailed: above it
        files = sorted(p for p in dist.rglob("*") if p.is_file() and p.name != "build.log" and not p.is_symlink())
        info: dict[str, object] = {
            "apachews": __version__,
            "apache": plan.version,
            "kind": plan.kind,
            "backport": plan.kind == "backport",
            "source": tree.origin,
            "patches": plan.module_inputs(),
            "builder": plan.builder,
            "base_image": plan.base_image if plan.builder == "docker" else None,
            "image": image_info.to_dict() if image_info else None,
            "compiler": compiler,
            "module_compiler": module_compiler,
            "module": floor.record(binary, plan.floor),
            "recipe": recipe.to_dict(),
            "mpm": plan.mpm,
            "with_httpd": plan.with_httpd,
            "ssl": {
                "mode": plan.ssl,
                "openssl": openssl_id or recipe.openssl,
                "origin": openssl.origin if openssl else None,
                "mod_ssl": (dist / "httpd" / "modules" / "mod_ssl.so").is_file(),
                "linked": mod_ssl_linking(dist / "httpd" / "modules" / "mod_ssl.so"),
            },
            "input_digest": input_digest,
            "artifacts": {str(p.relative_to(dist)): sha256_file(p) for p in files},
            "seconds": round(time.monotonic() - started, 1),
        }
        if plan.with_httpd:
            info["run"] = {"binary": "httpd/bin/httpd", "env": {"LD_LIBRARY_PATH": "httpd/lib"}}
        Dist(dist).write_info(info)
        move_into_place(dist, plan.dist, replace=True)
    log.info("built %s in %.1f s", plan.dist, time.monotonic() - started)
    return BuildResult(plan.dist, Dist(plan.dist).module_path, info)


def with_httpd(
    release: Release, source: sources.SourceOptions, out_dir: Path, progress: Progress | None = None
) -> Dist:
    """The build of `release` with its whole httpd in out_dir (httpd-V): reused when it is there, else built
    (`verify --apache V`)."""
    plan = BuildPlan(release, source=source, with_httpd=True, out_dir=out_dir)
    found = Dist(plan.dist)
    if found.has_httpd:
        return found
    return Dist(build(plan, progress=progress).dist)
