"""TCP sockets as the kernel sees them (/proc/net/tcp), and who holds them: what a backend still has open in
every state a connection can hang in, and which processes (Apache children) keep it."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

# /proc/net/tcp's state codes (include/net/tcp_states.h), named as `ss` names them.
TCP_STATES = {
    "01": "ESTAB",
    "02": "SYN-SENT",
    "03": "SYN-RECV",
    "04": "FIN-WAIT-1",
    "05": "FIN-WAIT-2",
    "06": "TIME-WAIT",
    "07": "CLOSE",
    "08": "CLOSE-WAIT",
    "09": "LAST-ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}
NOT_HELD = ("LISTEN", "TIME-WAIT")  # a listener, and a connection both sides have closed: nothing hangs on them


@dataclass(frozen=True)
class TcpSocket:
    state: str  # as `ss` names it: ESTAB, CLOSE-WAIT, FIN-WAIT-2, ...
    local_port: int
    remote_port: int
    inode: int  # 0 for a socket no process holds any more (an orphan the kernel finishes alone)


def tcp_sockets(port: int) -> list[TcpSocket]:
    """Every TCP socket on this machine with `port` at either end, except LISTEN and TIME-WAIT ones: a server's
    accepted sockets (local port `port`) and its clients' (remote port `port`, e.g. Apache's to a backend), in
    every state a connection can hang in, ESTAB and the half-closed ones (CLOSE-WAIT, FIN-WAIT-1/2, LAST-ACK,
    CLOSING) alike. Read from /proc/net/tcp and tcp6."""
    found = []
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            state = TCP_STATES.get(fields[3], fields[3])
            if port in (local_port, remote_port) and state not in NOT_HELD:
                found.append(TcpSocket(state, local_port, remote_port, int(fields[9])))
    return found


def socket_holders(inodes: set[int]) -> set[int]:
    """The pids of the processes holding any of these socket inodes (from /proc/PID/fd, where readable)."""
    wanted = {f"socket:[{inode}]" for inode in inodes if inode}
    holders = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not wanted:
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        holders.add(int(entry.name))
                        break
    return holders
