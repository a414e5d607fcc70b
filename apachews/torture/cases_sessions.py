"""torture's cases of clients that vanish (orphans of a backend that never closes on EOF, resets after the 101
or mid-stream, plain and over TLS), TLS records cut in TCP pieces, mod_reqtimeout after the 101, a soak, and
the error log."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time

from apachews import module
from apachews.lab import client
from apachews.lab.client import TlsStream, echo_frame, open_ws, ws_frame
from apachews.lab.orphans import ORPHAN_CLIENTS, ORPHAN_SLACK_SECONDS, ORPHAN_WAIT_SECONDS, orphans
from apachews.lab.processes import RssSampler
from apachews.lab.report import crash_lines
from apachews.torture.cases_handshake import echo_once, safe
from apachews.torture.target import MIB, REQTIMEOUT_BODY, CaseResult, Context, skipped


def orphan_case(name: str, how: str):
    """ORPHAN_CLIENTS clients handshake to the backend that never closes on EOF, send a frame and vanish (`how`:
    "fin" as a killed browser, "rst" as a cut network). Every backend-side socket (the backend's and Apache's,
    in any state but TIME-WAIT) must be gone within the module's fin timeout; the figure is the seconds it took
    (verify.ORPHAN_WAIT_SECONDS when some never went), the detail what was left and how many Apache processes
    still held it."""

    def run(ctx: Context) -> CaseResult:
        eofs = ctx.holding.eofs
        found = asyncio.run(orphans(ctx.port, ctx.path("hold"), ctx.holding, how))
        limit = module.DEFAULT_FIN_TIMEOUT + ORPHAN_SLACK_SECONDS
        passed = found.upgraded == ORPHAN_CLIENTS and found.gone_after is not None and found.gone_after <= limit
        return CaseResult(
            name,
            passed,
            ORPHAN_WAIT_SECONDS if found.gone_after is None else found.gone_after,
            "s",
            f"{found.text()}; {ctx.holding.eofs - eofs} EOFs reached the backend (limit {limit:.1f} s)",
        )

    return run


def tls_case(name: str, size: int, pieces: int, gap: float):
    def run(ctx: Context) -> CaseResult:
        if ctx.tls_port is None:
            return skipped(name, "no mod_ssl in this httpd")
        payload = os.urandom(size)
        stream, status, _, _ = open_ws(ctx.tls_port, ctx.path("echo"), tls=True)
        try:
            if status != 101:
                return CaseResult(name, False, None, "", f"client got {status}")
            assert isinstance(stream, TlsStream)
            started = time.monotonic()
            stream.sock.settimeout(10)
            try:
                wire = stream.send_in_pieces(ws_frame(payload), pieces, gap)
                opcode, answer = stream.read_frame()
            except (OSError, ConnectionError) as error:
                return CaseResult(name, False, None, "", f"tunnel closed: {type(error).__name__}: {error}")
            same = opcode == 0x2 and answer == payload
            return CaseResult(
                name,
                same,
                time.monotonic() - started,
                "s",
                f"{size} B ({wire} B of TLS records on the wire) cut in {pieces} TCP pieces {gap * 1000:.0f} ms apart; "
                + ("echoed byte-exact" if same else f"got opcode {opcode} with {len(answer)} B: {answer[:40]!r}"),
            )
        finally:
            stream.close()

    return run


def _drain(ctx: Context, timeout: float = 5, baseline: int = 0) -> float | None:
    """Seconds until the echo backend has no more than `baseline` sockets open, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if ctx.echo.open_connections() <= baseline:
            return time.monotonic() - started
        time.sleep(0.01)
    return None


