"""A real headless Chromium for page tests, driven over the DevTools protocol on a pipe.

`Browser` starts Debian's `chromium` with `--remote-debugging-pipe` (commands on fd 3,
answers on fd 4, one JSON message per NUL-terminated line), so no port is opened and no
package beyond the browser is needed. A test opens a page, runs JavaScript in it, clicks,
and takes PNG screenshots of parts of it.

No browser found: `find_chromium()` returns None and the tests that need one skip, unless
`HUBBOT_REQUIRE_BROWSER=1` (set by `.ci/run`) turns that into a failure. `nox -s tests`
installs the browser with apt-get when it runs as root.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    """The Chromium (or Chrome) binary on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _above_4(fd: int) -> int:
    """`fd` moved above 4, so that putting the pipes on 3 and 4 cannot clobber one."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium with one page. Use as a context manager."""

    def __init__(self, binary: str, *, width: int = 1000, height: int = 1400) -> None:
        self._binary = binary
        self._size = (width, height)
        self._id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="hubbot-chromium-")
        to_child, self._send_fd = os.pipe()
        self._recv_fd, from_child = os.pipe()
        to_child, from_child = _above_4(to_child), _above_4(from_child)

        width, height = self._size

        def onto_3_and_4() -> None:  # the protocol's fixed descriptors: 3 in, 4 out
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        # close_fds=False: the child keeps 3 and 4; every other descriptor of ours is
        # close-on-exec already (Python opens them non-inheritable).
        self._process = subprocess.Popen(
            [
                self._binary,
                *FLAGS,
                f"--user-data-dir={self._profile.name}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=onto_3_and_4,
        )
        os.close(to_child)
        os.close(from_child)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):
            self.call("Browser.close", timeout=5)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._send_fd)
        os.close(self._recv_fd)
        self._profile.cleanup()

    # -- the protocol ----------------------------------------------------------------------

    def call(
        self, method: str, *, session: bool = False, timeout: float = 30, **params: Any
    ) -> dict[str, Any]:
        """Send one command and wait for its answer (events that arrive meanwhile are kept)."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self._events.append(answer)

    def _read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._recv_fd], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._recv_fd, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(line)

    def _wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method:
                    return self._events.pop(i)
            self._events.append(self._read(deadline))

    # -- what a test uses ------------------------------------------------------------------

    def open(self, url: str) -> None:
        """Load `url` and wait for its load event."""
        self._events = [e for e in self._events if e.get("method") != "Page.loadEventFired"]
        self.call("Page.navigate", session=True, url=url)
        self._wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def rect(self, selector: str) -> dict[str, float]:
        """The page box of the first element matching `selector`."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; const r = e.getBoundingClientRect();"
            " return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}; })()"
        )
        if box is None:
            raise LookupError(f"no element matches {selector!r}")
        return box

    def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element."""
        box = self.rect(selector)
        self.evaluate(f"window.scrollTo(0, {max(0, box['y'] - 10)})")
        top = self.evaluate("scrollY")
        x, y = box["x"] + min(box["width"] / 2, 40), box["y"] - top + box["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                session=True,
                type=kind,
                x=x,
                y=y,
                button="left",
                clickCount=1,
            )
        self.evaluate("window.scrollTo(0, 0)")

    def screenshot(self, where: str | dict[str, float], path: Path) -> Path:
        """A PNG of the element matching `where` (or of a page box) as the page shows it now."""
        box = self.rect(where) if isinstance(where, str) else where
        data = self.call(
            "Page.captureScreenshot",
            session=True,
            format="png",
            captureBeyondViewport=True,
            clip={**box, "scale": 1},
        )["data"]
        path.write_bytes(base64.b64decode(data))
        return path
