"""Debian's chromium, headless, driven over its DevTools protocol (the `websockets` library): open a page and
evaluate JavaScript in it, awaiting the promises it returns. Nothing is downloaded at run time; a test that
needs it skips with a reason when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)


def available() -> str | None:
    """Why no browser can be driven here, or None."""
    if shutil.which("chromium") is None:
        return "no chromium (apt-get install chromium)"
    return None


class Page:
    """One tab, attached over the browser's DevTools WebSocket (flattened session)."""

    def __init__(self, socket: ClientConnection, session: str, process: subprocess.Popen[bytes]) -> None:
        self.process = process  # the browser; its own process group (a test may kill it as a crash would)
        self._socket = socket
        self._session = session
        self._ids = itertools.count(1000)

    def command(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        return _command(self._socket, self._ids, method, params, self._session, timeout)

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        """The value of `expression` in the page; a promise is awaited (up to `timeout`)."""
        result = self.command("Runtime.evaluate", timeout, expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression[:80]!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 30) -> Any:
        """Wait for a JavaScript condition to become truthy, checked on every animation frame and DOM change
        in the page (an event, not a sleep); its value."""
        script = f"""new Promise((resolve, reject) => {{
            const check = () => {{
                try {{ const v = ({condition}); if (v) {{ resolve(typeof v === "object" ? true : v); return true; }} }}
                catch (e) {{}}
                return false;
            }};
            if (check()) return;
            const seen = new MutationObserver(() => {{ if (check()) seen.disconnect(); }});
            seen.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});
            const tick = () => {{ if (!check()) requestAnimationFrame(tick); }};
            requestAnimationFrame(tick);
            setTimeout(() => reject(new Error("timed out waiting for: " + {json.dumps(condition)})),
                       {int(timeout * 1000)});
        }})"""
        return self.evaluate(script, timeout + 5)

    def goto(self, url: str) -> None:
        self.command("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")


def _command(
    socket: ClientConnection,
    ids: Iterator[int],
    method: str,
    params: dict[str, Any],
    session: str | None,
    timeout: float,
) -> dict[str, Any]:
    ident = next(ids)
    message: dict[str, Any] = {"id": ident, "method": method, "params": params}
    if session:
        message["sessionId"] = session
    socket.send(json.dumps(message))
    deadline = time.monotonic() + timeout
    while True:
        answer = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if answer.get("id") == ident:
            if "error" in answer:
                raise AssertionError(f"{method}: {answer['error']}")
            return answer.get("result", {})


@contextmanager
def page(log: Path) -> Iterator[Page]:
    """A fresh headless chromium (its own empty profile) with one blank tab; stopped after."""
    with tempfile.TemporaryDirectory(prefix="apachews-chromium-") as profile:
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["chromium", *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            active = Path(profile) / "DevToolsActivePort"  # written once the DevTools socket listens
            deadline = time.monotonic() + 60
            while not (active.exists() and len(active.read_text().splitlines()) >= 2):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"chromium did not open its DevTools port: {log.read_text()[-2000:]}")
                time.sleep(0.05)
            port, path = active.read_text().splitlines()[:2]
            with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30) as socket:
                ids = itertools.count(1)
                target = _command(socket, ids, "Target.createTarget", {"url": "about:blank"}, None, 30)
                attached = _command(
                    socket, ids, "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, None, 30
                )
                tab = Page(socket, attached["sessionId"], process)
                tab.command("Runtime.enable")
                tab.command("Page.enable")
                yield tab
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """End chromium and its helpers (its own process group), unless a test killed them already."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
