"""A real older distribution's own Apache, run in a container of its root (`apachews/target:<key>`).

`locate(key)` gives an `httpd.Httpd` whose `runner` is a `ContainerRunner`: every `apache2` it runs (`-v`,
`-l`, `-t`, the server itself) runs in that image, with `--network host --pid host`, so the server listens on
this host's 127.0.0.1, its pid file holds host pids and signals (graceful restart) reach it. The trees verify
builds (distros.trees) are bind-mounted at the same path; the module under test is mounted read-only.
Every container is named `apachews-target-*`, labelled apachews=target-run and removed on exit, error,
Ctrl-C and SIGTERM.

The image is made by `apachews image target KEY` (images.target_image: debootstrap, no registry).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container

from apachews import binary, distros, images, sources
from apachews.distros import catalogue
from apachews.errors import BadInput, JobFailed
from apachews.fsutil import atomic_dir
from apachews.httpd import Httpd, Mount, Process, version_of

log = logging.getLogger(__name__)

RUN_LABEL = "target-run"
OWNER_LABEL = "apachews.owner"  # the process id of the run that made the container
NAME_PREFIX = "apachews-target-"
STOP_TIMEOUT = 10


def _volumes(mounts: Sequence[Mount]) -> dict[str, dict[str, str]]:
    return {str(m.path): {"bind": str(m.path), "mode": "ro" if m.read_only else "rw"} for m in mounts}


class ContainerProcess:
    """A containerised Apache's parent, seen from this host (the container shares its pid namespace)."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self._exit: int | None = None
        try:
            container.reload()
            self._pid = int(container.attrs["State"]["Pid"])
        except NotFound:  # exited and removed before it was seen: Server.start reports the error log
            self._pid, self._exit = 0, -1

    @property
    def pid(self) -> int:
        if not self._pid:
            raise ProcessLookupError(f"{self.container.name} exited before it was seen")
        return self._pid

    def poll(self) -> int | None:
        if self._exit is not None:
            return self._exit
        try:
            self.container.reload()
        except NotFound:  # removed (--rm) once it exited
            self._exit = -1
            return self._exit
        state = self.container.attrs["State"]
        if state.get("Running"):
            return None
        self._exit = int(state.get("ExitCode", -1))
        return self._exit


