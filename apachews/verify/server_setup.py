"""`ServerSetup`: how verify sets up the Apache under test for a run, built once from the options (verify's CLI,
matrix, bench, the tests) and handed to `run`, `run_presets` and `running_proxy` whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apachews import capacity
from apachews.distros import trees
from apachews.errors import BadInput
from apachews.tunnelling import Tunnelling
from apachews.verify.checks_capacity import CAPACITY_MAX_WEBSOCKETS


def validate_capacity_count(value: object) -> int:
    """verify --max-websockets: capacity's rules, and what one verify process can open."""
    count = capacity.validate_websockets(value)
    if count > CAPACITY_MAX_WEBSOCKETS:
        raise BadInput(
            f"verify --max-websockets {count}: verify opens at most {CAPACITY_MAX_WEBSOCKETS} WebSockets, from one "
            "process that also runs the echo backend",
            hint=f"give at most {CAPACITY_MAX_WEBSOCKETS} (config and doctor size for up to {capacity.MAX_WEBSOCKETS})",
        )
    return count


@dataclass(frozen=True)
class ServerSetup:
    """The server under test, whatever preset it serves: what the options say, checked here; what needs the
    httpd (the module's release, the style it can tunnel in, HTTP/2) `running_proxy` checks."""

    module: Path | None = None  # this mod_proxy_wstunnel.so in place of the server's (the apachews style)
    prefer: str | Tunnelling | None = None  # the tunnelling style (None: the release's; a module: apachews)
    layout: str | None = None  # trees.LAYOUTS (None: the named case's, else the server's own)
    # The MPM sizing `config --max-websockets` renders, a raised open-files limit, and the capacity check's count
    # (the command line's text is parsed and checked in __post_init__, as capacity's validators take any value)
    max_websockets: int | None = None
    handoff: bool = False  # the routes get ProxyWebsocketHandoff On (the apachews module only)
    h2: bool | None = None  # WebSockets over HTTP/2 (H2WebSockets, Protocols h2 h2c); None: wherever it can
    mpm: str | None = None  # the MPM bare, or a layout that switches MPMs by module, runs instead of its own

    def __post_init__(self) -> None:
        # Frozen: the normalised values go in through object.__setattr__.
        if self.module is not None:
            module = Path(self.module)
            if not module.is_file():
                raise BadInput(f"no module at {module.resolve()}")
            object.__setattr__(self, "module", module)
        if self.layout is not None and self.layout not in trees.LAYOUTS:
            raise BadInput(f"unknown layout {self.layout!r}", hint="layouts: " + ", ".join(trees.LAYOUTS))
        if self.max_websockets is not None:
            object.__setattr__(self, "max_websockets", validate_capacity_count(self.max_websockets))

    @property
    def module_label(self) -> str | None:
        """The module as the report names it: as it was given."""
        return str(self.module) if self.module else None


DEFAULT_SETUP = ServerSetup()  # the server as it comes: its own module, style, layout and MPM; no sizing
