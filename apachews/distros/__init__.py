"""Where each distribution keeps Apache's module and configuration files.

One small class per distribution overrides what differs from `Layout` (the generic single-file layout),
in the manner of certbot-apache's per-distribution overrides.
"""

from __future__ import annotations

from dataclasses import dataclass

from apachews.errors import BadInput


@dataclass(frozen=True)
class Parts:
    """What a layout arranges into files: rendered LoadModule text, rendered proxy config, context."""

    preset: str
    family: str  # "2.2" or "2.4"
    needs_backport: bool
    modules: tuple[str, ...]
    proxy_conf: str

    def module_lines(self, modules_path: str, guarded: bool = True, names: tuple[str, ...] | None = None) -> str:
        lines = []
        for name in self.modules if names is None else names:
            load = f"LoadModule {name}_module {modules_path}/mod_{name}.so"
            lines.append(f"<IfModule !mod_{name}.c>\n    {load}\n</IfModule>" if guarded else load)
        return "\n".join(lines) + ("\n" if lines else "")


class Layout:
    """generic: one file to Include from httpd.conf, modules relative to ServerRoot."""

    name = "generic"
    modules_path = "modules"

    def files(self, parts: Parts) -> dict[str, str]:
        return {f"apachews-{parts.preset}.conf": parts.module_lines(self.modules_path) + "\n" + parts.proxy_conf}

    def notes(self, parts: Parts) -> list[str]:
        return [f"Include apachews-{parts.preset}.conf from httpd.conf, then run apachectl -t and reload."]


def get(name: str) -> Layout:
    from apachews.distros import debian, gentoo, rhel

    layouts = {"generic": Layout(), "debian": debian.Debian(), "rhel": rhel.Rhel(), "gentoo": gentoo.Gentoo()}
    try:
        return layouts[name]
    except KeyError:
        raise BadInput(f"unknown distribution {name!r}", hint="use one of: " + ", ".join(layouts)) from None


NAMES = ("generic", "debian", "rhel", "gentoo")
