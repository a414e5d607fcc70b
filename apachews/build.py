"""`apachews build`: source -> patch series -> compile in a container -> dist/httpd-<version>/.

The recipe is one shell script (templates/build/build.sh.j2) run by either builder:
- "docker": in a builder image (apachews.images) with networking off; sources go in and artifacts come
  out as archives through the Docker SDK; a named volume per (version, image, flags) keeps the configured
  tree and its object files, so a rebuild recompiles only what changed.
- "local": the same script with the host toolchain, its tree kept in the user cache dir.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from docker.errors import DockerException

from apachews import __version__, catalogue, images, module, patches, sources, toolchain
from apachews.catalogue import Release
from apachews.errors import BadInput, JobFailed
from apachews.progress import Progress
from apachews.resources import template_environment

STEP_MARKER = "==> apachews step: "
MODULE_FILE = Path("modules/proxy/mod_proxy_wstunnel.c")
DEFAULT_BASE_IMAGE = images.base_tag(images.DEFAULT_SUITE)
NOOP_BUILDCONF = "#!/bin/sh\n# apachews: this apr release tarball already has configure and build-outputs.mk\nexit 0\n"


@dataclass
class BuildResult:
    dist: Path
    module: Path
    info: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"dist": str(self.dist), "module": str(self.module), "build": self.info}


def render_script(recipe: toolchain.Recipe, jobs: int, with_httpd: bool) -> str:
    return (
        template_environment("build")
        .get_template("build.sh.j2")
        .render(
            cflags=" ".join(recipe.cflags),
            configure_args=recipe.configure_args,
            jobs=jobs,
            with_httpd=with_httpd,
            prefix=toolchain.PREFIX,
        )
    )


# -- preparing the tree ---------------------------------------------------------------------------------
def _apr_tarballs(recipe: toolchain.Recipe) -> tuple[Path, Path]:
    if recipe.apr == "old":
        return sources.apr_sources()
    bundle = sources.pypi_bundle("2.4.69.1", sources.cache_dir() / "pypi")
    return bundle.apr, bundle.apr_util


def prepare_tree(
    release: Release, tree: Path, workdir: Path, backport: bool, progress: Progress
) -> tuple[Path, list[dict[str, str]], str]:
    """A private copy of `tree` with the right module source in it; returns it, the patches, the kind."""
    copy = workdir / "tree"
    progress.step("copying the source tree")
    shutil.copytree(tree, copy, symlinks=True)
    applied: list[dict[str, str]] = []
    if release.needs_backport:
        if release.series is None:
            raise BadInput(f"no apachews patch series serves Apache {release.version}")
        series = patches.load_series(release.series)
        progress.step(f"applying patch series {release.series}")
        report = patches.apply(series, copy)
        if not report.ok:
            raise JobFailed(
                f"patch series {release.series} does not apply to Apache {release.version}",
                hint=f"see: apachews patch check --apache {release.version} --source {tree}",
            )
        applied = [{"file": str(p), "sha256": sources.sha256_file(Path(p))} for p in series.patch_files]
        kind = "backport"
    elif backport:
        progress.step("replacing the stock mod_proxy_wstunnel.c with the apachews backport")
        text = module.source_text()
        (copy / MODULE_FILE).write_text(text)
        applied = [{"file": "apachews module source", "sha256": hashlib.sha256(text.encode()).hexdigest()}]
        kind = "backport"
    else:
        kind = "stock"
    return copy, applied, kind


def _input_archive(tree: Path, recipe: toolchain.Recipe) -> bytes:
    """A tar of the tree, with apr and apr-util unpacked into srclib/ when the tree has none."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as out:
        out.add(tree, arcname=".")
        if (
            not (tree / "srclib" / "apr" / "configure.in").exists()
            and not (tree / "srclib" / "apr" / "configure").exists()
        ):
            for tarball, name in zip(_apr_tarballs(recipe), ("apr", "apr-util")):
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


