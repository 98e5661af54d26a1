"""A real headless Chromium (Debian's package) driven by Playwright, for the checkout page tests.

Playwright's own browser download does not work on these machines; its driver runs the system
Chromium instead. The flags keep Chromium off the network (which is closed here) and out of the
sandbox (tests run as root). Every page records what it requested, the component's DOM events and
any Content-Security-Policy violation, so tests can assert on them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from local.endpoints import free_port
from tests.support import ROOT

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# A shop page on another origin frames the hosted checkout page in the browser tests; the stack
# must know that origin when it starts (tests/e2e/conftest.py passes it on).
SHOP_PORT = free_port()
SHOP_ORIGIN = f"http://127.0.0.1:{SHOP_PORT}"
# git-ignored (.gitignore: test-output/)
SCREENSHOTS = Path(os.environ.get("TEST_OUTPUT_DIR", ROOT / "test-output")) / "browser"

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}

CHECKOUT_EVENTS = [
    "qpay:status",
    "qpay:paid",
    "qpay:cancelled",
    "qpay:expired",
    "qpay:failed",
    "qpay:error",
    "qpay:back",
    "qpay:receipt",
]
# Runs before the page's own scripts (injected by the browser, so the page's CSP does not apply).
RECORDER = """
window.__qpay = { events: [], violations: [] };
for (const type of __EVENTS__) {
  document.addEventListener(type, (event) => {
    const detail = event.detail || {};
    window.__qpay.events.push({ type, status: detail.status ?? null, fatal: detail.fatal ?? null,
                                at: performance.now() });
  }, true);
}
document.addEventListener("securitypolicyviolation", (event) => {
  window.__qpay.violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
""".replace("__EVENTS__", json.dumps(CHECKOUT_EVENTS))


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(
            "Chromium is not installed: `make e2e` installs Debian's chromium and chromium-driver "
            "(as root; otherwise `sudo apt-get install chromium chromium-driver`)",
            pytrace=False,
        )
    return path


@dataclass
class Request:
    at: float
    method: str
    url: str
    finished_at: float | None = None
    failure: str | None = None


@dataclass
class RecordedPage:
    """A Playwright page plus everything it asked the network for."""

    page: Any
    requests: list[Request] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    _open: dict[Any, Request] = field(default_factory=dict)

    @classmethod
    def attach(cls, page: Any) -> RecordedPage:
        recorded = cls(page)
        page.add_init_script(RECORDER)
        page.on("request", recorded._on_request)
        page.on("requestfinished", recorded._on_done)
        page.on("requestfailed", recorded._on_failed)
        page.on(
            "console",
            lambda message: message.type == "error" and recorded.console_errors.append(message.text),
        )
        page.on("pageerror", lambda error: recorded.page_errors.append(str(error)))
        return recorded

    def _on_request(self, request: Any) -> None:
        entry = Request(time.monotonic(), request.method, request.url)
        self.requests.append(entry)
        self._open[request] = entry

    def _on_done(self, request: Any) -> None:
        entry = self._open.pop(request, None)
        if entry is not None:
            entry.finished_at = time.monotonic()

    def _on_failed(self, request: Any) -> None:
        entry = self._open.get(request)
        self._on_done(request)
        if entry is not None:
            entry.failure = request.failure or "failed"

    def status_requests(self, session_id: str) -> list[Request]:
        pattern = re.compile(rf"/payments/{re.escape(session_id)}(\?|$)")
        return [r for r in self.requests if r.method == "GET" and pattern.search(urlsplit(r.url).path + "?")]

    def cancel_requests(self, session_id: str) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.method == "POST" and r.url.endswith(f"/payments/{session_id}/cancel")
        ]

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        events = self.page.evaluate("window.__qpay ? window.__qpay.events : []")
        return [event for event in events if type_ is None or event["type"] == type_]

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__qpay ? window.__qpay.violations : []")

    def wait_for_event(self, type_: str, timeout_s: float = 10) -> dict[str, Any]:
        self.page.wait_for_function(
            "type => (window.__qpay?.events || []).some(event => event.type === type)",
            arg=type_,
            timeout=timeout_s * 1000,
        )
        return self.events(type_)[0]

    def wait_for_status(self, status: str, timeout_s: float = 10) -> None:
        self.page.wait_for_function(
            "status => document.querySelector('qpay-checkout')?.status === status",
            arg=status,
            timeout=timeout_s * 1000,
        )

    def third_party_requests(self, own_origins: set[str]) -> list[str]:
        """Requests that left for another origin; one the CSP stopped (failure "csp") never left."""
        return [
            r.url
            for r in self.requests
            if not r.url.startswith("data:")
            and f"{urlsplit(r.url).scheme}://{urlsplit(r.url).netloc}" not in own_origins
            and r.failure != "csp"
        ]

    def pause(self, seconds: float) -> None:
        """Wait while the page runs; unlike time.sleep, Playwright keeps recording meanwhile."""
        self.page.wait_for_timeout(seconds * 1000)

    def status_timings(self, session_id: str) -> list[tuple[float, float]]:
        """(start, end) in the page's clock (ms) of every answered status request."""
        return [
            (entry["startTime"], entry["responseEnd"])
            for entry in self.page.evaluate(
                "() => performance.getEntriesByType('resource').map(e => e.toJSON())"
            )
            if f"/payments/{session_id}" in entry["name"] and "/cancel" not in entry["name"]
        ]
