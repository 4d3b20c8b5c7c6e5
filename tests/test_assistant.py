"""The agent with a scripted chat model over a memory of a synthetic clip (box from 5 s to 12 s)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from agent.assistant.agent import Assistant, open_assistant
from agent.core.config import Settings, load_settings
from agent.pipeline.watch import run_watch
from memory.episodes import EpisodeTracker
from memory.indexer import Indexer
from memory.store import Store
from tools.vision.base import VisionRequest
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

Script = Callable[[list[BaseMessage]], AIMessage]


class ScriptedChat(GenericFakeChatModel):
    """A chat model whose reply is ``script(messages)``; it records every prompt it saw."""

    messages: Iterator[Any] = iter(())
    script: Script
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChat:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=self.script(messages))])


def call(name: str, **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{name}_{len(args)}"}])


def after_tool(first: AIMessage, answer: Callable[[ToolMessage], str]) -> Script:
    """Call a tool first; then answer from its result."""

    def script(messages: list[BaseMessage]) -> AIMessage:
        if isinstance(messages[-1], ToolMessage):
            return AIMessage(answer(messages[-1]))
        return first

    return script


def describe(request: VisionRequest) -> str:
    """The scripted vision model: sees the red box when a tenth of the frame is red."""
    pixels = np.asarray(request.images[-1].convert("RGB")).astype(int)
    red = ((pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).mean() > 0.05
    summary = "a red box in the middle of the scene" if red else "an empty textured scene"
    return json.dumps({"summary": summary, "people": 0, "objects": ["red box"] if red else []})


@pytest.fixture(scope="module")
def memory_db(tmp_path_factory: pytest.TempPathFactory, synthetic_clip: Path) -> Path:
    """The database a scripted watch of the clip leaves: observations at 0 s, 5 s and 12 s."""
    settings = load_settings(db=tmp_path_factory.mktemp("watched") / "scenewatch.db")
    store = Store(settings.db_path)
    listeners = [EpisodeTracker(store, settings), Indexer(store, settings)]
    with Engine(ScriptedBackend(describe), batch_wait_ms=0) as engine:
        run_watch([str(synthetic_clip)], settings, engine=engine, store=store, listeners=listeners)
    assert [obs.video_t for obs in store.between()] == [0.0, 5.0, 12.0]
    assert store.execute("SELECT COUNT(*) FROM observations WHERE indexed = 1")[0][0] == 3
    store.close()
    return settings.db_path


@contextmanager
def assistant(
    db: Path, script: Script, vision: ScriptedBackend | None = None, **overrides: Any
) -> Iterator[tuple[Assistant, ScriptedChat]]:
    settings = load_settings(db=db, **overrides)
    chat = ScriptedChat(script=script)
    with (
        Engine(vision or ScriptedBackend(default="nothing"), batch_wait_ms=0) as engine,
        open_assistant(settings, engine=engine, chat_model=chat, thread="t1") as agent,
    ):
        yield agent, chat


def test_when_did_the_object_appear_cites_its_time(memory_db: Path) -> None:
    def script(messages: list[BaseMessage]) -> AIMessage:
        results = {m.name: m.text for m in messages if isinstance(m, ToolMessage)}
        if not results:
            return AIMessage(
                "",
                tool_calls=[
                    {"name": "recall", "args": {"query": "a red box"}, "id": "call_1"},
                    {"name": "timeline", "args": {"since": "1h"}, "id": "call_2"},
                ],
            )
        seen = re.search(r"- (\S+ \(video [\d:.]+\)) .*red box", results["recall"])
        span = re.search(r"red box.*\(video ([\d:.]+)–[\d:.]+\)", results["timeline"])
        assert seen and span, results
        return AIMessage(
            f"The red box appeared at {seen.group(1)}; its episode began at video {span.group(1)}."
        )

    with assistant(memory_db, script) as (agent, chat):
        reply = agent.ask("When did the red box appear?")
    assert "(video 0:05.0)" in reply and "episode began at video 0:05.0" in reply
    system, question = chat.seen[0][0], chat.seen[0][-1]
    assert isinstance(system, SystemMessage) and "Latest observations of" not in system.text
    assert isinstance(question, HumanMessage) and question.text.endswith(
        "Question: When did the red box appear?"
    )
    log = question.text.split("<scene_data>")[1].split("</scene_data>")[0]
    assert "Latest observations of" in log
    assert '(video 0:12.0): "an empty textured scene"' in log
    assert "recalled for the question" in log
    assert "(video 0:05.0) [" in log.split("recalled for the question")[1]


def test_what_changed_sends_two_images(memory_db: Path) -> None:
    vision = ScriptedBackend(lambda request: f"{len(request.images)} pictures: the box is gone")
    script = after_tool(call("compare"), lambda result: f"Since then: {result.text}")
    with assistant(memory_db, script, vision) as (agent, _):
        reply = agent.ask("What changed since the last frame?")
    request: VisionRequest = vision.requests[-1]
    assert len(request.images) == 2
    text = " ".join(part["text"] for part in request.messages[0]["content"] if part["type"] == "text")
    assert text.startswith("Picture 1: Picture 2:") and "(video 0:05.0)" in text
    assert "2 pictures: the box is gone" in reply and "(video 0:12.0)" in reply


def test_look_at_a_time_in_the_file_and_narrate(memory_db: Path) -> None:
    def vision(request: VisionRequest) -> str:
        return describe(request) if request.images else "A red box came at 0:05 and left at 0:12."

    def script(messages: list[BaseMessage]) -> AIMessage:
        results = [m.text for m in messages if isinstance(m, ToolMessage)]
        if results:
            return AIMessage(" // ".join(results))
        return AIMessage(
            "",
            tool_calls=[
                {"name": "look", "args": {"at_s": 6.0}, "id": "call_1"},
                {"name": "narrate", "args": {"since": "1h"}, "id": "call_2"},
            ],
        )

    backend = ScriptedBackend(vision)
    with assistant(memory_db, script, backend) as (agent, _):
        reply = agent.ask("Is the box there at 6 s, and what happened?")
    look, story = reply.split(" // ")
    assert "(video 0:06.0)" in look and "a red box in the middle" in look
    assert "3 episodes" in story and "A red box came at 0:05 and left at 0:12." in story
    assert sorted(len(request.images) for request in backend.requests) == [0, 1]


def test_a_failing_tool_comes_back_as_an_error_message(memory_db: Path) -> None:
    script = after_tool(call("look", source="missing.mp4"), lambda result: f"Sorry: {result.text}")
    with assistant(memory_db, script) as (agent, chat):
        reply = agent.ask("What does missing.mp4 show?")
        error = next(m for m in agent.messages if isinstance(m, ToolMessage))
    assert error.status == "error" and "no source missing.mp4" in error.text
    assert len(chat.seen) == 2 and reply.startswith("Sorry: Error: look failed")


def test_a_second_turn_sees_the_first(memory_db: Path) -> None:
    def script(messages: list[BaseMessage]) -> AIMessage:
        questions = [m.text.rsplit("Question: ", 1)[-1] for m in messages if isinstance(m, HumanMessage)]
        return AIMessage(f"you asked: {' | '.join(questions)}")

    with assistant(memory_db, script) as (agent, _):
        agent.ask("Is the box there?")
    with assistant(memory_db, script) as (agent, _):  # a new process would open the same thread
        reply = "".join(agent.stream("And now?"))
    assert reply == "you asked: Is the box there? | And now?"


def test_the_conversation_is_trimmed_to_the_budget(memory_db: Path) -> None:
    def script(messages: list[BaseMessage]) -> AIMessage:
        return AIMessage(f"{len(messages)} messages")

    with assistant(memory_db, script, agent_token_budget=500) as (agent, chat):
        agent.ask("x " * 800)
        agent.ask("short question")
        assert len(agent.messages) == 4
    assert [type(m) for m in chat.seen[-1]] == [SystemMessage, HumanMessage]


def test_call_limit_ends_the_run(memory_db: Path) -> None:
    def script(messages: list[BaseMessage]) -> AIMessage:
        return call("recall", query="box")

    with assistant(memory_db, script, agent_max_calls=2) as (agent, chat):
        reply = agent.ask("loop forever")
    assert len(chat.seen) == 2 and "limit" in reply


def test_no_observations_is_a_clear_error(tmp_path: Path) -> None:
    from agent.core.errors import ScenewatchError

    Store(tmp_path / "empty.db").close()
    settings = Settings(db=tmp_path / "empty.db")
    with (
        pytest.raises(ScenewatchError, match="no observations in"),
        open_assistant(settings, engine=ScriptedBackend()),
    ):
        pass
