"""--host / --inventory / --sudo / --ssh-config: the server stage's commands on other machines, over SSH.

One host: that host's result, as if run there. Several: each host's result in turn (a failure on one does not
stop the others), the exit code 1 if any failed; with --json, {"ok": ..., "hosts": [one object per host]}.
A command gets `hosts` (a `Hosts`) and hands `hosts.each` what it does on one server: the one per-host loop.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from apachews import transport
from apachews.cli._common import Result
from apachews.errors import ApachewsError, BadInput
from apachews.transport import LOCAL, Transport


@dataclass(frozen=True)
class Hosts:
    """The servers a command runs on: the --host / --inventory ones over SSH, or (none given) this machine."""

    specs: tuple[str, ...] = ()
    sudo: bool = False
    ssh_config: Path | None = None

    def __bool__(self) -> bool:
        return bool(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def connect(self, spec: str) -> Transport:
        return transport.Ssh(spec, sudo=self.sudo, config=self.ssh_config)

    def each(self, run: Callable[[Transport], Result]) -> Result:
        """`run` on this machine, or on each host over its own SSH connection (closed after)."""
        return on_hosts(self.specs, self.connect, run) if self.specs else run(LOCAL)

    @contextlib.contextmanager
    def one(self, why: str) -> Iterator[Transport]:
        """The one server (this machine, or the one --host) of a command that serves one; `why` says which."""
        if len(self.specs) > 1:
            raise BadInput(why, hint="give one --host (install --host takes several)")
        if not self.specs:
            yield LOCAL
            return
        with self.connect(self.specs[0]) as host:
            yield host

    def refuse_local_file(self, config_file: Path | None) -> None:
        """--config names a file on this machine: not with --host."""
        if self.specs and config_file is not None:
            raise BadInput("--config names a file on this machine", hint="with --host, give --apachectl on the server")


def host_options(fn: Callable[..., Result]) -> Callable[..., Result]:
    """Adds the options; the command receives `hosts` (a `Hosts`: none given, this machine)."""

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
        return fn(hosts=Hosts(tuple(every), sudo, ssh_config), **params)

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
    """`run` on each host (over its own SSH connection, closed after). One host: its result as it is.
    (Commands call `Hosts.each`.)"""
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
