"""Changing a remote server's files as one transaction that rolls back by itself, through a Transport.

The plan is made and applied on a `Mirror`: a local copy of the server paths it reads and changes, at
MIRROR/<path>, so the placement code (distros.placement) runs unchanged. What it changed there becomes a list
of `Op`s (path -> its new state: a file's bytes and mode, a link, a directory, or nothing). Those go to the
server with a POSIX sh script (`SCRIPT`) in a staging directory under the state dir, one tar over one
connection, and the script then, on the server:

1. refuses if any path is not what the mirror read (someone changed it meanwhile);
2. for each op: backs up the path as it is (cp -p, the link's target, or "absent"), journals it, changes it
   (write beside, then rename);
3. runs `apachectl -t`; if the server is running, a graceful reload, waited for in its error log;
4. says "applied" and waits for one line on stdin: "commit" keeps it all (marked committed before the
   staging directory goes), anything else - "rollback", end of input because the connection dropped, a
   signal - restores every journalled path from its backup, newest first, and reloads again.

A transaction whose script died with its server (kill -9, a reboot) is found by the next one (`recover`):
its journal is replayed backwards the same way. Nothing needs Python on the server.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from apachews.errors import JobFailed
from apachews.progress import Progress
from apachews.transport import Transport

RELOAD_TIMEOUT = 20
SILENCE = 30  # seconds without a word from apachews after which the server rolls an open transaction back


@dataclass(frozen=True)
class State:
    """What a path is: "none", "file" (data, mode), "link" (target) or "dir" (mode)."""

    kind: str
    data: bytes = b""
    mode: int = 0o644
    target: str = ""


def state_of(path: Path) -> State:
    if path.is_symlink():
        return State("link", target=os.readlink(path))
    if path.is_dir():
        return State("dir", mode=stat.S_IMODE(path.stat().st_mode))
    if path.is_file():
        return State("file", path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return State("none")


@dataclass(frozen=True)
class Op:
    path: str  # on the server
    before: State
    after: State


class Mirror:
    """A local copy of server paths at root/<path>: plans run against it as if it were the server."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def local(self, path: str | Path) -> Path:
        return self.root / Path(path).relative_to("/")

    def remote(self, path: str | Path) -> str:
        return "/" + str(Path(path).relative_to(self.root))

    def unmirror(self, text: str) -> str:
        """Text that names mirror paths, naming the server's instead."""
        return text.replace(str(self.root), "")

    def states(self, paths: Sequence[str]) -> dict[str, State]:
        return {path: state_of(self.local(path)) for path in paths}

    def ops(self, before: dict[str, State]) -> list[Op]:
        """What changed on the mirror since `before` (the same paths): directories made first, removed last."""
        after = self.states(list(before))
        changed = [Op(path, before[path], after[path]) for path in before if before[path] != after[path]]
        made = sorted((op for op in changed if op.after.kind == "dir"), key=lambda op: op.path.count("/"))
        gone = sorted((op for op in changed if op.before.kind == "dir"), key=lambda op: -op.path.count("/"))
        rest = [op for op in changed if op not in made and op not in gone]
        return made + rest + gone


@contextmanager
def mirrored(host: Transport, paths: Sequence[str]) -> Iterator[Mirror]:
    """The server's `paths` copied into a temporary mirror, removed after."""
    with tempfile.TemporaryDirectory(prefix="apachews-mirror-") as scratch:
        mirror = Mirror(Path(scratch) / "server")
        host.fetch_tree(list(paths), mirror.root)
        mirror.root.mkdir(exist_ok=True)
        yield mirror


