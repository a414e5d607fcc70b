"""The glibc floor of a module build: the oldest glibc the module must load on, the compiler that pins it,
and the check that the finished .so keeps it.

By default a module must load on every distribution of the catalogue that shipped its Apache family
(`distros.catalogue.family_floor`); `--target DISTRO` or `--glibc X.Y` narrows that. The compiler is
`zig cc -target <arch>-linux-gnu.<floor>` from PyPI's ziglang: it links against stubs of that glibc
release, so every symbol binds to a version that release has (no hand-written .symver lists). Only the
module is compiled this way; a lab httpd (`--with-httpd`) stays built by the image's gcc, since it only
ever runs on the build host.

The wrapper script (`zig-cc`) is what the builders hand to make or apxs as CC. Besides the target it
drops `-I/usr/include` (apxs adds it: the build host's glibc headers would shadow the target's), turns
some distributions' apxs' `-Wp,-D_FORTIFY_SOURCE=2` into a plain -D and drops its `-mtune=generic` (zig cc refuses
both), and ends with `-U_FORTIFY_SOURCE` (fortified calls such as __poll_chk are newer than the old glibcs and are
not versioned by the stubs, so the module would fail to load there with "undefined symbol").
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from apachews.binary import GlibcVersion, ModuleBinary, inspect_module, machine_name
from apachews.distros import catalogue as distros
from apachews.errors import BadInput, JobFailed
from apachews.serial import Serialised
from apachews.sources.store import cache_dir

WRAPPER_NAME = "zig-cc"
DOCKER_ZIG_DIR = "/opt/zig"  # where the build container sees the host's ziglang package (read-only)
# What linking a module takes besides the object: pthread, so pthread_* bind to a versioned symbol of the
# floor's libpthread (a separate library before glibc 2.34, a stub after), and the soname apxs gives it.
LINK_ARGS = ("-shared", "-pthread", "-Wl,-soname,mod_proxy_wstunnel.so")
# The oldest glibc that zig targets for each architecture (glibc's first release on it).
_FIRST_GLIBC = {"x86_64": "2.2.5", "aarch64": "2.17", "i686": "2.0", "ppc64le": "2.17", "s390x": "2.2"}


@dataclass(frozen=True)
class Floor(Serialised):
    """The glibc a build's module may need at most, and why."""

    glibc: GlibcVersion
    family: str  # the Apache family of the build ("2.2" or "2.4")
    asked_by: str  # what set it: "the 2.2 family", "--target <key>", "--glibc 2.12", a distribution's packages
    target: distros.Distribution | None = None
    _omit = ("family", "target")
    _derived = ("target_key", "zig_target", "loads_on_keys")  # zig_target: for this machine
    _renamed = {"target_key": "target", "loads_on_keys": "loads_on"}

    @property
    def target_key(self) -> str | None:
        return self.target.key if self.target else None

    @property
    def loads_on_keys(self) -> list[str]:
        return [d.key for d in self.loads_on()]

    def loads_on(self, needed: GlibcVersion | None = None) -> list[distros.Distribution]:
        """The family's distributions whose glibc is at least `needed` (default: this floor)."""
        limit = needed or self.glibc
        shipped = [self.target] if self.target else distros.shipping(self.family)
        return [d for d in shipped if d.glibc >= limit]

    def zig_target(self, machine: str | None = None) -> str:
        return f"{machine_name(machine or platform.machine())}-linux-gnu.{self.glibc}"


def resolve(family: str, target: str = "", glibc: str = "") -> Floor:
    """The floor of a build of `family`: the family's, or the one `--target` / `--glibc` asks for."""
    if target and glibc:
        raise BadInput("give --target or --glibc, not both", hint="--target DISTRO uses that distribution's glibc")
    if target:
        chosen = distros.get(target)
        if chosen.family != family:
            raise BadInput(
                f"--target {target}: {chosen.name} runs Apache {chosen.apache} (the {chosen.family} family), "
                f"this build is Apache {family}: its module would not load there",
                hint=f"build a {chosen.family} release for it (e.g. --apache {chosen.apache}), or pick one of: "
                + ", ".join(d.key for d in distros.shipping(family)),
            )
        return Floor(chosen.glibc, family, f"--target {target} ({chosen.name})", chosen)
    if glibc:
        version = GlibcVersion.parse(glibc)
        first = GlibcVersion.parse(_FIRST_GLIBC.get(machine_name(platform.machine()), "2.2.5"))
        if version < first:
            raise BadInput(f"--glibc {glibc}: glibc on {platform.machine()} starts at {first}")
        return Floor(version, family, f"--glibc {glibc}")
    return Floor(distros.family_floor(family), family, f"the {family} family's oldest distribution")


