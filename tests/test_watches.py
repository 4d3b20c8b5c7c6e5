"""Watches from the agent: "tell me when a package is left at the door" becomes a watch question and a
rule on a running source, checked with the rules parser, stored, listed and removable."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from test_assistant import ScriptedChat

from agent.assistant.agent import open_assistant
from agent.core.config import Settings, load_settings
from agent.core.errors import ScenewatchError
from agent.events.rule_engine import RuleEngine
from agent.events.ruleset import RuleSet, StateChanges, watch_rule
from agent.events.watchlist import Watchlist, question_name
from agent.pipeline.watch import run_watch
from agent.sources import Frame, source_name
from memory.events import Outbox
from memory.observation import Observation
from memory.store import Store
from memory.watches import add_watch, get_watch, list_watches, remove_watch
from tools.vision.base import VisionRequest
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

QUESTION = "Is a package lying at the door?"


def answer(request: VisionRequest) -> str:
    """The scripted vision model: the clip's red box (5 s to 12 s) is the package; it answers every
    watch question the prompt asks, keyed by name, as the describe prompt wants."""
    prompt = request.messages[-1]["content"][-1]["text"]
    asked = [line[2:].split(":")[0] for line in prompt.splitlines() if line.startswith("- ") and "?" in line]
    image = np.asarray(request.images[0].convert("RGB"))
    red, green, _ = image[image.shape[0] // 2, image.shape[1] // 2].astype(int)
    box = bool(red > 180 and green < 80)
    return json.dumps(
        {
            "summary": "a package by the door" if box else "an empty doorstep",
            "people": 0,
            "answers": dict.fromkeys(asked, box),
        }
    )


def call(**args: Any) -> AIMessage:
    """The chat model's turn that calls the ``watch`` tool."""
    return AIMessage("", tool_calls=[{"name": "watch", "args": args, "id": "call_watch"}])


def ruleset(log: Path) -> RuleSet:
    """A service's rules with no rules of their own: one JSONL sink that watches' events go to."""
    return RuleSet({}, {"log": {"type": "jsonl", "path": str(log)}}, (), StateChanges())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(db=tmp_path / "scenewatch.db", every_s=1.0, heartbeat_s=1.0, events_close_s=2.0)


@pytest.fixture
def door(settings: Settings, synthetic_clip: Path) -> Iterator[Store]:
    """The store with one observation of the clip, so the agent has a source to talk about."""
    store = Store(settings.db_path)
    store.add(Observation(source=source_name(str(synthetic_clip)), ts=1000.0, video_t=0.0, summary="a door"))
    yield store
    store.close()


def agent_sets(
    watches: Watchlist, settings: Settings, script: Callable[[list[BaseMessage]], AIMessage]
) -> str:
    """What the agent answers "tell me when a package is left at the door", its tool calls scripted."""
    chat = ScriptedChat(script=script)
    with (
        Engine(ScriptedBackend(default="nothing"), batch_wait_ms=0) as engine,
        open_assistant(settings, engine=engine, chat_model=chat, thread="w", watches=watches) as assistant,
    ):
        return assistant.ask("Tell me when a package is left at the door")


def reply_with_tool_result(first: AIMessage) -> Callable[[list[BaseMessage]], AIMessage]:
    def script(messages: list[BaseMessage]) -> AIMessage:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        return AIMessage(f"{results[-1].status}: {results[-1].text}") if results else first

    return script