# -- the server-side script ----------------------------------------------------------------------------------
SCRIPT = r"""
S=__STAGE__
CTL=__CONTROL__
PIDFILE=__PIDFILE__
LOG=__ERRORLOG__
RELOAD=__RELOAD__
umask 022
RELOADED=
WATCHDOG=
say() { printf '%s\n' "$*" 2>/dev/null; }
running() { [ -f "$PIDFILE" ] && p=$(cat "$PIDFILE" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
pause() { sleep 0.1 2>/dev/null || sleep 1; }
graceful() {
    offset=0; [ -n "$LOG" ] && [ -f "$LOG" ] && offset=$(wc -c < "$LOG")
    "$CTL" -k graceful > "$S/graceful.out" 2>&1 || return 1
    [ -n "$LOG" ] || { sleep 1; return 0; }
    i=0
    while [ $i -lt __TICKS__ ]; do
        tail -c +$((offset + 1)) "$LOG" 2>/dev/null | grep -q "resuming normal operations" && return 0
        running || return 1
        pause; i=$((i + 1))
    done
    return 1
}
put_file() {  # put_file SOURCE MODE PATH: write beside PATH, then rename over it
    t="$(dirname "$3")/.$(basename "$3").apachews-txn"
    rm -f "$t" && cp "$1" "$t" && chmod "$2" "$t" && { [ ! -L "$3" ] || rm -f "$3"; } && mv -f "$t" "$3"
}
backup() {  # backup N PATH
    if [ -L "$2" ]; then ls -l "$2" | sed 's/.* -> //' > "$S/b/$1.link"
    elif [ -d "$2" ]; then : > "$S/b/$1.dir"
    elif [ -e "$2" ]; then cp -p "$2" "$S/b/$1.file"
    else : > "$S/b/$1.none"; fi && echo "$1" >> "$S/journal"
}
undo() {  # undo N PATH [DIRMODE]
    if [ -f "$S/b/$1.file" ]; then t="$(dirname "$2")/.$(basename "$2").apachews-txn"
        rm -f "$t"; [ ! -L "$2" ] || rm -f "$2"; cp -p "$S/b/$1.file" "$t" && mv -f "$t" "$2"
    elif [ -f "$S/b/$1.link" ]; then rm -f "$2"; ln -s "$(cat "$S/b/$1.link")" "$2"
    elif [ -f "$S/b/$1.dir" ]; then [ -d "$2" ] || { mkdir "$2" && chmod "$3" "$2"; }
    elif [ -f "$S/b/$1.none" ]; then if [ -d "$2" ] && [ ! -L "$2" ]; then rmdir "$2"; else rm -f "$2"; fi; fi
}
restore() {
    trap '' HUP INT TERM PIPE USR1
    [ -f "$S/journal" ] && for n in $(sort -rn "$S/journal"); do undo_op "$n"; done
    rm -f "$S/journal"
    if [ -n "$RELOADED" ] || [ "${1:-}" = recover ]; then running && graceful; fi
}
finish() {  # finish CODE MESSAGE: roll back, say why, remove the staging directory
    trap '' HUP INT TERM PIPE USR1
    [ -z "$WATCHDOG" ] || kill "$WATCHDOG" 2>/dev/null
    restore
    say "rolledback $2"
    [ -f "$S/configtest" ] && sed 's/^/| /' "$S/configtest" 2>/dev/null
    rm -rf "$S"
    rmdir "$(dirname "$S")" 2>/dev/null  # a state directory this change made and left empty
    exit "$1"
}
__OPS__
if [ "${1:-}" = recover ]; then
    if [ "$(cat "$S/state" 2>/dev/null)" = committed ]; then rm -rf "$S"; exit 0; fi
    restore recover; rm -rf "$S"; say "recovered"; exit 0
fi
echo $$ > "$S/pid"
trap 'finish 130 interrupted' HUP INT TERM
trap 'finish 141 connection-lost' PIPE
trap 'finish 142 connection-silent' USR1
mkdir -p "$S/b"
__CHECKS__
say "step applying"
__APPLY__
if [ -n "$CTL" ]; then
    say "step configtest"
    "$CTL" -t > "$S/configtest" 2>&1 || finish 3 configtest
    rm -f "$S/configtest"
    if [ -n "$RELOAD" ] && running; then
        say "step reload"
        RELOADED=1
        graceful || finish 4 reload
        say "reloaded"
    fi
fi
say "applied"
# A connection can die without the server noticing (a cut cable: no FIN, and sshd may not probe): the
# client says "wait" every few seconds, and __SILENCE__ s without a word roll the change back.
MAIN=$$
(
    n=0
    while [ -d "$S" ]; do
        sleep 1
        if [ -f "$S/beat" ]; then rm -f "$S/beat"; n=0; else n=$((n + 1)); fi
        [ "$n" -lt __SILENCE__ ] || { kill -USR1 "$MAIN" 2>/dev/null; exit 0; }
    done
) < /dev/null > /dev/null 2>&1 &
WATCHDOG=$!
answer=
while read answer; do
    if [ "$answer" = wait ]; then : > "$S/beat"; else break; fi
done
if [ "$answer" = commit ]; then
    trap '' HUP INT TERM PIPE USR1
    kill "$WATCHDOG" 2>/dev/null
    echo committed > "$S/state.new" && mv -f "$S/state.new" "$S/state"
    rm -rf "$S"
    say "committed"
    exit 0
fi
finish 5 "${answer:-connection-lost}"
"""

