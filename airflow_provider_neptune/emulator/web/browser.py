"""A headless Chromium driven over the Chrome DevTools Protocol, for the web view's tests and benchmark.

Starts Debian's `chromium` with a fresh profile and no network features, then talks CDP over the
page's websocket (websocket-client, already a dependency of the neptune client). Small on purpose:
navigate, evaluate JavaScript, move the mouse, take screenshots.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class BrowserError(RuntimeError):
    """Chromium could not be started, or a DevTools command failed."""


def find_chromium() -> str:
    """The Chromium executable: $CHROMIUM, else `chromium` or `chromium-browser` on PATH."""
    candidates = [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser"]
    for name in candidates:
        found = shutil.which(name) if name else None
        if found:
            return found
    raise BrowserError(
        "Chromium is not installed: run `make system-deps` (Debian package chromium) or set CHROMIUM"
    )


class Chromium:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 30.0) -> None:
        self.width = width
        self.height = height
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._ws: Any = None
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.requested: list[str] = []  # every URL the page asked for, in order
        self.errors: list[str] = []  # console errors, uncaught exceptions, blocked content

    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Launch Chromium, wait for its DevTools port and attach to its page."""
        import websocket

        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        profile = Path(self._profile.name)
        self.process = subprocess.Popen(
            [
                find_chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with code {self.process.returncode} while starting")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium did not open its DevTools port within {self.timeout} s")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as answer:
            targets = json.loads(answer.read())
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise BrowserError("chromium started without a page to drive")
        self._ws = websocket.create_connection(
            pages[0]["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True
        )
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Network.enable")
        self.send("Log.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )

    def close(self) -> None:
        """Close the page connection and stop Chromium."""
        if self._ws is not None:
            with contextlib.suppress(Exception):  # the browser may already be gone
                self.send("Browser.close")
            self._ws.close()
            self._ws = None
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    # ----- protocol -----------------------------------------------------------------------------
    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one DevTools command and return its result (events that arrive meanwhile are kept)."""
        if self._ws is None:
            raise BrowserError("the browser is not started")
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._record(message)

    def _record(self, event: dict[str, Any]) -> None:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requested.append(str(params["request"]["url"]))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(str(params["entry"].get("text")))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(str(details.get("exception", {}).get("description") or details.get("text")))
        self.events.append(event)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the next DevTools event named `method` (earlier ones are consumed)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, event in enumerate(self.events):
                if event["method"] == method:
                    del self.events[: i + 1]
                    return event
            if time.monotonic() > deadline:
                raise BrowserError(f"no {method} event within {timeout or self.timeout} s")
            self._ws.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                message = json.loads(self._ws.recv())
            except Exception as exc:  # websocket timeout
                raise BrowserError(f"no {method} event within {timeout or self.timeout} s") from exc
            finally:
                self._ws.settimeout(self.timeout)
            if "method" in message:
                self._record(message)

    # ----- page actions -------------------------------------------------------------------------
    def goto(self, url: str) -> None:
        """Open `url` and wait until the page (and its deferred script) has loaded."""
        self.events.clear()
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired")

    def eval(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited) and return its JSON value."""
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error in {expression[:80]!r}: {text}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float | None = None, interval: float = 0.1) -> Any:
        """Poll a JavaScript condition until it is truthy; return its value or raise after `timeout`."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression[:120]!r} still false after {timeout or self.timeout} s")
            time.sleep(interval)

    def mouse_move(self, x: float, y: float) -> None:
        """Move the mouse to page coordinates (x, y), firing mousemove events."""
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG of the whole page (or, with full_page=False, of the window) at `path`."""
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
        if not full_page:
            size = {"width": self.width, "height": self.height}
        clip = {
            "x": 0,
            "y": 0,
            "width": max(float(size.get("width", self.width)), 1.0),
            "height": max(float(size.get("height", self.height)), 1.0),
            "scale": 1,
        }
        shot = self.send(
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
