"""A real headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, for the page's browser test.

Why the protocol and not only ``--dump-dom``/``--screenshot``: the page is for logged-in users, and a browser logs
in to Airflow by holding the ``_token`` cookie Airflow's UI sets. ``Network.setCookie`` puts it there exactly as the
UI does; the command-line flags cannot. Everything else is what the flags do: load, read the DOM, screenshot.

The browser is a child in its own session with a fresh profile directory, stopped (TERM, then KILL) by PID.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

INSTALL_HINT = (
    "Chromium is needed by tests/e2e/test_page_e2e.py and was not found at /usr/bin/chromium or on PATH. "
    "Install it: `sudo apt-get install -y chromium` (Debian/Ubuntu), or run `make chromium` as root."
)
FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root in a container; Chromium refuses its sandbox there
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,900",
    "--remote-debugging-port=0",  # any free port; Chromium writes it to DevToolsActivePort
]


def find_chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab, spoken to over its DevTools WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._id = 0

    def call(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def wait_event(self, name: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("method") == name:
                return

    def load(self, url: str) -> str:
        """Navigate, wait for the load event, return the DOM as HTML (what ``--dump-dom`` prints)."""
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        result = self.call("Runtime.evaluate", expression="document.documentElement.outerHTML", returnByValue=True)
        return str(result["result"]["value"])

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_until(self, expression: str, timeout_s: float = 60.0) -> None:
        """Poll a JavaScript expression until it is truthy (a React page renders after its load event)."""
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout_s:.0f} s: {expression}")
            time.sleep(0.5)

    def set_cookie(self, name: str, value: str, url: str) -> None:
        self.call("Network.setCookie", name=name, value=value, url=url, path="/")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))


@contextmanager
def chromium(binary: str, timeout_s: float = 30.0) -> Iterator[Page]:
    """A headless Chromium with one blank tab; stopped and its profile removed on exit, even on failure."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    proc = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        # Chromium's singleton socket folder (org.chromium.Chromium.XXXXXX) goes to TMPDIR and stays there when the
        # browser is stopped by a signal: inside the profile, it goes with it.
        env={**os.environ, "TMPDIR": str(profile)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.loads(response.read())
        tab = next(t for t in targets if t.get("type") == "page")
        with connect(tab["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=10) as ws:
            page = Page(ws)
            page.call("Page.enable")
            page.call("Network.enable")
            yield page
    finally:
        # The whole process group we created (browser, zygote, renderers), by its id.
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        shutil.rmtree(profile, ignore_errors=True)
