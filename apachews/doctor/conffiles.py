"""Reading an installed Apache's config files as httpd would: Include lines followed (2.2 has no DUMP_INCLUDES),
directives in reading order, <IfModule> sections honoured against the loaded modules."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from apachews.transport import LOCAL, Transport

_DIRECTIVE = re.compile(r"^\s*(\w+)\s*(.*?)\s*$")


# -- reading config files ----------------------------------------------------------------------------------
def _logical_lines(path: Path, host: Transport = LOCAL, raw: str | None = None) -> list[str]:
    if raw is None:
        try:
            raw = host.read_text(path)
        except OSError:
            return []
    return [
        line for line in raw.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def follow_includes(config_file: Path, server_root: Path, limit: int = 500, host: Transport = LOCAL) -> list[str]:
    """The config files Apache would read (for 2.2, which has no DUMP_INCLUDES): Include lines, globs sorted."""
    seen: list[str] = []

    def visit(path: Path) -> None:
        if len(seen) >= limit or str(path) in seen:
            return
        seen.append(str(path))
        for line in _logical_lines(path, host):
            match = re.match(r"\s*Include(?:Optional)?\s+\"?([^\"]+?)\"?\s*$", line, re.IGNORECASE)
            if not match:
                continue
            pattern = match.group(1)
            pattern = pattern if pattern.startswith("/") else str(server_root / pattern)
            if host.test("-d", pattern):
                pattern = os.path.join(pattern, "*")
            for name in host.glob(pattern):
                if host.test("-f", name):
                    visit(Path(name))

    visit(config_file)
    return seen


def module_present(condition: str, loaded: dict[str, str]) -> bool:
    """Evaluate an <IfModule> argument against the loaded modules (unknown modules: assume present)."""
    if not loaded:
        return not condition.startswith("!")
    negate = condition.startswith("!")
    name = condition.lstrip("!")
    if name.endswith(".c"):
        base = name[:-2].removeprefix("mod_")
        present = f"{base}_module" in loaded or f"mpm_{base}_module" in loaded
    else:
        present = name in loaded
    return present != negate


def scan_directives(
    files: Sequence[str], names: Sequence[str], loaded: dict[str, str], host: Transport = LOCAL
) -> dict[str, list[str]]:
    """Values of the named directives in the order Apache reads them, honouring <IfModule> (so a MaxClients
    inside <IfModule prefork.c> counts only under prefork). Other sections (vhosts...) are read through."""
    wanted = {n.lower(): n for n in names}
    found: dict[str, list[str]] = {n: [] for n in names}
    texts = host.read_texts(list(files))  # one round trip to a remote server
    for name in files:
        active: list[bool] = []
        for line in _logical_lines(Path(name), host, texts.get(name, "")):
            stripped = line.strip()
            opening = re.match(r"<IfModule\s+([^>\s]+)\s*>", stripped, re.IGNORECASE)
            if opening:
                active.append(module_present(opening.group(1), loaded))
                continue
            if re.match(r"</IfModule\s*>", stripped, re.IGNORECASE):
                if active:
                    active.pop()
                continue
            if not all(active):
                continue
            match = _DIRECTIVE.match(stripped)
            if match and match.group(1).lower() in wanted:
                found[wanted[match.group(1).lower()]].append(match.group(2))
    return found
