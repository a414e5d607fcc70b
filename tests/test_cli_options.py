"""Option names, help and refusals, as the parser sees them (CliRunner), plus shell completion and the
versions table's fit to the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from apachews.cli import main

# The installed `apachews` script: click names the completion variable after the program (_APACHEWS_COMPLETE).
ENTRY_POINT = str(Path(sys.executable).parent / "apachews")


def all_commands(group: click.Group = main, path: str = "apachews") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{path} {name}", command))
        if isinstance(command, click.Group):
            found += all_commands(command, f"{path} {name}")
    return found


def options_named(name: str) -> list[tuple[str, click.Option]]:
    return [
        (where, param)
        for where, command in all_commands()
        for param in command.params
        if isinstance(param, click.Option) and name in param.opts + param.secondary_opts and not param.hidden
    ]


def test_every_visible_option_has_help():
    missing = [
        f"{where} {'/'.join(param.opts)}"
        for where, command in all_commands()
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not param.help
    ]
    assert missing == []


def test_one_meaning_per_option_name():
    jobs = options_named("-j")
    assert {where for where, _ in jobs} >= {"apachews build", "apachews matrix"}
    assert all(param.opts == ["--jobs", "-j"] or "--jobs" in param.opts for _, param in jobs)
    assert all("make jobs" in (param.help or "") for _, param in jobs), [p.help for _, p in jobs]
    mirrors = options_named("--mirror")
    assert mirrors and all("Apache mirror" in (param.help or "") for _, param in mirrors)
    assert "apachews image bootstrap" not in {where for where, _ in mirrors}
    outputs = options_named("-o")
    assert all("--output" in param.opts for _, param in outputs)
    # the deliberate exception is said in both helps
    checks = dict(options_named("--check"))
    assert "in verify a name" in (checks["apachews config"].help or "")
    assert "`config --check` is a flag" in (checks["apachews verify"].help or "")
    assert "Deliberate exception" in CliRunner().invoke(main, ["--help"]).output


def test_global_options_on_every_command():
    for where, command in all_commands():
        if isinstance(command, click.Group):
            continue
        names = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert {"-v", "-q", "--json", "--debug"} <= names, where


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["versions", "--apache", "2.4.69", "--markdown"], "--markdown lists releases"),
        (["versions", "--apache", "2.4.69", "--family", "2.2"], "--family lists releases"),
        (["config", "gateone", "--force"], "--force applies to -o DIR only"),
        (["config", "gateone", "--httpd", "/usr/sbin/apache2"], "--httpd is the httpd of --check"),
        (["config", "gateone", "--sticky"], "--sticky is for the balancer preset"),
        (["image", "bootstrap", "--mirror", "http://deb.debian.org/debian"], "--package-mirror"),
        (["build", "--apache", "2.4.69", "--builder", "local", "--base-image", "centos:7"], "docker builder only"),
        (["build", "--from-pypi"], "which Apache release? give --apache V"),
        (["cache", "list", "--kind", "nonsense"], "Invalid value for '--kind'"),
        (["fetch", "--apache", "2.4.69", "--from-pypi", "--insecure-no-checksum"], "mirror downloads only"),
        (["cache"], "cache: which command? list, prune"),
        ([], ": which command? bench, build, cache"),
    ],
)
def test_options_that_do_not_apply_are_refused(args: list[str], says: str):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert says in result.output


def test_unreleased_version_lists_no_tarballs():
    result = CliRunner().invoke(main, ["versions", "--apache", "2.4.5"])
    assert result.exit_code == 0
    assert "release tarballs:        none (never released)" in result.output
    assert "httpd-2.4.5.tar" not in result.output


def test_versions_table_fits_the_terminal_or_stays_whole():
    piped = CliRunner().invoke(main, ["versions", "--all"], env={"COLUMNS": ""})
    rows = piped.output.splitlines()
    assert len(rows) == 1 + len(CliRunner().invoke(main, ["versions", "--all", "--json"]).output.split('"version"')) - 1
    narrow = CliRunner().invoke(main, ["versions", "--all"], env={"COLUMNS": "45"})
    assert narrow.exit_code == 0
    lines = narrow.output.splitlines()
    assert max(len(line) for line in lines) <= 45, max(lines, key=len)
    # nothing cut: every word of the wide table is in the narrow one
    assert sorted(" ".join(rows).split()) == sorted(" ".join(lines).split())


def complete(words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (click's protocol, the real entry point)."""
    parts = words.split(" ")
    done = subprocess.run(
        [ENTRY_POINT],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "_APACHEWS_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
        },
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [line.split(",", 1)[1] for line in done.stdout.splitlines()]


def test_shell_completion_offers_commands_and_versions():
    assert "cache" in complete("apachews ca")
    versions = complete("apachews build --apache 2.2.3")
    assert "2.2.31" in versions and "2.2.34" in versions and all(v.startswith("2.2.3") for v in versions)
    script = subprocess.run(
        [ENTRY_POINT],
        capture_output=True,
        text=True,
        env={**os.environ, "_APACHEWS_COMPLETE": "bash_source"},
        timeout=60,
    )
    assert "complete -o nosort -F _apachews_completion apachews" in script.stdout
