"""--host / --inventory / --sudo / --ssh-config: the server stage's commands on other machines, over SSH.

One host: that host's result, as if run there. Several: each host's result in turn (a failure on one does not
stop the others), the exit code 1 if any failed; with --json, {"ok": ..., "hosts": [one object per host]}.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from apachews import transport
from apachews.cli._common import Result
from apachews.errors import ApachewsError, BadInput
from apachews.transport import Transport


def host_options(fn: Callable[..., Result]) -> Callable[..., Result]:
    """Adds the options; the command receives `hosts` (a tuple of host specs, empty: this machine) and
    `connect` (spec -> Transport)."""

    @click.option(
        "--host",
        "hosts",
        multiple=True,
        metavar="[USER@]SERVER[:PORT]",
        help="Run on this server over SSH (repeatable): only sh and its own tools are used there, no Python.",
    )
    @click.option(
        "--inventory",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A file of hosts, one [user@]server[:port] a line (# comments and [group] lines ignored).",
    )
    @click.option("--sudo", is_flag=True, help="With --host: run the server's commands as root through sudo -n.")
    @click.option(
        "--ssh-config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=f"With --host: ssh -F FILE (default: ${transport.SSH_CONFIG_ENV}, else ssh's own ~/.ssh/config).",
    )
    @functools.wraps(fn)
    def wrapper(
        hosts: tuple[str, ...], inventory: Path | None, sudo: bool, ssh_config: Path | None, **params: Any
    ) -> Result:
        every = list(hosts) + (read_inventory(inventory) if inventory else [])
        for spec in every:
            transport.HostSpec.parse(spec)  # refuse a bad one before reaching any
        if (sudo or ssh_config) and not every:
            raise BadInput("--sudo and --ssh-config go with --host", hint="add --host [user@]server")

        def connect(spec: str) -> Transport:
            return transport.Ssh(spec, sudo=sudo, config=ssh_config)

        return fn(hosts=tuple(every), connect=connect, **params)

    return wrapper


def read_inventory(path: Path) -> list[str]:
    hosts = []
    for line in path.read_text().splitlines():
        word = line.split("#", 1)[0].strip()
        if word and not word.startswith("["):
            hosts.append(word.split()[0])
    if not hosts:
        raise BadInput(f"no hosts in {path}", hint="one [user@]server[:port] a line")
    return hosts


def on_hosts(hosts: tuple[str, ...], connect: Callable[[str], Transport], run: Callable[[Transport], Result]) -> Result:
    """`run` on each host (over its own SSH connection, closed after). One host: its result as it is."""
    if len(hosts) == 1:
        with connect(hosts[0]) as host:
            result = run(host)
        return Result(data={"host": hosts[0], **result.data}, text=result.text, ok=result.ok)
    objects, texts = [], []
    for spec in hosts:
        try:
            with connect(spec) as host:
                result = run(host)
        except ApachewsError as error:
            objects.append({"host": spec, "ok": False, **error.to_dict()})
            hint = f"\nhint: {error.hint}" if error.hint else ""
            texts.append(f"== {spec}: FAILED\nerror: {error.message}{hint}")
            continue
        objects.append({"host": spec, "ok": result.ok, **result.data})
        texts.append(f"== {spec}: {'ok' if result.ok else 'FAILED'}\n{result.text}")
    ok = all(entry["ok"] for entry in objects)
    summary = f"{sum(1 for e in objects if e['ok'])}/{len(objects)} hosts ok"
    return Result(data={"hosts": objects}, text="\n\n".join([*texts, summary]), ok=ok)
