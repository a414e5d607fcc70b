"""`apachews bench`: round trips per second and latency through Apache, against direct to the backend."""

from __future__ import annotations

from pathlib import Path

import click

from apachews import bench
from apachews.catalogue import Tunnelling
from apachews.cli._common import Result, Session, command
from apachews.cli._main import main
from apachews.cli.verify import resolve_httpd

STYLES = [Tunnelling.WSTUNNEL.value, Tunnelling.HTTP_UPGRADE.value]


@command(main, "bench")
@click.option("--httpd", "binary", type=click.Path(path_type=Path), help="Apache binary (default: system's).")
@click.option("--dist", type=click.Path(path_type=Path), help="A dir made by `apachews build --with-httpd`.")
@click.option("--module", type=click.Path(path_type=Path), help="Load this mod_proxy_wstunnel.so instead.")
@click.option("--prefer", type=click.Choice(STYLES), help="Tunnelling style (2.4.47+).")
@click.option("--connections", default=10, show_default=True, help="Concurrent WebSocket connections.")
@click.option("--messages", default=500, show_default=True, help="Round trips per connection.")
@click.option("--size", default=1024, show_default=True, help="Message size in bytes.")
@click.option("--against", multiple=True, help="Another ws:// URL on this machine to compare (repeatable).")
def bench_command(
    session: Session,
    binary: Path | None,
    dist: Path | None,
    module: Path | None,
    prefer: str | None,
    connections: int,
    messages: int,
    size: int,
    against: tuple[str, ...],
) -> Result:
    """Measure round trips/s and p50/p99 latency through Apache and directly to the backend."""
    server, built_module = resolve_httpd(binary, dist)
    results = bench.run(
        server,
        connections=connections,
        messages=messages,
        size=size,
        module=module or built_module,
        prefer=prefer,
        against=against,
        progress=session.progress(),
    )
    settings = {"connections": connections, "messages": messages, "size": size}
    return Result(
        data={"settings": settings, "results": [r.to_dict() for r in results]},
        text=f"{connections} connections x {messages} messages of {size} bytes\n{bench.table(results)}",
    )
