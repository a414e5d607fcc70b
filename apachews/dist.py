"""`Dist`: a build's output directory, and the one code that knows its layout.

    <dist>/build.json                          what was built, from what, how (every builder writes one)
    <dist>/modules/mod_proxy_wstunnel.so       the apachews module (a backport build, --apxs, --dev-package)
    <dist>/httpd/bin/httpd, httpd/modules/     the whole httpd (`apachews build --with-httpd`)
    <dist>/build.log

`apachews build --apache V` makes dist/httpd-V, `--apxs` dist/apxs-<headers>, `--dev-package`
dist/<distribution>-<headers>. verify, torture and doctor load one with `Dist.load`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apachews.catalogue import Version
from apachews.errors import BadInput
from apachews.fsutil import write_atomic

if TYPE_CHECKING:
    from apachews.httpd import Httpd

INFO = "build.json"
MODULE = "mod_proxy_wstunnel.so"


@dataclass(frozen=True)
class Dist:
    """A build's output directory (it may not exist yet: a builder stages one, then writes its build.json)."""

    path: Path

    @classmethod
    def load(cls, path: str | Path, *, httpd: bool = False, module: bool = False) -> Dist:
        """An existing build output; BadInput when it is not one, or lacks the httpd or module asked for."""
        dist = cls(Path(path))
        if not dist.info_file.is_file():
            raise BadInput(f"{dist.path} is not an `apachews build` output (no {INFO})")
        if httpd and not dist.has_httpd:
            raise BadInput(
                f"{dist.path} has no httpd install", hint="rebuild with `apachews build --with-httpd`, or pass --httpd"
            )
        if module and dist.module is None:
            raise BadInput(f"{dist.path} is not an `apachews build` output with a module (no modules/{MODULE})")
        return dist

    @classmethod
    def of_module(cls, module: Path) -> Dist | None:
        """The build a module file came from: the one whose build.json is beside it or beside its modules/."""
        for folder in (module.parent, module.parent.parent):
            if (folder / INFO).is_file():
                return cls(folder)
        return None

    # -- the layout --
    @property
    def info_file(self) -> Path:
        return self.path / INFO

    @property
    def module_path(self) -> Path:
        """Where the apachews module is (or goes)."""
        return self.path / "modules" / MODULE

    @property
    def module(self) -> Path | None:
        """The apachews module, when this build made one."""
        return self.module_path if self.module_path.is_file() else None

    @property
    def httpd_prefix(self) -> Path:
        return self.path / "httpd"

    @property
    def httpd_binary(self) -> Path:
        return self.httpd_prefix / "bin" / "httpd"

    @property
    def has_httpd(self) -> bool:
        return self.httpd_binary.exists()

    # -- build.json --
    def info(self) -> dict[str, Any]:
        """build.json; {} when it is missing or unreadable."""
        try:
            data = json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_info(self, info: dict[str, Any]) -> None:
        """build.json, written atomically (beside, then renamed)."""
        write_atomic(self.info_file, json.dumps(info, indent=2) + "\n")

    @property
    def backport(self) -> bool:
        """Whether the module here is the apachews one built into an httpd build (not a stock-module build)."""
        return bool(self.info().get("backport"))

    def built_for(self) -> Version | None:
        """The Apache release this was built for (build.json "apache"), when it says."""
        try:
            return Version.parse(str(self.info().get("apache", "")))
        except (ValueError, BadInput):
            return None

    def httpd(self) -> Httpd:
        """Its httpd (`--with-httpd`), ready to run."""
        from apachews import httpd

        if not self.has_httpd:
            raise BadInput(
                f"{self.path} has no httpd install", hint="rebuild with `apachews build --with-httpd`, or pass --httpd"
            )
        return httpd.locate(prefix=self.httpd_prefix)
