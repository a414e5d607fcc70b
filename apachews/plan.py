"""One build, decided once: which release, from which sources, in which image, by which builder, with
which flags, into which directory.

The CLI makes a `BuildPlan` from its options; `build.build()` and `matrix.run()` take it as it is. The
plan is frozen, so a stage cannot change what the next one sees, and `cache_key()` is the one place that
says which of its parts decide a cached result.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from apachews import __version__, catalogue, floor, module, patches, toolchain
from apachews.catalogue import Release
from apachews.errors import BadInput
from apachews.fsutil import fingerprint, sha256_file
from apachews.images import DEFAULT_BASE_IMAGE
from apachews.serial import Serialised
from apachews.sources import SourceOptions
from apachews.sources.openssl import OpenSSLOptions

BUILDERS = ("docker", "local")
MPMS = ("prefork", "worker", "event")  # which a release takes: build-flags.json


@dataclass(frozen=True)
class BuildPlan(Serialised):
    release: Release
    source: SourceOptions = field(default_factory=SourceOptions)
    base_image: str = DEFAULT_BASE_IMAGE  # the docker builder's base; the local builder ignores it
    builder: str = "docker"
    backport: bool = False  # on a release with the stock module: build ours instead
    with_httpd: bool = False  # keep the whole httpd install (what `verify --dist` runs)
    jobs: int = 2  # parallel make jobs
    out_dir: Path = Path("dist")
    mpm: str = ""  # the MPM compiled in; "" is the release's default (build-flags.json), set in __post_init__
    target: str = ""  # --target DISTRO: the module's glibc floor is that distribution's (floor.py)
    glibc: str = ""  # --glibc X.Y: this floor instead; neither: the family's (its oldest distribution's)
    openssl: OpenSSLOptions = field(default_factory=OpenSSLOptions)  # mod_ssl's OpenSSL sources (--openssl-*)
    # JSON (the build log): the release's version, the sources by identity, the image only where it is used
    _omit = ("release", "source", "base_image", "target", "glibc", "openssl")
    _derived = ("version", "source_identity", "docker_image", "floor", "ssl", "openssl_identity")
    _renamed = {
        "version": "apache",
        "source_identity": "source",
        "docker_image": "base_image",
        "floor": "glibc_floor",
        "openssl_identity": "openssl",
    }

    def __post_init__(self) -> None:
        # Callers that still hold a version string (cli/verify.py) get it looked up here, once.
        object.__setattr__(self, "release", catalogue.as_release(self.release))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "base_image", self.base_image or DEFAULT_BASE_IMAGE)
        if self.builder not in BUILDERS:
            raise BadInput(f"unknown builder {self.builder!r}", hint="use --builder docker or --builder local")
        if not 1 <= self.jobs <= 64:
            raise BadInput("--jobs must be between 1 and 64")
        # Resolved (and checked against the release) here, so every stage and cache key sees the real MPM.
        object.__setattr__(self, "mpm", toolchain.recipe(self.release.version, self.mpm or None).mpm)
        self.floor  # noqa: B018 - an unknown --target, a --target of the other family or a bad --glibc: BadInput now

    @property
    def floor(self) -> floor.Floor:
        """The glibc the module may need at most (zig cc pins it; the build checks it)."""
        return floor.resolve(self.release.family, self.target, self.glibc)

    @property
    def version(self) -> str:
        return str(self.release.version)

    @property
    def source_identity(self) -> dict[str, object]:
        return self.source.identity()

    @property
    def openssl_identity(self) -> dict[str, str]:
        return self.openssl.identity()

    @property
    def docker_image(self) -> str | None:
        """The base image, for the docker builder (None: the local builder uses none)."""
        return self.base_image if self.builder == "docker" else None

    @property
    def dist(self) -> Path:
        """Where the build lands: <out_dir>/httpd-<version>/."""
        return self.out_dir / f"httpd-{self.version}"

    @property
    def recipe(self) -> toolchain.Recipe:
        return toolchain.recipe(self.release.version, self.mpm)

    @property
    def kind(self) -> str:
        """ "backport" (our module: a series, or --backport) or "stock" (the release's own module)."""
        return "backport" if self.release.needs_backport or self.backport else "stock"

    @property
    def ssl(self) -> str:
        """How mod_ssl is built: "static" (OpenSSL from the --openssl-* sources, linked in), "system" (the
        image's OpenSSL: libssl-dev, a build package of the base image; its libssl.a and libcrypto.a linked
        in), "off" (--without-ssl), "missing" (the release needs OpenSSL sources and none were given: no
        mod_ssl). Only "off" is a build without mod_ssl that the user asked for."""
        if self.openssl.without:
            return "off"
        if self.recipe.openssl == "1.0.2":
            return "static" if self.openssl.given else "missing"
        return "system"

    def series(self) -> patches.Series | None:
        """The patch series this release needs, or None when it has a stock module."""
        if not self.release.needs_backport:
            return None
        if self.release.series is None:
            raise BadInput(f"no apachews patch series serves Apache {self.version}")
        return patches.load_series(self.release.series)

    def module_inputs(self) -> list[dict[str, str]]:
        """What goes into the pristine tree, with content hashes: the series' patches, or our module source."""
        series = self.series()
        if series is not None:
            return [{"file": str(p), "sha256": sha256_file(Path(p))} for p in series.patch_files]
        if self.backport:
            digest = hashlib.sha256(module.source_text().encode()).hexdigest()
            return [{"file": "apachews module source", "sha256": digest}]
        return []

    def cache_key(self, image: str, scope: Literal["result", "workspace"] = "result") -> str:
        """A short hash of what decides this plan's outcome, given the identity of the image it runs in.

        "result": everything (apachews, sources, patches or module source, image, builder, flags): the same
        key means the same build, so a matrix row can be reused. "workspace": only what decides the
        configured tree a builder keeps between builds (release, image, compiler recipe with its MPM);
        the sources and our module are left out on purpose, so that changing them recompiles only what
        changed instead of starting from a cold tree, and so is with_httpd, which only adds `make install`.
        """
        parts: dict[str, object] = {
            "apache": self.version,
            "image": image,
            "recipe": self.recipe.to_dict(),
            "mpm": self.mpm,
        }
        if self.ssl != "system":  # the OpenSSL built into the workspace (its own stamp catches a new commit)
            parts["ssl"] = [self.ssl, self.openssl.identity()]
        if scope == "result":  # the module is compiled afresh in every build: the floor is no part of the tree
            parts["glibc_floor"] = str(self.floor.glibc)
            parts |= {
                "apachews": __version__,
                "with_httpd": self.with_httpd,
                "sources": self.source.identity(),
                "inputs": [entry["sha256"] for entry in self.module_inputs()],
                "builder": self.builder,
                "backport": self.backport,
            }
        return fingerprint(parts, 20 if scope == "result" else 16)


# Docker's reference grammar (distribution/reference): [host[:port]/]path[:tag][@digest], path lowercase.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
_IMAGE_REFERENCE = re.compile(
    rf"{_HOST}{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?"
)


def check_image_reference(text: str) -> str:
    """`text` when it is a Docker image reference (a typo is bad input, exit 2, not an engine error)."""
    first = text.split("/", 1)[0] if "/" in text else ""
    # Like Docker: a first part is a registry host only with a dot, a port or as localhost, else a path.
    host_ok = not first or re.fullmatch(_COMPONENT, first) or "." in first or ":" in first or first == "localhost"
    if not (_IMAGE_REFERENCE.fullmatch(text) and host_ok):
        raise BadInput(
            f"--base-image {text!r} is not a Docker image reference",
            hint=f"give a name like {DEFAULT_BASE_IMAGE} or image:tag (lowercase; `docker image ls` lists "
            "the images you have; `apachews image bootstrap --suite S` makes apachews/base:S)",
        )
    return text
