"""`apachews versions`: the release catalogue, and what one server needs."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap

import click

from apachews import catalogue
from apachews.catalogue import Release
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main
from apachews.cli._options import RELEASE
from apachews.distros import catalogue as distros
from apachews.errors import BadInput
from apachews.tunnelling import has_cve_2019_17567


def _yes(flag: bool | None) -> str:
    return "unknown" if flag is None else "yes" if flag else "no"


def explain(release: Release) -> str:
    lines = [
        f"Apache httpd {release.version} ({release.family} family)",
        f"  released:                {_yes(release.released)}",
        "  release tarballs:        "
        + (", ".join(release.tarballs) if release.released is not False else "none (never released)"),
        f"  stock mod_proxy_wstunnel: {_yes(release.stock_wstunnel)}",
        f"  mod_proxy_http upgrade:  {_yes(release.proxy_http_upgrade)}",
        f"  WebSockets via:          {release.tunnelling}",
        f"  apachews patch series:   {release.series or 'none'}",
    ]
    for name, info in release.checksums.items() if release.released is not False else ():
        lines.append(f"  sha256 {name}: {info['sha256']}")
        lines.append(f"    ({info['source']})")
    lines.append("")
    if release.released is False:
        lines.append("This version was tagged but never released; no release tarball exists for it.")
    if release.needs_backport:
        lines += [
            "What you need: the apachews backport of mod_proxy_wstunnel, built for exactly this release.",
            f"  apachews build --apache {release.version}",
            f"  apachews config generic --apache {release.version}",
        ]
    elif release.proxy_http_upgrade:
        lines += [
            "Nothing to build: mod_proxy_http tunnels WebSockets itself (ProxyPass ... upgrade=websocket);",
            "the stock mod_proxy_wstunnel also works.",
            f"  apachews config generic --apache {release.version}",
        ]
    elif not release.stock_wstunnel_usable:
        lines += [
            "The stock mod_proxy_wstunnel of this release pools backend connections across handshakes and",
            "busy-loops on client errors (fixed in 2.4.10): build the apachews module in its place.",
            f"  apachews build --apache {release.version} --backport",
            f"  apachews config generic --apache {release.version}",
        ]
    else:
        lines += [
            "Nothing to build: enable the stock mod_proxy_wstunnel that ships with this release.",
            f"  apachews config generic --apache {release.version}",
        ]
    if has_cve_2019_17567(release):
        lines += [
            "",
            "Security: this release's stock mod_proxy_wstunnel tunnels whatever the backend answers, a refused",
            "upgrade too (CVE-2019-17567, fixed in 2.4.47). The apachews module opens a tunnel only on a 101:",
            f"  apachews build --apache {release.version} --backport",
            f"  apachews config generic --apache {release.version} --prefer apachews",
        ]
    return "\n".join(lines)


def which_version_table(releases: list[Release]) -> str:
    """Released versions grouped into runs that need the same thing, as a Markdown table."""
    rows: list[list[str]] = []
    for release in (r for r in releases if r.released):
        need = (release.tunnelling, release.series or "-")
        if rows and (rows[-1][2], rows[-1][3]) == need:
            rows[-1][1] = str(release.version)
        else:
            rows.append([str(release.version), str(release.version), *need])
    lines = ["| your Apache | WebSockets via | apachews series |", "|---|---|---|"]
    for first, last, tunnelling, series in rows:
        span = first if first == last else f"{first} to {last}"
        lines.append(f"| {span} | {tunnelling} | {series} |")
    return "\n".join(lines)


def build_command_for(distribution: distros.Distribution) -> str:
    """The build whose module loads on `distribution`, at its glibc (our module: --backport where the
    release has a stock one)."""
    release = catalogue.load().get(str(distribution.apache))
    backport = "" if release.needs_backport else " --backport"
    return f"apachews build --apache {distribution.apache}{backport} --target {distribution.key}"


def which_build_table() -> str:
    """The catalogue's distributions: each family's default glibc floor, then per distribution the build
    for exactly it and the one from its own dev packages, as Markdown."""
    lines = ["| Apache family | default glibc floor | so the module loads on |", "|---|---|---|"]
    for family in ("2.2", "2.4"):
        names = ", ".join(d.name for d in distros.shipping(family))
        lines.append(f"| {family} | {distros.family_floor(family)} | {names} |")
    lines += [
        "",
        "| your server | glibc | Apache (MMN) | build for exactly it | or against its own dev packages |",
        "|---|---|---|---|---|",
    ]
    for d in distros.distributions().values():
        facts = distros.layout_facts(d.layout)
        assert facts.dev_packages is not None, f"distributions.json: no dev packages for the {d.layout} layout"
        dev = (
            f"`{facts.dev_fetch} {facts.dev_packages[d.family]}`, then `apachews build --dev-package {facts.dev_files}`"
        )
        lines.append(f"| {d.name} | {d.glibc} | {d.apache} ({d.mmn}) | `{build_command_for(d)}` | {dev} |")
    return "\n".join(lines)


def release_table(releases: list[Release], width: int | None) -> str:
    """One row per release; the "WebSockets via" column wraps (never cuts) to fit `width` columns."""
    rows = [[str(r.version), _yes(r.released), r.tunnelling, r.series or "-"] for r in releases]
    header = ["version", "released", "WebSockets via", "series"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    if width:  # give the wrapping column what the others leave, but never less than its longest word
        longest_word = max(len(word) for row in rows for word in row[2].split()) if rows else 0
        widths[2] = max(longest_word, min(widths[2], width - widths[0] - widths[1] - widths[3] - 6))
    lines = []
    for row in [header, *rows]:
        pieces = textwrap.wrap(row[2], widths[2]) or [""]
        for n, piece in enumerate(pieces):
            cells = [row[0], row[1], piece, row[3]] if n == 0 else ["", "", piece, ""]
            lines.append(
                f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  {cells[2]:<{widths[2]}}  {cells[3]}".rstrip()
            )
    return "\n".join(lines)


def _terminal_width() -> int | None:
    """The width to fit: the terminal's (or $COLUMNS); None when writing to a pipe or file (no wrapping)."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


