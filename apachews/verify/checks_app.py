"""verify's app-routes check: the preset's own URL layout, answered by app-shaped backends that record every
request line, and for balancers the spread over members and sticky sessions."""

from __future__ import annotations

import asyncio

from apachews import config
from apachews.lab import client
from apachews.lab.echo import RequestLine
from apachews.lab.report import Check, outcome, skipped
from apachews.verify.checks_session import echo_once
from apachews.verify.target import Target

BALANCER_SESSIONS = 6


def backend_request_path(backend_path: str, rel: str) -> str:
    """Where a request for <path><rel> must arrive at the backend, which serves under backend_path."""
    return (backend_path.rstrip("/") + rel) if rel else backend_path


async def check_app_routes(t: Target) -> Check:
    """The preset's own URL layout, answered by an app-shaped backend that records every request line: a
    wrong path, a double slash or an upgrade that arrived as plain HTTP fails with the exact line."""
    if t.rendering is None:
        return skipped("no preset rendering")
    preset = config.get_preset(t.rendering.preset)
    path = t.rendering.path
    problems: list[str] = []
    ran = 0

    def seen_since(marks: list[int]) -> list[str]:
        return [str(line) for b, mark in zip(t.app_backends, marks) for line in b.requests[mark:]]

    for kind in ("http", "ws"):
        for rel in preset.app.get(kind, ()):
            url_path = config.join_path(path, rel) or "/"
            expected = echo_request(backend_request_path(t.rendering.backend_path, rel) or "/", kind == "ws")
            marks = [len(b.requests) for b in t.app_backends]
            try:
                if kind == "http":
                    front = t.tls_port if t.front_tls and t.tls_port else t.apache_port
                    status, _ = await asyncio.to_thread(client.http_get, front, url_path, "", t.front_tls)
                    answered = status == 200
                    what = f"HTTP {status}"
                else:
                    ok, _, what = await echo_once(t, f"app {url_path}", url_path)
                    answered = ok
            except Exception as error:  # noqa: BLE001 - any failure is this route's failure
                answered, what = False, f"{type(error).__name__}: {error}"
            ran += 1
            lines = seen_since(marks)
            if not answered or lines != [expected]:
                got = ", ".join(lines) or "nothing"
                problems.append(
                    f"{'WS' if kind == 'ws' else 'GET'} {url_path}: {what}; backend got {got}, expected {expected}"
                )
    if t.rendering.preset == "balancer" or len(t.app_backends) > 1:
        problems += await _balancer_spread(t)
    if preset.sticky:
        problems += await _sticky_sessions(t, preset)
    detail = "; ".join(problems)[:600] or f"{ran} app requests reached the backend as the app expects"
    return outcome(not problems, ran, "requests", detail)


def echo_request(path: str, upgrade: bool) -> str:
    return str(RequestLine(path, upgrade))


async def _sticky_sessions(t: Target, preset: config.Preset) -> list[str]:
    """A session's first HTTP request gets the route cookie; with it, its next requests and its WebSocket
    upgrade (Socket.IO: long-polling, then the upgrade) all reach the member that answered the first."""
    http = [config.join_path(t.rendering.path, rel) or "/" for rel in preset.app.get("http", ())] if t.rendering else []
    problems: list[str] = []
    for session in range(BALANCER_SESSIONS):
        marks = [len(b.requests) for b in t.app_backends]
        status, headers = await asyncio.to_thread(client.http_get, t.apache_port, http[0])
        cookies = [h.split(":", 1)[1].strip().split(";", 1)[0] for h in headers if h.lower().startswith("set-cookie:")]
        route = next((c for c in cookies if c.startswith("ROUTEID=")), "")
        if status != 200 or not route:
            return [f"session {session}: GET {http[0]} answered {status} without a ROUTEID cookie ({cookies})"]
        for rel in http[1:]:
            await asyncio.to_thread(client.http_get, t.apache_port, rel, route)
        for rel in preset.app.get("ws", ()):
            url = t.ws(config.join_path(t.rendering.path, rel) or "/")  # type: ignore[union-attr]
            async with client.connect(url, additional_headers={"Cookie": route}) as ws:
                await ws.send("sticky")
                await asyncio.wait_for(ws.recv(), 10)
        reached = [i for i, (b, mark) in enumerate(zip(t.app_backends, marks)) if len(b.requests) > mark]
        if len(reached) != 1:
            problems.append(f"session {session} ({route}) reached members {reached}: not kept on one")
    return problems


async def _balancer_spread(t: Target) -> list[str]:
    """Sessions spread over the members, and each stays on the member it was opened on."""
    members: list[set[str]] = []
    for _ in range(BALANCER_SESSIONS):
        async with await client.connect(t.ws()) as ws:
            answers = set()
            for _ in range(3):
                await ws.send("apachews:whoami")
                answers.add(await asyncio.wait_for(ws.recv(), 10))
            members.append(answers)
    problems = [f"a session moved between members: {sorted(m)}" for m in members if len(m) != 1]
    used = set().union(*members)
    if len(used) < 2:
        problems.append(f"{BALANCER_SESSIONS} sessions all went to {sorted(used)}: no spread over the members")
    return problems