def _keep_failed_log(text: str, version: str) -> Path:
    path = sources.cache_dir() / "logs" / f"build-{version}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _cache_key(version: str, image: str, recipe: toolchain.Recipe, with_httpd: bool) -> str:
    text = json.dumps([version, image, recipe.to_dict(), with_httpd], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_in_docker(
    archive: bytes, script: str, key: str, image: str, out: Path, progress: Progress
) -> tuple[str, str]:
    """Run the recipe in a container; artifacts land in `out`. Returns (log text, volume name)."""
    engine = images.client()
    volume = f"apachews-build-{key}"
    container = engine.containers.create(
        image,
        command=["bash", "/incoming/.apachews-build.sh"],
        network_mode="none",
        volumes={volume: {"bind": "/build", "mode": "rw"}},
        labels={"apachews": "build"},
    )
    log: list[str] = []
    try:
        container.put_archive("/", _single_dir_archive("incoming"))
        container.put_archive("/incoming", archive)
        container.put_archive("/incoming", images.single_file_tar(".apachews-build.sh", script.encode(), 0o755))
        container.start()
        for chunk in container.logs(stream=True, follow=True):
            for line in chunk.decode(errors="replace").splitlines():
                log.append(line)
                if line.startswith(STEP_MARKER):
                    progress.step(f"build: {line[len(STEP_MARKER) :]}")
        status = container.wait()
        text = "\n".join(log) + "\n"
        if status.get("StatusCode") != 0:
            raise _fail(text, _keep_failed_log(text, key), "the Docker build")
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


def build_locally(archive: bytes, script: str, key: str, out: Path, progress: Progress) -> str:
    root = sources.cache_dir() / "local-builds" / key
    root.mkdir(parents=True, exist_ok=True)
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
        }
        process = subprocess.Popen(
            ["bash", str(script_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert process.stdout is not None
        log = []
        for line in process.stdout:
            log.append(line.rstrip("\n"))
            if line.startswith(STEP_MARKER):
                progress.step(f"build: {line[len(STEP_MARKER) :].strip()}")
        text = "\n".join(log) + "\n"
        if process.wait() != 0:
            raise _fail(text, _keep_failed_log(text, key), "the local build")
    return text


def _choose_builder(builder: str, progress: Progress) -> str:
    if builder == "docker":
        images.client()  # BadInput with the fix when no engine answers
        progress.note("builder: docker (a container matching --base-image, networking off)")
        return "docker"
    if builder == "local":
        if shutil.which("gcc") is None or shutil.which("make") is None:
            raise BadInput("--builder local needs gcc and make on this machine", hint="apt-get install build-essential")
        progress.note("builder: local (the host's toolchain; the .so links against this host's libc)")
        return "local"
    raise BadInput(f"unknown builder {builder!r}", hint="use --builder docker or --builder local")


# -- the pipeline -----------------------------------------------------------------------------------------------
def build(
    apache: str,
    *,
    source: sources.SourceOptions | None = None,
    base_image: str | None = None,
    backport: bool = False,
    with_httpd: bool = False,
    builder: str = "docker",
    out_dir: Path = Path("dist"),
    jobs: int = 2,
    progress: Progress | None = None,
) -> BuildResult:
    progress = progress or Progress()
    started = time.monotonic()
    release = catalogue.load().get(apache)
    recipe = toolchain.recipe(release.version)
    if not 1 <= jobs <= 64:
        raise BadInput("--jobs must be between 1 and 64")
    builder = _choose_builder(builder, progress)
    image_info: images.ImageInfo | None = None
    base_image = base_image or DEFAULT_BASE_IMAGE
    if builder == "docker":
        if base_image == DEFAULT_BASE_IMAGE and not images.image_exists(images.client(), base_image):
            progress.step(f"no {base_image} yet: bootstrapping it from Debian's packages")
            images.bootstrap(progress=progress)
        image_info = images.builder_image(base_image, progress)
    tree = (source or sources.SourceOptions()).provide(apache, progress)
    out_dir = Path(out_dir)
    final = out_dir / f"httpd-{release.version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with _staging(out_dir) as stage:
        patched, applied, kind = prepare_tree(release, tree.path, stage / "work", backport, progress)
        progress.step("packing the sources")
        archive = _input_archive(patched, recipe)
        script = render_script(recipe, jobs, with_httpd)
        key = _cache_key(str(release.version), image_info.id if image_info else "local", recipe, with_httpd)
        artifacts = stage / "artifacts"
        artifacts.mkdir()
        if builder == "docker":
            assert image_info is not None
            log, _ = build_in_docker(archive, script, key, image_info.tag, artifacts, progress)
        else:
            log = build_locally(archive, script, key, artifacts, progress)
        dist = stage / "dist"
        shutil.move(str(artifacts / "out"), dist)
        shutil.rmtree(stage / "work", ignore_errors=True)
        (dist / "build.log").write_text(log)
        compiler = (dist / "compiler.txt").read_text().strip()
        (dist / "compiler.txt").unlink()
        files = sorted(p for p in dist.rglob("*") if p.is_file() and p.name != "build.log" and not p.is_symlink())
        info: dict[str, object] = {
            "apachews": __version__,
            "apache": str(release.version),
            "kind": kind,
            "backport": kind == "backport",
            "source": tree.origin,
            "patches": applied,
            "builder": builder,
            "base_image": base_image if builder == "docker" else None,
            "image": image_info.to_dict() if image_info else None,
            "compiler": compiler,
            "recipe": recipe.to_dict(),
            "with_httpd": with_httpd,
            "artifacts": {str(p.relative_to(dist)): sources.sha256_file(p) for p in files},
            "seconds": round(time.monotonic() - started, 1),
        }
        if with_httpd:
            info["run"] = {"binary": "httpd/bin/httpd", "env": {"LD_LIBRARY_PATH": "httpd/lib"}}
        (dist / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        dist.rename(final)
    return BuildResult(final, final / "modules" / "mod_proxy_wstunnel.so", info)


@contextlib.contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A scratch dir beside the output; removed whatever happens, so no half dist is ever left."""
    stage = Path(tempfile.mkdtemp(prefix=".apachews-build-", dir=out_dir))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