# -- the compiler --------------------------------------------------------------------------------------------
def zig_dir() -> Path:
    """The ziglang package directory (the zig binary and its lib/): mounted read-only into build containers."""
    spec = importlib.util.find_spec("ziglang")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / "zig").is_file():
            return Path(location)
    raise BadInput(
        "no zig compiler: the ziglang package is not installed",
        hint="pip install ziglang (apachews depends on it: reinstall apachews)",
    )


def zig_version(zig: Path | None = None) -> str:
    done = subprocess.run(
        [str(zig or zig_dir() / "zig"), "version"], capture_output=True, text=True, check=False, timeout=60
    )
    return done.stdout.strip() or "unknown"


def wrapper_script(zig: str, zig_target: str) -> str:
    """The `zig-cc` script builders give make or apxs as CC (see the module docstring)."""
    return (
        "#!/bin/sh\n"
        f"# apachews: zig cc -target {zig_target} (a glibc floor), for the module only.\n"
        "# The build host's glibc headers must not shadow the target's: -I/usr/include is dropped. gcc flags\n"
        "# of distributions' apxs that zig cc refuses: -Wp,-D... becomes -D..., -mtune=generic goes.\n"
        "for arg do\n"
        "    shift\n"
        "    case $arg in\n"
        "        -I/usr/include|-I/usr/include/|-mtune=generic) continue ;;\n"
        "        -Wp,-D*|-Wp,-U*) arg=${arg#-Wp,} ;;\n"
        "    esac\n"
        '    set -- "$@" "$arg"\n'
        "done\n"
        f'exec {shlex.quote(zig)} cc -target {zig_target} "$@" -U_FORTIFY_SOURCE\n'
    )


def write_wrapper(directory: Path, floor: Floor, zig: Path | None = None) -> Path:
    """Write the `zig-cc` wrapper for `floor` into `directory`; returns its path."""
    path = Path(directory) / WRAPPER_NAME
    path.write_text(wrapper_script(str(zig or zig_dir() / "zig"), floor.zig_target()))
    path.chmod(0o755)
    return path


def zig_env(scratch: Path) -> dict[str, str]:
    """The environment for zig on this host. Its global cache (the floor's libc stubs: cold, some tens of
    seconds; then reused) sits beside the compiler cache, where the local builder keeps it too. The objects of
    this one build go to a local cache under `scratch`: builds of the same source at once (a test run beside
    `make demo`) must not share them."""
    cache = cache_dir() / "ccache" / "zig"
    cache.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(cache), "ZIG_LOCAL_CACHE_DIR": str(Path(scratch) / "zig-local")}


def link(wrapper: Path, objects: list[Path], so: Path) -> subprocess.CompletedProcess[str]:
    """Link a module with the wrapper (libtool would link with the compiler its tree was configured with)."""
    argv = [str(wrapper), *LINK_ARGS, "-o", str(so), *map(str, objects)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=zig_env(wrapper.parent))


# -- the check ----------------------------------------------------------------------------------------------
def check(so: Path, floor: Floor) -> ModuleBinary:
    """Read the built module; JobFailed naming the symbols when it needs a newer glibc than the floor."""
    binary = inspect_module(so)
    above = binary.symbols_above(floor.glibc)
    if above:
        named = ", ".join(f"{name} (GLIBC_{version})" for name, version in above.items())
        raise JobFailed(
            f"the module needs glibc {binary.glibc_floor}, above the floor asked ({floor.glibc}, {floor.asked_by}): "
            f"{named}",
            hint="the compiler did not pin the floor; run with -vv and report the build log",
        )
    if floor.target and binary.mmn_major is not None and binary.mmn_major != floor.target.mmn:
        raise JobFailed(
            f"the module was built for MMN {binary.mmn_major}, {floor.target.name} runs MMN {floor.target.mmn}",
            hint=f"build Apache {floor.target.apache}'s family for --target {floor.target.key}",
        )
    return binary


def record(binary: ModuleBinary, floor: Floor) -> dict[str, object]:
    """What build.json keeps about the module and its floor."""
    return {**binary.to_dict(), "floor": floor.to_dict()}


def summary(module: dict[str, object]) -> str:
    """One line from build.json's "module": machine, glibc needed, the floor asked, where it loads, MMN."""
    floor = module.get("floor") or {}
    assert isinstance(floor, dict)
    loads = [distros.get(key).name for key in floor.get("loads_on", [])]
    if len(loads) > 3:
        where = f"loads on {loads[0]} and {len(loads) - 1} later distributions"
    else:
        where = f"loads on {', '.join(loads)}" if loads else "no catalogued distribution has that glibc"
    needs = module.get("glibc_floor") or "nothing versioned"
    return (
        f"module: {module.get('machine')}, needs glibc >= {needs} "
        f"(floor {floor.get('glibc')} asked: {where}), MMN {module.get('mmn') or '?'}"
    )
