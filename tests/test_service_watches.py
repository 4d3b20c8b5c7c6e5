"""Watches from the agent in ``scenewatch serve``: set through ``POST /api/ask``, run on the watched
source, their events on ``/api/stream``, listed and removed at ``/api/watches``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import UseBackend
from service_support import Served, served, settings_for, sse_messages
from test_assistant import ScriptedChat
from test_watches import QUESTION, answer, call, reply_with_tool_result

from agent.assistant.chat_model import CHAT_MODELS
from tools.vision.base import VisionRequest
from tools.vision.scripted import ScriptedBackend

HOLD_S = 60.0  # the longest the first frame's answer is held back


class FirstAnswerHeld(ScriptedBackend):
    """The watch questions' scripted model (:func:`test_watches.answer`), whose first answer waits
    until ``release`` is set: the watch is set up while the source's first frame is in flight."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.first = True
        super().__init__(self._answer)

    def _answer(self, request: VisionRequest) -> str:
        if self.first:
            self.first = False
            self.release.wait(HOLD_S)
        return answer(request)


@pytest.fixture
def api(
    use_backend: UseBackend, synthetic_clip: Path, tmp_path: Path
) -> Iterator[tuple[Served, FirstAnswerHeld]]:
    backend = FirstAnswerHeld()
    use_backend(backend)
    wanted = call(question=QUESTION, name="package_at_door")
    CHAT_MODELS.add("test", lambda settings, engine: ScriptedChat(script=reply_with_tool_result(wanted)))
    # one frame in flight at a time, and the pixel gate alone: the box's first frame (5 s) is the
    # second analysed, asked after the watch was set
    settings = settings_for(tmp_path / "home", pipeline_depth=1, detector=False)
    try:
        with served(settings, sources=[str(synthetic_clip)], backend=backend) as running:
            yield running, backend
            backend.release.set()
    finally:
        CHAT_MODELS.remove("test")


def test_a_watch_the_agent_sets_fires_on_the_stream_and_is_listed_and_removed(
    api: tuple[Served, FirstAnswerHeld], synthetic_clip: Path
) -> None:
    running, backend = api
    clip = str(synthetic_clip)
    asked = running.client.post(
        "/api/ask", json={"question": "Tell me when a package is left at the door", "source": clip}
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["answer"].startswith(f"success: Watch 1 set on {clip}")
    [listed] = running.client.get("/api/watches").json()
    assert (listed["id"], listed["name"], listed["question"], listed["source"]) == (
        1,
        "package_at_door",
        QUESTION,
        clip,
    )
    assert listed["active"] and listed["running"] and listed["predicate"] == "package_at_door"

    with running.client.stream("GET", "/api/stream", params={"kinds": "event"}) as stream:
        threading.Timer(0.2, backend.release.set).start()  # the watch goes on once the stream listens
        [event] = sse_messages(stream, limit=1, timeout=60)
    fired = event["data"]
    assert event["event"] == "event" and (fired["rule"], fired["source"]) == ("package_at_door", clip)
    assert fired["payload"]["observation"]["video_t"] == 5.0  # the red box's first frame
    assert f"{QUESTION}" in backend.requests[1].messages[-1]["content"][-1]["text"]

    running.wait_for(lambda: running.source_state(1) == "finished", what="the clip to end")
    [ended] = running.client.get("/api/watches").json()
    assert ended["active"] and not ended["running"]  # its source ended: stored, not asked any more
    assert running.service.watches.rule_engine.questions == {}  # type: ignore[union-attr]
    assert running.client.delete("/api/watches/1").status_code == 204
    assert running.client.get("/api/watches").json() == []
    [removed] = running.client.get("/api/watches", params={"removed": "true"}).json()
    assert not removed["active"] and not removed["running"]
    again = running.client.delete("/api/watches/1")
    assert again.status_code == 404 and again.json() == {"error": "no active watch with id 1"}
    assert running.client.delete("/api/watches/x").status_code == 422
