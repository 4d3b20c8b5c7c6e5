"""Signing in from a real browser when the service has a token: the form, the HttpOnly cookie, and the
live stream that the cookie lets in (an EventSource cannot send the bearer header)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_support import Served, frame_counter, served, settings_for
from web_support import both_widths, launched, opened, require_browser

from memory.embeddings import MemoryEmbeddings

require_browser()

TOKEN = "a-long-token-for-the-browser-0123456789"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Served]:
    settings = settings_for(tmp_path / "home", api_token=TOKEN, pipeline_depth=1, gate_threshold=0.0)
    MemoryEmbeddings().embed_query("warm up")  # loaded here, not while the page waits for frames
    with served(
        settings, backend=frame_counter(delay=0.2), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as api:
        yield api


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as chromium:
        yield chromium


def test_signing_in_lets_the_page_and_its_live_stream_in(
    guarded: Served, browser: Any, synthetic_clip: Path
) -> None:
    with opened(browser) as page:
        page.goto(guarded.url + "/?from=bookmark")
        page.wait_for_url("**/login?next=*")
        both_widths(page, "login")
        page.fill("input[name=token]", "not the token")
        page.click("form button")
        page.get_by_text("That is not the token.").wait_for()
        page.fill("input[name=token]", TOKEN)
        page.click("form button")
        page.wait_for_url(guarded.url + "/?from=bookmark")
        [cookie] = page.context.cookies()
        assert (cookie["name"], cookie["value"]) == ("scenewatch_token", TOKEN)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert TOKEN not in page.evaluate("document.cookie")  # no script on the page can read it
        page.get_by_text("No sources yet").wait_for()
        page.get_by_text("live", exact=True).wait_for()  # the stream took the cookie
        assert guarded.client.post("/api/sources", json={"source": str(synthetic_clip)}).status_code == 201
        page.locator("#grid img.thumb").nth(1).wait_for()  # frames arrive through the stream
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/login")
        assert page.context.cookies() == []
        page.goto(guarded.url + "/events")
        page.wait_for_url("**/login?next=%2Fevents")