@command(main, "versions")
@click.option("--apache", "release", type=RELEASE, metavar="V", help="Explain what this Apache release needs.")
@click.option("--family", type=click.Choice(["2.2", "2.4"]), help="Only this family.")
@click.option("--all", "include_unreleased", is_flag=True, help="Include versions that were never released.")
@click.option("--markdown", is_flag=True, help="A 'which version do I need' table in Markdown (not with --apache).")
@click.option(
    "--distributions",
    is_flag=True,
    help="Which build for which server: the distributions, their glibc and Apache, and the command (Markdown).",
)
def versions_command(
    session: Session,
    release: Release | None,
    family: str | None,
    include_unreleased: bool,
    markdown: bool,
    distributions: bool,
) -> Result:
    """List Apache releases, or explain what one release needs (--apache V)."""
    if distributions:
        if release or family or include_unreleased:
            raise BadInput("--distributions lists every distribution", hint="apachews versions --distributions")
        known = distros.distributions().values()
        data = [{**d.to_dict(), "build": build_command_for(d)} for d in known]
        floors = {family: str(distros.family_floor(family)) for family in ("2.2", "2.4")}
        return Result(data={"family_floors": floors, "distributions": data}, text=which_build_table())
    releases = catalogue.load()
    if release:
        given = [
            name
            for name, value in (("--family", family), ("--all", include_unreleased), ("--markdown", markdown))
            if value
        ]
        if given:
            raise BadInput(
                f"{', '.join(given)} lists releases; --apache explains one",
                hint=f"apachews versions --apache {release.version}, or apachews versions {' '.join(given)}",
            )
        return Result(data={"release": release.to_dict()}, text=explain(release))
    chosen = [r for r in releases.all(family) if include_unreleased or r.released is not False]
    if markdown:
        return Result(data={"releases": [r.to_dict() for r in chosen]}, text=which_version_table(chosen))
    return Result(data={"releases": [r.to_dict() for r in chosen]}, text=release_table(chosen, _terminal_width()))