def test_the_agent_sets_a_watch_that_fires_on_the_running_source(
    settings: Settings, door: Store, synthetic_clip: Path, tmp_path: Path
) -> None:
    clip = source_name(str(synthetic_clip))
    rule_engine = RuleEngine(ruleset(tmp_path / "events.jsonl"), door, settings)
    watches = Watchlist(door, rule_engine, sources=lambda: [clip])
    wanted = call(question=QUESTION, name="package_at_door", when="package_at_door and people == 0")
    reply = agent_sets(watches, settings, reply_with_tool_result(wanted))
    assert reply.startswith("success: Watch 1 set on " + clip)
    assert "'Is a package lying at the door?'" in reply and "It is running now." in reply
    assert rule_engine.questions == {"package_at_door": QUESTION}
    [watch] = watches.list()
    assert (watch.name, watch.predicate, watch.hold, watch.active) == (
        "package_at_door",
        "package_at_door and people == 0",
        "1 observation",
        True,
    )

    backend = ScriptedBackend(answer)
    with Engine(backend, batch_wait_ms=0) as engine:
        run_watch(
            [clip],
            settings,
            engine=engine,
            store=door,
            questions=rule_engine.questions,
            listeners=[rule_engine],
        )
    assert all(QUESTION in r.messages[-1]["content"][-1]["text"] for r in backend.requests)
    [event] = Outbox(door).events()
    assert event["rule"] == "package_at_door" and event["source"] == clip
    assert event["payload"]["observation"]["video_t"] == 5.0
    assert json.loads((tmp_path / "events.jsonl").read_text())["id"] == event["id"]


def test_a_bad_predicate_goes_back_to_the_model_and_nothing_is_stored(
    settings: Settings, door: Store, synthetic_clip: Path
) -> None:
    rule_engine = RuleEngine(ruleset(settings.home / "e.jsonl"), door, settings)
    watches = Watchlist(door, rule_engine, sources=lambda: [source_name(str(synthetic_clip))])
    wanted = call(question=QUESTION, name="package", when="package and colour == 'brown'")
    reply = agent_sets(watches, settings, reply_with_tool_result(wanted))
    assert reply.startswith(
        "error: Error: watch failed: when \"package and colour == 'brown'\": unknown name"
    )
    assert "colour" in reply
    assert watches.list() == [] and rule_engine.questions == {} and rule_engine.ruleset.rules == ()
    rule_engine.close()


def test_without_a_service_a_watch_is_stored_and_starts_with_the_next_one(
    settings: Settings, door: Store, synthetic_clip: Path, tmp_path: Path
) -> None:
    clip = source_name(str(synthetic_clip))
    chat_reply = agent_sets(
        Watchlist(door), settings, reply_with_tool_result(call(question=QUESTION, hold="2 observations"))
    )
    assert f"It is stored and starts when `scenewatch serve` watches {clip}." in chat_reply
    [watch] = list_watches(door)
    assert (watch.name, watch.predicate, watch.hold) == (
        "package_lying_door",
        "package_lying_door",
        "2 observations",
    )
    with pytest.raises(ScenewatchError, match="no source /etc/hostname"):  # only watched or named sources
        Watchlist(door).add(source="/etc/hostname", question=QUESTION)
    named, _ = Watchlist(door, named=["rtsp://cam/1"]).add(
        source="rtsp://cam/1", question="Is the gate open?"
    )
    assert named.source == "rtsp://cam/1"
    remove_watch(door, named.id)

    rule_engine = RuleEngine(ruleset(tmp_path / "events.jsonl"), door, settings)
    service = Watchlist(door, rule_engine, sources=lambda: [clip])
    assert service.start() == [watch] and service.start() == []
    assert rule_engine.questions == {"package_lying_door": QUESTION}
    with Engine(ScriptedBackend(answer), batch_wait_ms=0) as engine:
        run_watch(
            [clip],
            settings,
            engine=engine,
            store=door,
            questions=rule_engine.questions,
            listeners=[rule_engine],
        )
    [event] = Outbox(door).events()
    assert event["rule"] == "package_lying_door" and event["payload"]["observation"]["video_t"] == 6.0


def test_a_watch_added_during_the_watch_is_asked_from_the_next_frame(
    settings: Settings, door: Store, synthetic_clip: Path
) -> None:
    clip = source_name(str(synthetic_clip))
    rule_engine = RuleEngine(ruleset(settings.home / "e.jsonl"), door, settings)
    watches = Watchlist(door, rule_engine, sources=lambda: [clip])
    added = threading.Event()

    def on_frame(source: str, frame: Frame) -> None:
        if frame.video_t == 3.0:
            watches.add(source=source, question=QUESTION)
            added.set()

    backend = ScriptedBackend(answer)
    with Engine(backend, batch_wait_ms=0) as engine:
        run_watch(
            [clip],
            settings,
            engine=engine,
            store=door,
            questions=rule_engine.questions,
            listeners=[rule_engine],
            on_frame=on_frame,
        )
    assert added.is_set()
    asked = {
        obs.video_t: "package_lying_door" in obs.answers for obs in door.between() if obs.video_t is not None
    }
    assert asked[0.0] is False and asked[3.0] is True and all(asked[t] for t in asked if t >= 3.0)
    assert [event["rule"] for event in Outbox(door).events()] == ["package_lying_door"]


