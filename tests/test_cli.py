"""The command line as users meet it: --version, --json, exit codes, `python -m`, an installed wheel."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import apachews
from tests.fixtures.mirror import HttpdMirror

REPO = Path(__file__).resolve().parent.parent


def apachews_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apachews", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_version_and_python_m(tmp_path: Path):
    done = apachews_cli("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"apachews, version {apachews.__version__}"
    helped = apachews_cli("--help", cwd=tmp_path)
    assert helped.returncode == 0
    commands = {line.split()[0] for line in helped.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert {"versions", "fetch", "build", "matrix", "patch", "config", "verify"} <= commands


@pytest.mark.parametrize(
    "args", [["versions", "--apache", "2.2.31", "--json"], ["--json", "versions", "--apache", "2.2.31"]]
)
def test_json_success_shape_and_exit_0(args: list[str]):
    done = apachews_cli(*args)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert data["ok"] is True and data["release"]["version"] == "2.2.31"
    assert data["release"]["needs_backport"] is True


@pytest.mark.parametrize(
    "args",
    [
        ["versions", "--apache", "2.2.35", "--json"],
        ["--json", "build", "--apache", "2.2.35"],  # --json before the command, --apache checked while parsing
        ["fetch", "--json", "--apache", "2.2.35", "--from-pypi"],
        ["matrix", "--apache", "2.2.31,2.2.35", "--json"],
    ],
)
def test_unknown_version_is_parsed_once_at_the_edge(args: list[str]):
    done = apachews_cli(*args)
    assert done.returncode == 2, done.stderr
    data = json.loads(done.stdout)
    assert data["error_type"] == "BadInput" and "2.2.34" in data["close_matches"]


def test_human_output_without_json():
    done = apachews_cli("versions", "--apache", "2.2.31")
    assert done.returncode == 0 and done.stdout.startswith("Apache httpd 2.2.31 (2.2 family)")
    assert "apachews build --apache 2.2.31" in done.stdout


def test_bad_input_exits_2_with_hint():
    done = apachews_cli("versions", "--apache", "2.2.35", "--json")
    assert done.returncode == 2
    data = json.loads(done.stdout)
    assert data["ok"] is False and data["error_type"] == "BadInput" and "2.2.34" in data["close_matches"]
    assert data["hint"].startswith("close matches:")
    human = apachews_cli("versions", "--apache", "two.two")
    assert human.returncode == 2 and "error:" in human.stderr and "hint:" in human.stderr
    assert human.stdout == ""
    usage = apachews_cli("versions", "--no-such-option")
    assert usage.returncode == 2


def test_failed_job_exits_1(httpd_mirror: HttpdMirror, tmp_path: Path):
    done = apachews_cli(
        "fetch", "--apache", "2.4.69", "--mirror", httpd_mirror.url("empty"), "--json",
        env={"APACHEWS_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is False and data["error_type"] == "JobFailed" and "404" in data["error"]
    assert data["urls"][-1] == httpd_mirror.url("empty") + "httpd-2.4.69.tar.gz"


def test_installed_wheel_finds_its_data(tmp_path: Path):
    """A plain (non-editable) install run from elsewhere finds templates/ and patches/ inside the package."""
    wheels = tmp_path / "wheels"
    # With hatchling at hand, build without an isolated env (no download); else pip fetches it from PyPI.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = wheels.glob("apachews-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    venv_python = venv / "bin" / "python"
    site = subprocess.run(
        [str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # The dependencies come from this interpreter's site-packages (no download); a path listed in a .pth
    # file is not a site dir, so the editable apachews of this checkout stays invisible to the venv.
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "apachews-test-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv_python), "install", "--no-deps", str(wheel)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(venv / "bin" / "apachews"), "versions", "--apache", "2.2.31"],
        capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Apache httpd 2.2.31")

    # Every data file of the checkout is inside the installed package, and resources.py finds it there.
    probe = (
        "import apachews, apachews.resources as r, json, sys;"
        "dirs = {}\n"
        "for name in ('templates', 'patches'):\n"
        "    try: dirs[name] = str(r.data_dir(name))\n"
        "    except FileNotFoundError: dirs[name] = None\n"
        "print(json.dumps([apachews.__file__, dirs]))"
    )
    where = subprocess.run(
        [str(venv_python), "-c", probe], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60
    )
    assert where.returncode == 0, where.stderr
    package, dirs = json.loads(where.stdout)
    assert Path(package).is_relative_to(site), package
    checked = 0
    for name in ("templates", "patches"):
        shipped = sorted(str(p.relative_to(REPO / name)) for p in (REPO / name).rglob("*") if p.is_file())
        if not shipped:
            continue  # nothing to ship yet (git keeps no empty directories)
        installed = Path(dirs[name] or "/nonexistent")
        assert installed == Path(site) / "apachews" / "_data" / name, dirs
        assert sorted(str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file()) == shipped
        checked += 1
    assert checked, "neither templates/ nor patches/ holds a file"


def _commands(group, prefix: tuple[str, ...] = ()):
    import click

    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_no_help_text_names_an_issue_number():
    # Users never saw the project's issue tracker: help texts say what a thing does, not which issue asked for it.
    import re

    from click.testing import CliRunner

    from apachews.cli import main

    runner = CliRunner()
    for path, _ in [((), main), *_commands(main)]:
        done = runner.invoke(main, [*path, "--help"])
        assert done.exit_code == 0, (path, done.output)
        assert not re.search(r"issue[\s-]*\d+|the issue", done.output, re.IGNORECASE), (path, done.output)
