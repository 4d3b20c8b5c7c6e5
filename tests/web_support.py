"""What the browser tests share: Debian's Chromium driven by Playwright, and the screenshots.

Playwright's own browser download is never used (it cannot work offline): the tests launch
``/usr/bin/chromium`` through ``executable_path`` and skip, saying why, when it is missing.
Screenshots are written only when ``SCENEWATCH_SCREENSHOTS`` names a folder (``docs/screenshots``
refreshes the README's pictures); every page is checked at desktop and phone width either way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--force-device-scale-factor=1",
]
"""Chromium's flags for a headless run in a container with no network (tried in /tmp/research/serve)."""
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 20_000
"""Longest a test waits for something on a page."""


def require_browser() -> None:
    """Skip the calling test module when Chromium or Playwright is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install Debian's chromium (the Makefile's system-packages step)",
            allow_module_level=True,
        )
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")


@contextmanager
def launched() -> Iterator[Any]:
    """A headless Chromium (Debian's) under Playwright, closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def opened(browser: Any, *, viewport: dict[str, int] = DESKTOP) -> Iterator[Any]:
    """A page in a fresh context; the test fails if a script on it throws."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"script errors on the page: {errors}"


def wait_js(page: Any, expression: str, timeout_ms: int = WAIT_MS) -> Any:
    """Poll a JavaScript expression until it is truthy; its value. (``page.wait_for_function`` would
    evaluate a string in the page, which the page's Content-Security-Policy forbids.)"""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression} on {page.url}")
        page.wait_for_timeout(100)


def loaded(image: Any, timeout_ms: int = WAIT_MS) -> bool:
    """Wait until an ``img`` locator's picture has arrived and decoded (live pages insert the element
    before its bytes come); True, or AssertionError after ``timeout_ms``."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not image.evaluate("image => image.complete && image.naturalWidth > 0"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for the image {image.get_attribute('src')}")
        image.page.wait_for_timeout(100)
    return True


def screenshots_dir() -> Path | None:
    folder = os.environ.get("SCENEWATCH_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def fits(page: Any, width: int) -> None:
    """Nothing on the page is wider than the screen (no sideways scrolling)."""
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= width, f"{page.url} is {wide}px wide on a {width}px screen"


def both_widths(page: Any, name: str) -> None:
    """Check the page at desktop and phone width, with a screenshot of each when asked for
    (``NAME-1280.png``, ``NAME-390.png``); the page is left at desktop width."""
    folder = screenshots_dir()
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        page.wait_for_timeout(150)  # one layout after the resize
        fits(page, viewport["width"])
        if folder is not None:  # with every picture that has arrived by then drawn (live pages add more)
            wait_js(page, "[...document.images].every(image => image.complete)", timeout_ms=5_000)
            page.screenshot(path=str(folder / f"{name}-{viewport['width']}.png"))
    page.set_viewport_size(DESKTOP)