def reset_case(name: str, mid_stream: bool, tls: bool = False):
    """Clients that vanish (RST) after the 101 or mid-stream; with `tls` on the TLS front (no close_notify)."""

    def run(ctx: Context) -> CaseResult:
        if tls and ctx.tls_port is None:
            return skipped(name, "no mod_ssl in this httpd")
        port = ctx.tls_port if tls and ctx.tls_port else ctx.port
        count = ctx.settings.resets
        # Sockets an earlier case left open are that case's finding; this one counts from there.
        before = 0 if _drain(ctx, 2) is not None else ctx.echo.open_connections()

        def one(_: int) -> bool:
            if not mid_stream:
                answer = client.handshake(port, ctx.path("echo"), tls=tls)
                client.reset(answer.sock)
                return answer.status == 101
            stream, status, _, _ = open_ws(port, ctx.path("echo"), tls=tls)
            ok = status == 101 and echo_frame(stream, b"mid-stream")
            stream.send(ws_frame(os.urandom(4096)))  # in flight when the reset hits
            client.reset(stream.sock)
            return ok

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            outcomes = list(pool.map(lambda i: safe(one, i), range(count)))
        drained = _drain(ctx, baseline=before)
        after = 0
        for _ in range(20):
            if safe(lambda _: echo_once(ctx), 0):
                after += 1
        good = sum(outcomes)
        passed = good == count and drained is not None and drained < 1.0 and after == 20
        left = ctx.echo.open_connections() - before
        drain = (
            f"backend drained in {drained:.3f} s" if drained is not None else f"{left} backend sockets left after 5 s"
        )
        if before:
            drain += f" ({before} left open by earlier cases)"
        return CaseResult(
            name,
            passed,
            drained,
            "s",
            f"{good}/{count} reset {'mid-stream' if mid_stream else 'after the 101'}; {drain}; {after}/20 echoes after",
        )

    return run


def case_reqtimeout(ctx: Context) -> CaseResult:
    if ctx.reqtimeout_port is None:
        return skipped("reqtimeout-idle", "no mod_reqtimeout in this httpd")
    idle = REQTIMEOUT_BODY + 1.5
    stream, status, _, _ = open_ws(ctx.reqtimeout_port, ctx.path("echo"))
    try:
        if status != 101 or not echo_frame(stream, b"before the pause"):
            return CaseResult("reqtimeout-idle", False, None, "", f"client got {status}")
        time.sleep(idle)
        try:
            ok = echo_frame(stream, b"after the pause")
        except (OSError, ConnectionError) as error:
            ok, error_text = False, f"{type(error).__name__}"
        else:
            error_text = ""
        return CaseResult(
            "reqtimeout-idle",
            ok,
            idle,
            "s idle",
            f"RequestReadTimeout body={REQTIMEOUT_BODY}: echo after {idle} s idle "
            + ("ok" if ok else f"FAILED, tunnel cut by mod_reqtimeout ({error_text})"),
        )
    finally:
        stream.close()


def case_soak(ctx: Context) -> CaseResult:
    """Clients send sequence-numbered payloads, four in flight, and check every echo byte-exact in order."""
    clients, seconds = ctx.settings.soak_clients, ctx.settings.soak_seconds
    deadline = time.monotonic() + seconds
    counts: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        done = 0
        try:
            stream, status, _, _ = open_ws(ctx.port, ctx.path("echo"), timeout=30)
        except (OSError, ConnectionError) as error:
            with lock:
                errors.append(f"client {index}: {error}")
            return
        try:
            if status != 101:
                raise ConnectionError(f"status {status}")
            seq = 0
            while time.monotonic() < deadline:
                sent = []
                for _ in range(4):
                    payload = f"{index}:{seq}:".encode() + os.urandom(seq % 2048)
                    stream.send(ws_frame(payload))
                    sent.append(payload)
                    seq += 1
                for payload in sent:
                    _, answer = stream.read_frame()
                    if answer != payload:
                        raise ValueError(f"message {answer[:16]!r} where {payload[:16]!r} was due")
                    done += 1
            stream.send(ws_frame(b"", 0x8))
        except (OSError, ConnectionError, ValueError) as error:
            with lock:
                errors.append(f"client {index}: {type(error).__name__}: {error}")
        finally:
            stream.close()
            with lock:
                counts.append(done)

    with RssSampler(ctx.parent_pid) as rss:
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 60)
    total = sum(counts)
    return CaseResult(
        f"soak-{clients}x{seconds:.0f}s",
        not errors and total > 0,
        total / seconds,
        "msg/s",
        f"{total} messages byte-exact and in order; {len(errors)} errors"
        + (f" (first: {errors[0]})" if errors else "")
        + f"; RSS peak +{rss.growth / MIB:.1f} MiB over {rss.baseline / MIB:.0f} MiB",
    )


def case_error_log(ctx: Context) -> CaseResult:
    bad = crash_lines(ctx.error_log)
    return CaseResult("error-log-clean", not bad, len(bad), "lines", bad[0][:120] if bad else "no crash lines")
