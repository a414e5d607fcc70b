"""`Deployment`: what one `config` (or `install`) deploys, built once from the options; the command line that
renders it again; the MPM sizing for --max-websockets."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apachews import capacity, catalogue
from apachews.capacity import Sizing
from apachews.catalogue import Release
from apachews.tunnelling import Tunnelling

if TYPE_CHECKING:
    from apachews.doctor import Defaults
    from apachews.transport import Transport

PREFER = tuple(style.value for style in Tunnelling)
VHOSTS = ("server", "tls")  # --vhost: the routes at server level (every vhost), or inside the layout's TLS vhost


@dataclass(frozen=True)
class Deployment:
    """What one `config` (or `install`) deploys, built once from the options and passed through render:
    the preset, the release, the layout it goes into, the backends, the tunnelling asked for (None: the
    release's own), the MPM sizing (--max-websockets), ProxyWebsocketHandoff, and the route's other options."""

    preset: str
    release: Release
    layout: str = "generic"
    backends: tuple[str, ...] = ()
    tunnelling: str | Tunnelling | None = None  # --prefer
    sizing: Sizing | None = None
    handoff: bool = False
    path: str | None = None
    allow: tuple[str, ...] = ()
    tls: bool = False
    sticky: bool = False
    h2: bool = False
    public_url: str | None = None
    vhost: str = "server"
    backend_ca: str | None = None

    @classmethod
    def of(
        cls,
        preset: str,
        *,
        apache: str | Release,
        distro: str = "generic",
        backends: Sequence[str] = (),
        prefer: str | Tunnelling | None = None,
        allow: Sequence[str] = (),
        **options: Any,
    ) -> Deployment:
        """From the options as the commands name them (--apache, --distro, --prefer, ...)."""
        release = catalogue.as_release(apache)
        return cls(preset, release, distro, tuple(backends), prefer, allow=tuple(allow), **options)


def reproduce_command(d: Deployment) -> str:
    """The `apachews config` command line that renders the same files (values are validated already)."""
    words = ["apachews", "config", d.preset, "--apache", str(d.release.version), "--distro", d.layout]
    words += [item for backend in d.backends for item in ("--backend", backend)]
    words += ["--path", d.path] if d.path else []
    words += [item for client in d.allow for item in ("--allow", client)]
    prefer = d.tunnelling
    words += ["--prefer", prefer.value if isinstance(prefer, Tunnelling) else prefer] if prefer is not None else []
    words += ["--public-url", d.public_url] if d.public_url else []
    if d.sizing is not None:
        words += ["--max-websockets", str(d.sizing.websockets), "--http-reserve", str(d.sizing.http_reserve)]
        words += ["--mpm", d.sizing.mpm]
    flags = {"--tls": d.tls, "--sticky": d.sticky, "--handoff": d.handoff, "--h2": d.h2}
    words += [flag for flag, given in flags.items() if given]
    return " ".join(shlex.quote(word) for word in words)


def mpm_sizing(
    release: Release,
    found: Defaults | None,
    max_websockets: str,
    http_reserve: str | None,
    mpm: str | None,
    handoff: bool,
    host: Transport | None = None,
) -> tuple[capacity.Sizing, str]:
    """The MPM sizing for --max-websockets, from the server found here (its own settings), else httpd's
    defaults for the family and MPM; and a note saying which."""
    from apachews import doctor
    from apachews.transport import LOCAL

    wanted = capacity.validate_websockets(max_websockets)
    reserve = capacity.validate_reserve(http_reserve) if http_reserve is not None else None
    family = release.family
    here = found is not None and found.source != "assumed" and mpm in (None, found.mpm)
    if here:
        settings = doctor.server_settings(found.control or found.source, host=host or LOCAL)  # type: ignore[union-attr]
        source = f"sized from the settings of the server at {found.source}"  # type: ignore[union-attr]
    else:
        mpm = mpm or ("prefork" if family == "2.2" else "event")
        settings = capacity.defaults(family, mpm)
        source = (
            f"sized from httpd's defaults for the {family} {mpm} MPM (pass --mpm; run config on the server itself, "
            "without --apache, to size from its own settings)"
        )
    current = capacity.compute(settings)
    sizing = capacity.size(current, wanted, reserve, handoff=handoff)
    return sizing, f"{source}: {current.summary()} now."