@dataclass(eq=False)  # hashed by identity: its answers are cached per runner
class ContainerRunner:
    """Runs its Apache (and any command) in the image of the catalogue's distribution `target`, as
    `httpd.Runner` asks."""

    image: str
    name: str  # what people read: the distribution's name and its image
    layout: str
    target: str  # the catalogue key: what `build --target` takes

    @functools.cached_property
    def engine(self) -> docker.DockerClient:
        return images.client()

    @functools.cached_property
    def glibc(self) -> binary.GlibcVersion:
        """The glibc of the image, as it reports it (`getconf GNU_LIBC_VERSION`: "glibc 2.31")."""
        said = self.run(["getconf", "GNU_LIBC_VERSION"], {}, 30, ()).stdout.split()
        if len(said) == 2 and said[0] == "glibc":
            return binary.GlibcVersion.parse(said[1])
        return catalogue.get(self.target).glibc

    @functools.cached_property
    def conf_tree(self) -> Path:
        """A host copy of the image's configuration tree (its layout's), kept per image id (what the image ships)."""
        shipped = catalogue.layout_facts(self.layout).conf_root
        image_id = self.engine.images.get(self.image).id.replace("sha256:", "")
        final = sources.cache_dir() / "targets" / image_id[:16] / shipped.name
        if not final.is_dir():
            with atomic_dir(final.parent) as staged:
                copied = self.run(["cp", "-a", str(shipped), str(staged)], {}, 60, (Mount(staged),))
                if copied.returncode != 0:
                    raise JobFailed(f"could not copy {shipped} out of {self.image}", hint=copied.stderr[-1000:])
        return final

    def _create(
        self, argv: list[str], env: Mapping[str, str], mounts: Sequence[Mount], network: str, auto_remove: bool
    ) -> Container:
        try:
            return self.engine.containers.create(
                self.image,
                command=argv,
                environment=dict(env),
                volumes=_volumes(mounts),
                network_mode=network,
                pid_mode="host",
                name=f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(4)}",
                labels={images.LABEL: RUN_LABEL, OWNER_LABEL: str(os.getpid())},
                auto_remove=auto_remove,
            )
        except DockerException as error:
            raise JobFailed(f"Docker could not create a container of {self.image}: {error}") from error

    @staticmethod
    def _remove(container: Container) -> None:
        try:
            container.remove(force=True)
        except NotFound:
            pass
        except APIError as error:  # "removal already in progress": it is going
            log.debug("removing %s: %s", container.name, error)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one runner per image, its answers do not change
    def _query(self, argv: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess[str]:
        return self._once(list(argv), {}, timeout, ())

    def run(
        self, argv: list[str], env: Mapping[str, str], timeout: float, mounts: Sequence[Mount]
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` to its end in a fresh container; a question about the image alone is asked once."""
        if not env and not mounts:
            return self._query(tuple(argv), timeout)
        return self._once(argv, env, timeout, mounts)

    def _once(
        self, argv: list[str], env: Mapping[str, str], timeout: float, mounts: Sequence[Mount]
    ) -> subprocess.CompletedProcess[str]:
        container = self._create(argv, env, mounts, network="none", auto_remove=False)  # its output is read after
        try:
            container.start()
            try:
                code = int(container.wait(timeout=timeout)["StatusCode"])
            except Exception as error:  # requests' ReadTimeout, or the engine going away
                raise JobFailed(f"{' '.join(argv)} did not finish within {timeout:.0f} s in {self.name}") from error
            stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
            stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
        finally:
            self._remove(container)
        return subprocess.CompletedProcess(argv, code, stdout, stderr)

    def start(self, argv: list[str], env: Mapping[str, str], mounts: Sequence[Mount]) -> Process:
        """Start `argv` (Apache in the foreground) on this host's network; stop() removes it."""
        container = self._create(argv, env, mounts, network="host", auto_remove=True)
        try:
            container.start()
            return ContainerProcess(container)
        except BaseException:
            self._remove(container)
            raise

    def stop(self, process: Process) -> None:
        """SIGTERM (Apache's graceful stop), then the container is removed whatever state it is in."""
        assert isinstance(process, ContainerProcess)
        container = process.container
        try:
            if process.poll() is None:
                container.kill(signal="SIGTERM")
                container.wait(timeout=STOP_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - gone already, or would not stop: removed below either way
            log.debug("stopping %s: %s", container.name, error)
        finally:
            self._remove(container)

    def exists(self, path: Path) -> bool:
        return self.run(["test", "-e", str(path)], {}, 30, ()).returncode == 0

    def check_module(self, module: Path) -> None:
        """A module that needs a newer glibc than this root has cannot load here: say so, and which build."""
        found = binary.inspect_module(module)
        mmn = catalogue.get(self.target).mmn
        if found.mmn_major is not None and found.mmn_major != mmn:
            raise BadInput(
                f"{module} was built for Apache module magic number {found.mmn_major}; {self.name} has {mmn}",
                hint=f"build the module for this server: apachews build ... --target {self.target}",
            )
        above = found.symbols_above(self.glibc)
        if above:
            needs = ", ".join(f"{name} (GLIBC_{version})" for name, version in above.items())
            raise BadInput(
                f"{module} needs GLIBC_{found.glibc_floor}; {self.name} has glibc {self.glibc}, so its Apache "
                f"cannot load it (it needs: {needs})",
                hint=f"build the module for this server: apachews build ... --target {self.target}",
            )


def locate(key: str) -> Httpd:
    """The Apache of the target distribution `key` (the image must exist: `apachews image target KEY`)."""
    distribution = catalogue.get(key)
    if not _runnable(distribution):
        runnable = [d.key for d in catalogue.distributions().values() if _runnable(d)]
        raise BadInput(
            f"{distribution.name}'s own Apache cannot run here: no root of it can be made from packages at hand",
            hint=f"targets that run: {', '.join(runnable)}",
        )
    tag = images.target_tag(key)
    engine = images.client()
    if not images.image_exists(engine, tag):
        raise BadInput(
            f"no image {tag} here: {distribution.name}'s own Apache runs from it",
            hint=f"make it (debootstrap, a minute or two): apachews image target {key}",
        )
    remove_orphans(engine)
    runner = ContainerRunner(image=tag, name=f"{distribution.name} ({tag})", layout=distribution.layout, target=key)
    facts = catalogue.layout_facts(distribution.layout)
    return Httpd(facts.binary, version_of(facts.binary, {}, runner), facts.modules_dirs[0], "target", runner=runner)


def _runnable(distribution: catalogue.Distribution) -> bool:
    """A root of it can be made here (a suite debootstrap fetches) and its layout's lab tree runs contained."""
    return distribution.suite is not None and distros.get(distribution.layout).runs_contained


def remove_orphans(engine: docker.DockerClient) -> list[str]:
    """Remove the containers of runs whose process is gone (killed with SIGKILL: no cleanup ran); returns
    their names. A run's own process id is in its containers' labels."""
    removed = []
    for container in engine.containers.list(all=True, filters={"label": f"{images.LABEL}={RUN_LABEL}"}):
        owner = container.labels.get(OWNER_LABEL, "")
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            continue
        ContainerRunner._remove(container)
        removed.append(container.name)
    return removed
