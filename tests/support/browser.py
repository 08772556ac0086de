"""What the browser tests share: Debian's Chromium driven by Playwright, the viewports, new
pages and screenshots.

The committed pictures are refreshed only on request, so a test run leaves the tree clean:
BEACON_UPDATE_SCREENSHOTS=1 .venv/bin/pytest tests/web/test_browser.py
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest

from tests.support.live_server import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("BEACON_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "beacon-screenshots"
)
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
REGION_ENV = {
    "us-east": "US_EAST_BASE_URL",
    "eu-west": "EU_WEST_BASE_URL",
    "asia-pacific": "ASIA_PACIFIC_BASE_URL",
}


def require_chromium():
    """Skips the calling test module loudly without Chromium; returns playwright's sync API."""
    if not CHROMIUM.exists():
        pytest.skip(
            "!!! /usr/bin/chromium is missing: the browser tests DID NOT RUN "
            "(apt-get install chromium; scripts/test.sh does it)",
            allow_module_level=True,
        )
    return pytest.importorskip("playwright.sync_api")


@contextlib.contextmanager
def launched():
    """A running Chromium, closed on the way out."""
    sync_api = require_chromium()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser, viewport=DESKTOP, javascript=True, timeout_ms=60_000):
    """A page in a context of its own, with or without JavaScript."""
    context = browser.new_context(viewport=viewport, java_script_enabled=javascript)
    context.set_default_timeout(timeout_ms)
    return context.new_page()


def shot(page, name: str, height: int | None = None, full_page: bool = True) -> None:
    """Saves a screenshot of the page (or the viewport), or of its first `height` pixels."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = str(SCREENSHOTS / f"{name}.png")
    if height is None:
        page.screenshot(path=path, full_page=full_page)
    else:
        clip = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": height}
        page.screenshot(path=path, full_page=True, clip=clip)
