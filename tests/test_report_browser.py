"""Open the Snakemake HTML report in headless Chromium and click through every result.

Checks: the page loads without console errors or uncaught exceptions, every category
(Convergence, Downtime, Planner) is listed, and every flagged figure opens as an embedded
image (tables as their table view).  Uses the DevTools protocol over a pipe
(``--remote-debugging-pipe``): no network port, no extra package.

As a test it builds a tiny sweep's report (see ``tests/test_report.py``); as a script it
takes screenshots of an existing report, for people to look at::

    python tests/test_report_browser.py results/report.html /tmp/report-shots

Marker ``chromium``; skipped, saying why, when Debian's ``chromium`` is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CATEGORIES = ("Convergence", "Downtime", "Planner")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]
# Messages the report's own bundle prints on every load; not errors of ours.
BENIGN = ("cdn.tailwindcss.com should not be used in production",)


class Browser:
    """A minimal DevTools-protocol client over Chromium's debugging pipe (fds 3 and 4)."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        if CHROMIUM is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_chrome_r, self._to_chrome_w = os.pipe()
        self._from_chrome_r, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends on fds 3 (read) and 4 (write)
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        args = [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire,
            close_fds=False,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self.next_id = 0
        threading.Thread(target=self._reader, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"})
        self.session = self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=True)  # fmt: skip

    def _reader(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_chrome_r, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                self.messages.put(json.loads(raw))

    def _next(self, deadline: float) -> dict | None:
        try:
            message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if "method" in message:
            self.events.append(message)
        return message

    def call(self, method: str, params: dict | None = None, *, session: bool = False,
             timeout: float = 30.0) -> dict:  # fmt: skip
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._next(deadline)
            if reply is not None and reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
        raise TimeoutError(method)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        seen = len(self.events)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            self._next(deadline)
        raise TimeoutError(method)

    def js(self, expression: str) -> object:
        result = self.call("Runtime.evaluate",
                           {"expression": expression, "returnByValue": True,
                            "awaitPromise": True}, session=True)  # fmt: skip
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for("Page.loadEventFired")

    def settle(self, seconds: float = 0.4) -> None:
        """Let the page's scripts run, collecting events meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._next(deadline)

    def screenshot(self, path: str | Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, and error log entries."""
        out = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(params["exceptionDetails"])[:400])
            elif method == "Runtime.consoleAPICalled" and params["type"] in (
                "error", "assert", "warning"
            ):  # fmt: skip
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in
                                params.get("args", []))  # fmt: skip
                if not any(b in text for b in BENIGN):
                    out.append(f"console.{params['type']}: {text[:400]}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                text = params["entry"].get("text", "")
                if not any(b in text for b in BENIGN):
                    out.append("log: " + text[:400])
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            self.proc.kill()
        try:
            self.proc.wait(timeout=15)
        finally:
            os.close(self._to_chrome_w)
            shutil.rmtree(self.profile, ignore_errors=True)


# JavaScript helpers run in the page (the report is a React app: links are <a href="#">).
CLICK_LINK = """(() => {
  const a = [...document.querySelectorAll('a')].find(e => e.textContent.trim() === %s);
  if (!a) return false; a.click(); return true; })()"""
LINKS = "[...document.querySelectorAll('nav a')].map(a => a.textContent.trim()).filter(t => t)"
ROWS = "[...document.querySelectorAll('nav tr')].filter(r => r.querySelector('a[iconname=eye]'))" \
       ".map(r => r.querySelector('td').textContent.trim())"  # fmt: skip
VIEW_ROW = """(() => {
  const r = [...document.querySelectorAll('nav tr')].filter(r => r.querySelector('a[iconname=eye]'))[%d];
  r.querySelector('a[iconname=eye]').click(); return true; })()"""  # noqa: E501
TOGGLES = "[...document.querySelectorAll('nav fieldset input[type=radio]')].map(i => i.value)"
CLICK_TOGGLE = """(() => {
  const i = [...document.querySelectorAll('nav fieldset input[type=radio]')]
    .find(i => i.value === %s);
  i.click(); return true; })()"""
SHOWN = """[...document.querySelectorAll('img, iframe, embed, object, table')]
  .filter(e => !e.closest('nav'))
  .map(e => e.tagName + ' ' + ((e.src || e.data || '').split(';').find(p => p.startsWith('filename=')) || ''))"""  # noqa: E501


def walk_report(html: Path, shots: Path | None = None, width: int = 1400,
                height: int = 1000) -> dict:  # fmt: skip
    """Click through every category, subcategory and result; return what was seen.

    ``{"categories": [...], "results": {label: [shown elements]}, "problems": [...],
    "screenshots": [...]}``.
    """
    browser = Browser(width, height)
    seen: dict = {"categories": [], "results": {}, "problems": [], "screenshots": []}
    try:
        browser.open(html.resolve().as_uri())
        browser.settle(1.0)
        if shots:
            shots.mkdir(parents=True, exist_ok=True)
            seen["screenshots"].append(browser.screenshot(shots / "00-home.png"))
        links = browser.js(LINKS)
        seen["categories"] = [c for c in CATEGORIES if c in links]
        n = 0
        for category in seen["categories"]:
            browser.open(html.resolve().as_uri())  # start from the home page
            browser.settle(0.6)
            browser.js(CLICK_LINK % json.dumps(category))
            browser.settle()
            subcategories = [s for s in browser.js(LINKS) if s not in ("Results", category)]
            for sub in subcategories or [None]:
                if sub is not None:
                    browser.js(CLICK_LINK % json.dumps(sub))
                    browser.settle()
                for i, row in enumerate(browser.js(ROWS)):
                    browser.js(VIEW_ROW % i)
                    browser.settle(0.8)
                    # a label with two values is a toggle (figure / table): show each value
                    for value in browser.js(TOGGLES) or [None]:
                        if value is not None:
                            browser.js(CLICK_TOGGLE % json.dumps(value))
                            browser.settle(0.8)
                        key = f"{category} / {sub} / {row}" + (f" / {value}" if value else "")
                        seen["results"][key] = browser.js(SHOWN)
                        if shots:
                            n += 1
                            name = f"{n:02d}-{key}".replace(" / ", "-").replace(" ", "_")
                            name = "".join(ch for ch in name if ch.isalnum() or ch in "-_")
                            seen["screenshots"].append(browser.screenshot(shots / f"{name}.png"))
                if sub is not None:
                    browser.js(CLICK_LINK % json.dumps(category))
                    browser.settle()
        seen["problems"] = browser.problems()
    finally:
        browser.close()
    return seen


@pytest.fixture(scope="session")
def built_report(tmp_path_factory):
    """The tiny sweep's report, built once per session (shared with tests/test_report.py)."""
    from test_report import build_report

    return build_report(tmp_path_factory.getbasetemp())


@pytest.mark.chromium
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                    "(apt-get install chromium)")  # fmt: skip
def test_report_opens_in_chromium(built_report, tmp_path):
    """Every flagged output shows up in the browser, and nothing is logged as an error."""
    html, flagged = built_report
    seen = walk_report(html, tmp_path / "shots")
    assert seen["problems"] == [], seen["problems"]
    assert seen["categories"] == list(CATEGORIES)
    shown_files = {
        part.split("filename=", 1)[1]
        for elements in seen["results"].values()
        for element in elements
        if "filename=" in (part := element)
    }
    figures = {Path(f).name for f in flagged if f.endswith(".png")}
    assert figures <= shown_files, f"not displayed: {sorted(figures - shown_files)}"
    tables = [k for k, v in seen["results"].items() if "table" in k]
    assert all(seen["results"][k] for k in tables), "a table did not display"
    assert len(seen["results"]) == len(flagged)
    for shot in seen["screenshots"]:
        assert shot.stat().st_size > 10_000  # a rendered page, not a blank one


if __name__ == "__main__":
    report = Path(sys.argv[1] if len(sys.argv) > 1 else "results/report.html")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "results/report-screenshots")
    result = walk_report(report, out)
    print(json.dumps({k: v for k, v in result.items() if k != "screenshots"}, indent=1))
    print("screenshots:", *map(str, result["screenshots"]), sep="\n  ")
    sys.exit(1 if result["problems"] else 0)