def test_removing_a_watch_stops_its_rule_and_its_question(settings: Settings, door: Store) -> None:
    rule_engine = RuleEngine(ruleset(settings.home / "e.jsonl"), door, settings)
    watches = Watchlist(door, rule_engine, sources=lambda: ["cam"])
    watch, started = watches.add(
        source="cam", question="Is the gate open?", name="gate_open", severity="info"
    )
    assert started and rule_engine.rule_states("cam") == {"gate_open": False}
    assert rule_engine.rule_states("other") == {}
    with pytest.raises(ScenewatchError, match="the name gate_open is taken"):
        watches.add(source="cam", question="Is the gate shut?", name="gate_open")
    with pytest.raises(ScenewatchError, match="not watched by the service"):
        watches.add(source="porch", question="Is the gate shut?")
    assert watches.remove(watch.id) == watch
    assert rule_engine.ruleset.rules == () and rule_engine.questions == {}
    assert watches.list() == [] and [w.active for w in watches.list(removed=True)] == [False]
    with pytest.raises(ScenewatchError, match=f"no active watch with id {watch.id}"):
        watches.remove(watch.id)
    again, _ = watches.add(source="cam", question="Is the gate open?", name="gate_open")
    assert again.id != watch.id and rule_engine.questions == {"gate_open": "Is the gate open?"}
    rule_engine.close()


def test_the_watches_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.db")
    fields: dict[str, Any] = {"predicate": "door", "hold": "30s", "severity": "info"}
    first = add_watch(store, source="cam", name="door", question="Door open?", now=100.0, **fields)
    second = add_watch(store, source="porch", name="bell", question="Bell?", now=200.0, **fields)
    with pytest.raises(ScenewatchError, match="a watch called door already exists"):
        add_watch(store, source="porch", name="door", question="Door?", **fields)
    assert list_watches(store) == [first, second] and list_watches(store, source="porch") == [second]
    assert first.to_dict()["time"] == "1970-01-01T00:01:40+00:00"
    assert remove_watch(store, first.id) == first and remove_watch(store, first.id) is None
    assert get_watch(store, first.id).active is False  # type: ignore[union-attr]
    assert list_watches(store) == [second] and len(list_watches(store, removed=True)) == 2
    store.close()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"when": "pkg and"}, "when 'pkg and': invalid syntax"),
        ({"when": "people > 0"}, "does not use the answer to the question; name it pkg"),
        ({"when": "pkg and other"}, "unknown name 'other'"),
        ({"hold": "3"}, "for '3': 'for: 3' is ambiguous"),
        ({"severity": "loud"}, "severity 'loud'"),
        ({"name": "people"}, "name 'people' is reserved"),
        ({"name": "2nd"}, "name '2nd': use letters"),
    ],
)
def test_watch_rules_are_checked_as_rules_files_are(args: dict[str, str], error: str) -> None:
    options = {"name": "pkg", **args}
    with pytest.raises(ScenewatchError, match=error.replace("(", r"\(").replace(")", r"\)")):
        watch_rule(options.pop("name"), "Package?", source="cam", **options)
    rule = watch_rule("pkg", "Package?", source="cam", when="pkg and other", questions=["other"], hold="30s")
    assert (rule.when.text, rule.hold.seconds, rule.source) == ("pkg and other", 30.0, "cam")


def test_question_names() -> None:
    assert question_name(QUESTION) == "package_lying_door"
    assert question_name("Is someone at the till?", taken=["someone_till"]) == "someone_till_2"
    assert question_name("Is 1 car parked?") == "watch_1_car_parked"
    assert question_name("???") == "watch"