RECOVER = r"""
for s in "$1"/txn-*; do
    [ -f "$s/run.sh" ] || { [ -d "$s" ] && rm -rf "$s"; continue; }
    if [ -f "$s/pid" ] && kill -0 "$(cat "$s/pid")" 2>/dev/null; then echo "busy $s"; continue; fi
    sh "$s/run.sh" recover && echo "recovered $s"
done
true
"""


def _q(value: str | Path | None) -> str:
    return shlex.quote(str(value)) if value else "''"


def _script(
    stage: str, ops: Sequence[Op], control: str | None, pid_file: str, error_log: str | None, reload: bool
) -> str:
    undo, checks, apply = ["undo_op() {", "    case $1 in"], [], []
    for n, op in enumerate(ops):
        path = _q(op.path)
        undo.append(f"    {n}) undo {n} {path} {op.before.mode:o} ;;")
        before = op.before
        if before.kind == "file":
            checks.append(f'cmp -s "$S/old/{n}" {path} && [ ! -L {path} ] || finish 2 "changed-since-read:{op.path}"')
        elif before.kind == "link":
            checks.append(
                f"[ -L {path} ] && [ \"$(ls -l {path} | sed 's/.* -> //')\" = {_q(before.target)} ] "
                f'|| finish 2 "changed-since-read:{op.path}"'
            )
        elif before.kind == "dir":
            checks.append(f'[ -d {path} ] && [ ! -L {path} ] || finish 2 "changed-since-read:{op.path}"')
        else:
            checks.append(f'[ ! -e {path} ] && [ ! -L {path} ] || finish 2 "changed-since-read:{op.path}"')
        step = f"backup {n} {path} || finish 6 'cannot-back-up:{op.path}'\n"
        after = op.after
        if after.kind == "file":
            step += f'put_file "$S/new/{n}" {after.mode:o} {path}'
        elif after.kind == "link":
            step += f"rm -f {path} && ln -s {_q(after.target)} {path}"
        elif after.kind == "dir":
            step += f"mkdir {path} && chmod {after.mode:o} {path}"
        elif before.kind == "dir":
            step += f"rmdir {path}"
        else:
            step += f"rm -f {path}"
        apply.append(f"{step} || finish 6 'cannot-change:{op.path}'")
    undo += ["    esac", "}"]
    text = SCRIPT.replace("__OPS__", "\n".join(undo)).replace("__CHECKS__", "\n".join(checks))
    text = text.replace("__APPLY__", "\n".join(apply)).replace("__TICKS__", str(RELOAD_TIMEOUT * 10))
    text = text.replace("__SILENCE__", str(SILENCE))
    for name, value in (
        ("__STAGE__", stage),
        ("__CONTROL__", control),
        ("__PIDFILE__", pid_file),
        ("__ERRORLOG__", error_log),
        ("__RELOAD__", "1" if reload else ""),
    ):
        text = text.replace(name, _q(value))
    return text


def _stage_archive(script: str, ops: Sequence[Op]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:

        def add(name: str, data: bytes, mode: int = 0o600) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))

        add("run.sh", script.encode(), 0o700)
        for n, op in enumerate(ops):
            if op.after.kind == "file":
                add(f"new/{n}", op.after.data)
            if op.before.kind == "file":
                add(f"old/{n}", op.before.data)
    return buffer.getvalue()


def recover(host: Transport, states: str) -> list[str]:
    """Finish what an earlier transaction left (its script killed with the connection, or the server
    rebooted): roll it back from its journal. Refuses when another one is running now."""
    done = host.sh(RECOVER, states, timeout=RELOAD_TIMEOUT * 3)
    busy = [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("busy ")]
    if busy:
        raise JobFailed(
            f"another apachews is changing {host.name} now ({', '.join(busy)})",
            hint="wait for it to finish, then run this again",
        )
    return [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("recovered ")]


