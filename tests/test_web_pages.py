"""The page at ``/`` in a real browser (Debian's Chromium under Playwright): frames arriving live
during a watch, sources added, paused and removed, the timeline and its filters, search, the chat
streamed with its cited times linked, events opened and acknowledged; every page at 1280 and 390
pixels wide (screenshots in SCENEWATCH_SCREENSHOTS when it is set)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import FROZEN_NOW
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from service_support import RULES, Served, served, settings_for
from web_support import both_widths, launched, loaded, opened, require_browser, wait_js

from agent.assistant.chat_model import CHAT_MODELS
from agent.bench.clips import Appearance, write_clip
from agent.core.durations import use_clock
from memory.embeddings import MemoryEmbeddings
from memory.events import NewEvent, Outbox
from tools.vision.base import VisionRequest
from tools.vision.scripted import ScriptedBackend

require_browser()

SECONDS_PER_FRAME = 0.3
"""How long the scripted model takes per frame: the 24 s clip is watched in about 8 s."""
TOKEN_S = 0.02
"""How long the scripted chat model takes per token: the answer streams over about half a second."""
CLOCK = re.compile(r"\b(?:\d{4}-\d{2}-\d{2} )?\d{2}:\d{2}:\d{2}\b")
"""A time as the tools cite it (the date only on another day than today)."""


def describe(request: VisionRequest) -> str:
    """The scripted vision model: sees the red box of the synthetic clip, names it as an object."""
    import numpy as np

    time.sleep(SECONDS_PER_FRAME)
    pixels = np.asarray(request.images[-1].convert("RGB")).astype(int)
    red = ((pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).mean() > 0.05
    return json.dumps(
        {
            "summary": "a red box in the middle of the scene" if red else "an empty textured scene",
            "people": 0,
            "objects": ["red box"] if red else ["wall"],
            "answers": {"box": bool(red)},
        }
    )


class CitingChat(GenericFakeChatModel):
    """A chat model that recalls "a red box", then answers with the first time the tool cites and
    how many questions the thread holds (so a kept thread shows)."""

    messages: Iterator[Any] = iter(())

    def bind_tools(self, tools: Any, **kwargs: Any) -> CitingChat:
        return self

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        asked = sum(isinstance(message, HumanMessage) for message in messages)
        if not isinstance(messages[-1], ToolMessage):
            call = {"name": "recall", "args": {"query": "a red box"}, "id": f"call_{asked}"}
            return AIMessage("", tool_calls=[call])
        cited = CLOCK.search(messages[-1].text)
        when = cited[0] if cited else "no time"
        return AIMessage(f"A red box was in view at {when}. This is question {asked} of this conversation.")

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _stream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages)
        if reply.tool_calls:  # the fake model's own streaming drops tool calls
            call = reply.tool_calls[0]
            piece = {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": 0}
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[piece]))
            return
        for chunk in super()._stream(messages, *args, **kwargs):
            time.sleep(TOKEN_S)
            yield chunk


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 s at 10 fps, a red box from 8 s to 14 s."""
    return write_clip(
        tmp_path_factory.mktemp("web") / "front door.mp4",
        duration_s=24.0,
        appearances=(Appearance(8.0, 14.0),),
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A service with the box rule, the scripted model and the citing chat model; no source yet."""
    home = tmp_path_factory.mktemp("home")
    rules = home / "rules.yaml"
    rules.write_text(RULES.replace("path: events.jsonl", f"path: {home / 'events.jsonl'}"))  # not the cwd
    settings = settings_for(home, backend="test", pipeline_depth=1, gate_threshold=0.0, api_stream_ping_s=5)
    CHAT_MODELS.add("test", lambda settings, engine: CitingChat())
    use_clock(lambda: FROZEN_NOW)  # the watch starts at a fixed time of day: never across midnight
    MemoryEmbeddings().embed_query("warm up")  # loaded once here, not during the first watch
    try:
        with served(settings, backend=ScriptedBackend(describe), rules=rules) as running:
            yield running
    finally:
        use_clock(None)
        CHAT_MODELS.remove("test")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as chromium:
        yield chromium


@pytest.fixture
def watched(site: Served, clip: Path) -> Served:
    """The site once the clip was watched to its end (added here unless a test added it)."""
    if not site.client.get("/api/sources").json():
        assert site.client.post("/api/sources", json={"source": str(clip)}).status_code == 201
    site.wait_for(lambda: site.source_state(1) == "finished", what="the clip to be watched")
    return site


def h264_clip(path: Path) -> Path:
    """A 2 s H.264 MP4 (what a browser plays; OpenCV's mp4v is not), made by ffmpeg."""
    path.parent.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=2:size=320x240:rate=10",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return path


NEWEST_FRAME = (
    "Math.max(...[...document.querySelectorAll('#grid img.thumb')].map(i => +i.dataset.observation))"
)
"""The id of the newest observation whose frame the sources page shows (a JavaScript expression)."""


def frame_ids(page: Any) -> list[int]:
    return [
        int(value)
        for value in page.locator("#grid img.thumb").evaluate_all(
            "images => images.map(image => image.dataset.observation)"
        )
    ]


def test_frames_arrive_without_a_reload_and_sources_are_added_paused_and_removed(
    site: Served, browser: Any, clip: Path, tmp_path: Path
) -> None:
    with opened(browser) as page:
        page.goto(site.url + "/")
        page.get_by_text("No sources yet").wait_for()
        page.evaluate("window.notReloaded = true")
        page.fill("input[name=source]", str(clip))
        page.click("form.add button")
        card = page.locator("article.source")
        card.get_by_role("heading", name="front door.mp4").wait_for()
        assert page.input_value("input[name=source]") == ""  # the form emptied itself
        wait_js(page, "document.querySelectorAll('#grid img.thumb').length >= 3")
        first = frame_ids(page)
        wait_js(page, f"{NEWEST_FRAME} > {max(first)}")
        assert max(frame_ids(page)) > max(first) and page.evaluate("window.notReloaded")  # live, not reloaded
        assert page.locator("#live").inner_text() == "live"
        card.locator(".summary", has_text="a red box").wait_for()  # the summary follows the watch
        both_widths(page, "sources")

        card.get_by_role("button", name="Pause").click()
        card.locator(".state.paused").wait_for()
        paused_at = site.service.reader.count()
        card.get_by_role("button", name="Resume").click()
        card.locator(".state.watching").wait_for()
        wait_js(page, f"{NEWEST_FRAME} > {paused_at}")
        card.locator(".state.finished").wait_for(timeout=60_000)  # the state stream, no observation
        assert page.evaluate("window.notReloaded")

        page.fill("input[name=source]", str(tmp_path / "nowhere.mp4"))
        page.click("form.add button")
        page.locator(".notice.error").wait_for()
        assert "nowhere.mp4" in page.locator(".notice.error").inner_text()

        other = write_clip(tmp_path / "yard.mp4", duration_s=3.0)
        page.fill("input[name=source]", str(other))
        page.click("form.add button")
        page.get_by_role("heading", name="yard.mp4").wait_for()
        page.on("dialog", lambda dialog: dialog.accept())  # "Stop watching yard.mp4 and forget it?"
        yard = page.locator("article.source", has_text="yard.mp4")
        yard.get_by_role("button", name="Remove").click()
        yard.wait_for(state="detached")
        assert page.locator("article.source").count() == 1
    names = [source["name"] for source in site.client.get("/api/sources").json()]
    assert names == [str(clip)]


def test_the_timeline_filters_and_opens_an_observation(watched: Served, browser: Any, clip: Path) -> None:
    stored = watched.service.reader.page(source=str(clip), limit=1000)
    boxes = [obs for obs in stored if "red box" in obs.summary]
    assert boxes and len(boxes) < len(stored)
    with opened(browser) as page:
        page.goto(watched.url + "/timeline")
        page.locator(".lane rect.span").first.wait_for()
        assert "front door.mp4" in page.locator(".lane h2").all_inner_texts()
        page.select_option("select[name=source]", str(clip))
        wait_js(page, f"document.querySelector('.count').textContent === '{len(stored)} observations'")
        assert page.locator(".lane h2").all_inner_texts() == ["front door.mp4"]
        assert page.locator(".lane .marker").count() >= 1  # the box rule's event
        both_widths(page, "timeline")

        page.fill("input[name=cls]", "red box")
        page.press("input[name=cls]", "Enter")
        wait_js(page, f"document.querySelector('.count').textContent === '{len(boxes)} observations'")
        titles = page.locator(".episodes img.thumb").evaluate_all("images => images.map(i => i.alt)")
        assert titles and all("Frame at" in title for title in titles)
        shown = page.locator(".episodes .summary").all_inner_texts()
        assert shown and all("red box" in text for text in shown)
        assert "cls=red+box" in page.url  # the address keeps the filters

        page.fill("input[name=cls]", "")
        page.fill("input[name=rule]", "box_seen")
        page.press("input[name=rule]", "Enter")
        wait_js(page, "location.search.includes('rule=box_seen') && !location.search.includes('cls=')")
        assert (
            page.locator(".episodes .episode").count()
            == page.locator(".episodes .episode:has(.chip)").count()
        )

        page.fill("input[name=rule]", "")
        page.fill("input[name=since]", "1d")
        page.fill("input[name=until]", "23h")  # a day ago until 23 hours ago: before the watch
        page.press("input[name=until]", "Enter")
        page.get_by_text("Nothing in this range").wait_for()

        page.fill("input[name=until]", "")
        page.fill("input[name=since]", "1h")
        page.press("input[name=until]", "Enter")
        wait_js(page, "!location.search.includes('until=')")
        page.locator(".episodes img.thumb").first.wait_for()
        page.locator(".episodes button.shot").first.click()
        dialog = page.locator("dialog#detail[open]")
        dialog.locator("figure img").wait_for()
        shown_id = int(dialog.locator("article.observation").get_attribute("data-observation"))
        document = json.loads(dialog.locator("details.json pre").inner_text())
        assert document["id"] == shown_id and document["source"].endswith("front door.mp4")
        assert loaded(dialog.locator("figure img"))
        both_widths(page, "observation")


def test_search_recalls_by_meaning_with_frames(watched: Served, browser: Any) -> None:
    with opened(browser) as page:
        page.goto(watched.url + "/search")
        page.fill("input[name=q]", "a red box")
        page.fill("input[name=since]", "1h")
        page.click("#search button")
        results = page.locator(".results .result")
        results.first.wait_for()
        assert "red box" in results.first.locator(".summary").inner_text()
        assert loaded(results.first.locator("img.thumb"))
        assert "q=a+red+box" in page.url
        both_widths(page, "search")
        page.fill("input[name=since]", "soon")
        page.click("#search button")
        page.locator(".notice.error").wait_for()
        assert "not a time" in page.locator(".notice.error").inner_text()


def test_the_chat_streams_the_answer_links_its_times_and_keeps_the_thread(
    watched: Served, browser: Any
) -> None:
    with opened(browser) as page:
        page.goto(watched.url + "/chat")
        page.fill("textarea[name=question]", "When was there a red box?")
        page.click("#ask button")
        answer = page.locator(".said.agent").last
        answer.locator("a.cite").wait_for()
        text = answer.inner_text()
        assert re.fullmatch(
            r"A red box was in view at [-\d: ]+\. This is question 1 of this conversation\.", text
        )
        assert "thread=" in page.url
        thread = page.url.split("thread=")[1]
        link = answer.locator("a.cite")
        cited = int(re.search(r"obs=(\d+)", link.get_attribute("href"))[1])
        assert "red box" in watched.service.reader.get_many([cited])[0].summary

        page.fill("textarea[name=question]", "And again?")
        page.press("textarea[name=question]", "Enter")
        page.get_by_text("This is question 2 of this conversation.").wait_for()
        assert page.locator("#threads a").all_inner_texts() == ["When was there a red box?"]
        both_widths(page, "chat")

        page.goto(watched.url + f"/chat?thread={thread}")  # the thread, kept by the server
        assert page.locator(".said.you").all_inner_texts() == ["When was there a red box?", "And again?"]
        assert page.locator(".said.agent a.cite").count() == 2

        page.locator(".said.agent a.cite").first.click()
        page.wait_for_url(re.compile(r"/timeline\?"))
        opened_id = page.locator("dialog#detail[open] article.observation").get_attribute("data-observation")
        assert int(opened_id) == cited


def test_the_chat_streams_piece_by_piece(watched: Served, browser: Any) -> None:
    """The answer grows in the page as the tokens come (the stream is read, not awaited whole)."""
    with opened(browser) as page:
        page.goto(watched.url + "/chat")
        page.evaluate(
            """() => {
                window.lengths = [];
                new MutationObserver(() => {
                    const answer = document.querySelector('.said.agent.streaming');
                    if (answer) window.lengths.push(answer.textContent.length);
                }).observe(
                    document.getElementById('chat-log'), {subtree: true, childList: true, characterData: true}
                );
            }"""
        )
        page.fill("textarea[name=question]", "When?")
        page.click("#ask button")
        page.locator(".said.agent a.cite").wait_for()
        lengths = page.evaluate("window.lengths")
        assert len(set(lengths)) > 3 and lengths == sorted(lengths)


def test_events_open_with_their_clip_and_are_acknowledged(watched: Served, browser: Any, clip: Path) -> None:
    settings = watched.service.settings
    video = h264_clip(settings.data_dir / "clips" / "box.mp4")
    with opened(browser) as page:
        page.goto(watched.url + "/events")
        rows = page.locator("ul.events li.event")
        rows.first.wait_for()
        assert "box_seen" in rows.first.inner_text() and "delivered" in rows.first.inner_text()
        box = [obs for obs in watched.service.reader.page(source=str(clip)) if "red box" in obs.summary][-1]
        outbox = Outbox(watched.service.reader)
        new_id = outbox.record(
            [
                NewEvent(
                    box.ts,
                    box.source,
                    "box_stayed",
                    "rule",
                    "critical",
                    "the red box stayed in view for 6 s",
                    payload={"clip": str(video.relative_to(settings.data_dir))},
                    observation_id=box.id,
                )
            ]
        )[0]
        watched.service.commits.notify()
        page.locator(f"#event-{new_id}").wait_for()  # live: the stream brought it
        both_widths(page, "events")

        page.locator(f"#event-{new_id} .summary button").click()
        dialog = page.locator("dialog#detail[open]")
        video = dialog.locator("video.clip")
        video.wait_for()
        assert video.get_attribute("src") == f"/api/events/{new_id}/clip"
        wait_js(page, "document.querySelector('video.clip').readyState >= 1")  # the MP4 loads
        assert json.loads(dialog.locator("details.json pre").inner_text())["rule"] == "box_stayed"
        both_widths(page, "event")
        dialog.get_by_role("button", name="Acknowledge").click()
        dialog.locator(".acked").wait_for()
        page.locator(f"#event-{new_id}.acked").wait_for()  # the list followed
        page.click("dialog#detail .close button")

        page.check("input[name=open]")
        wait_js(page, f"!document.getElementById('event-{new_id}')")
        assert "open=1" in page.url
    acknowledged = watched.client.get(f"/api/events/{new_id}").json()["acknowledged_at"]
    assert acknowledged is not None
