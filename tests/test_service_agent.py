"""``POST /api/ask``: the agent on the service's engine, as JSON or streamed, threads kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import UseBackend
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from service_support import Served, frame_counter, served, settings_for, sse_messages

from agent.assistant.chat_model import CHAT_MODELS


class CountingChat(GenericFakeChatModel):
    """A chat model that answers how many questions the thread holds (so a kept thread shows)."""

    messages: Iterator[Any] = iter(())

    def bind_tools(self, tools: Any, **kwargs: Any) -> CountingChat:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        asked = sum(isinstance(message, HumanMessage) for message in messages)
        reply = f"You have asked {asked} question{'s' if asked > 1 else ''} in this thread."
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])


@pytest.fixture
def api(use_backend: UseBackend, synthetic_clip: Path, tmp_path: Path) -> Iterator[Served]:
    use_backend(frame_counter())
    CHAT_MODELS.add("test", lambda settings, engine: CountingChat())
    try:
        with served(settings_for(tmp_path / "home"), sources=[str(synthetic_clip)]) as running:
            running.wait_for(lambda: running.service.reader.count() > 0, what="an observation")
            yield running
    finally:
        CHAT_MODELS.remove("test")


def test_ask_answers_in_json_and_keeps_the_thread(api: Served) -> None:
    first = api.client.post("/api/ask", json={"question": "what is there?"}).json()
    assert first["answer"] == "You have asked 1 question in this thread." and first["thread"]
    again = api.client.post("/api/ask", json={"question": "and now?", "thread": first["thread"]}).json()
    assert again == {"answer": "You have asked 2 questions in this thread.", "thread": first["thread"]}
    fresh = api.client.post("/api/ask", json={"question": "hello?"}).json()
    assert fresh["thread"] != first["thread"] and "1 question" in fresh["answer"]


def test_ask_streams_as_server_sent_events(api: Served) -> None:
    with api.client.stream(
        "POST", "/api/ask", json={"question": "what is there?"}, headers={"Accept": "text/event-stream"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = sse_messages(response, limit=100)
    kinds = [message["event"] for message in messages]
    assert kinds[0] == "thread" and kinds[-1] == "done" and kinds.count("token") > 1
    pieces = "".join(message["data"]["text"] for message in messages if message["event"] == "token")
    done = messages[-1]["data"]
    assert done["answer"] == pieces.strip() == "You have asked 1 question in this thread."
    assert done["thread"] == messages[0]["data"]["thread"]


def test_bad_questions_are_clear_errors(api: Served) -> None:
    assert api.client.post("/api/ask", json={"question": "   "}).status_code == 422
    assert api.client.post("/api/ask", json={}).status_code == 422
    unknown = api.client.post("/api/ask", json={"question": "hi", "source": "nowhere.mp4"})
    assert unknown.status_code == 404 and "nowhere.mp4" in unknown.json()["error"]
    cut = api.client.post(
        "/api/ask", content=b'{"question": "hi', headers={"content-type": "application/json"}
    )
    assert cut.status_code == 400 and "malformed JSON" in cut.json()["error"]
    assert api.client.get("/readyz").status_code == 200