@dataclass
class Transaction:
    """A started transaction: the server has applied it (and reloaded) and waits for `commit()` or
    `rollback()`, hearing "wait" from a heartbeat thread meanwhile. Leaving its `with` block without a commit
    rolls it back."""

    host: Transport
    process: subprocess.Popen[bytes]
    reloaded: bool

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._heartbeat, name="apachews-heartbeat", daemon=True).start()

    @property
    def open(self) -> bool:
        return self.process.stdin is not None and not self.process.stdin.closed

    def _heartbeat(self) -> None:
        while not self._stop.wait(SILENCE / 6):
            with self._lock:
                if not self.open:
                    return
                try:
                    assert self.process.stdin is not None
                    self.process.stdin.write(b"wait\n")
                    self.process.stdin.flush()
                except OSError:
                    return

    def _finish(self, answer: str) -> str:
        process = self.process
        self._stop.set()
        try:
            assert process.stdin is not None and process.stdout is not None
            with self._lock:
                process.stdin.write(f"{answer}\n".encode())
                process.stdin.close()
            said = process.stdout.read().decode(errors="replace")
        except (BrokenPipeError, OSError):
            said = ""
        process.wait(timeout=RELOAD_TIMEOUT * 3)
        return said

    def commit(self) -> None:
        said = self._finish("commit")
        if "committed" not in said:
            raise JobFailed(
                f"{self.host.name} did not confirm the commit: {said.strip() or 'connection lost'}",
                hint="run the command again: an unfinished change is rolled back first",
            )

    def rollback(self) -> None:
        said = self._finish("rollback")
        if "rolledback" not in said:
            raise JobFailed(f"{self.host.name} did not confirm the rollback: {said.strip() or 'connection lost'}")


_FAILURES = {
    "configtest": "apachectl -t rejected the new config: every file was put back",
    "reload": "the graceful reload did not finish: every file was put back and the server reloaded",
    "connection-lost": "the connection dropped: the server put every file back",
    "interrupted": "interrupted: the server put every file back",
    "connection-silent": f"no word from apachews for {SILENCE} s: the server put every file back",
}


@contextmanager
def run(
    host: Transport,
    states: str,
    ops: Sequence[Op],
    *,
    control: str | None,
    pid_file: str,
    error_log: str | None,
    reload: bool = True,
    progress: Progress | None = None,
) -> Iterator[Transaction]:
    """Apply `ops` on the server (config test, graceful reload) and yield; commit inside the block, else
    the server rolls back when it ends (also when this process dies or the connection drops)."""
    progress = progress or Progress()
    recover(host, states)
    stage = f"{states.rstrip('/')}/txn-{uuid.uuid4().hex[:12]}"
    script = _script(stage, ops, control, pid_file, error_log, reload)
    unpacked = host.sh('umask 077 && mkdir -p "$1" && tar -C "$1" -xf -', stage, input=_stage_archive(script, ops))
    if unpacked.returncode != 0:
        hint = "is --sudo needed?" if host.remote else "run apachews as root, or give --state-dir a writable directory"
        raise JobFailed(f"cannot stage the change in {states} on {host.name}: {unpacked.stderr.strip()}", hint=hint)
    process = host.popen(["sh", f"{stage}/run.sh"])
    assert process.stdout is not None
    lines: list[str] = []
    reloaded = False
    while True:
        raw = process.stdout.readline()
        if not raw:
            break
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        if line.startswith("step "):
            progress.step(f"{host.name}: {line[5:]}" if host.remote else line[5:])
        elif line == "reloaded":
            reloaded = True
        elif line == "applied" or line.startswith("rolledback"):
            break
    if not lines or lines[-1] != "applied":
        rest = process.stdout.read().decode(errors="replace") if process.stdout else ""
        process.wait(timeout=RELOAD_TIMEOUT * 3)
        said = "\n".join([*lines, rest])
        why = next((ln.split(" ", 1)[1] for ln in said.splitlines() if ln.startswith("rolledback ")), "")
        detail = "\n".join(ln[2:] for ln in said.splitlines() if ln.startswith("| "))
        if why.startswith("changed-since-read:"):
            raise JobFailed(f"{why.split(':', 1)[1]} changed on {host.name} while apachews read it: nothing changed")
        stderr = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
        message = _FAILURES.get(why, f"the change on {host.name} failed ({why or stderr or 'no answer'})")
        raise JobFailed(message, hint=detail[-2000:] or None)
    transaction = Transaction(host, process, reloaded)
    try:
        yield transaction
    except BaseException:
        if transaction.open:
            with contextlib.suppress(JobFailed):  # the server rolls back by itself when its input ends
                transaction.rollback()
        raise
    if transaction.open:
        transaction.rollback()
