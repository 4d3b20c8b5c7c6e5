"""The rules engine over scripted observations: holds, cooldowns, observation time, state changes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from agent.core.config import Settings, load_settings
from agent.core.errors import ScenewatchError
from agent.events.rule_engine import RuleEngine
from agent.events.ruleset import parse_rules
from memory.events import NewEvent, Outbox
from memory.observation import Observation
from memory.store import Store

T0 = 1_700_000_000.0

RULES = """\
questions: {lights_on: "Are the lights on?"}
sinks: {log: {type: jsonl, path: events.jsonl}}
state_changes: {episodes: true, changes: true, sinks: [log]}
rules:
  lit_and_empty:
    when: "lights_on and people == 0"
    for: 3 observations
    cooldown: 60s
    message: "lights on, nobody at $source"
  lit_for_half_a_minute:
    when: "lights_on"
    for: 30s
    sinks: []
"""


@pytest.fixture
def settings() -> Settings:
    return load_settings(events_backoff_s=0.05, events_backoff_max_s=0.2, events_close_s=2.0)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "scenewatch.db")


@pytest.fixture
def engine(tmp_path: Path, store: Store, settings: Settings) -> Iterator[RuleEngine]:
    rule_engine = RuleEngine(parse_rules(RULES, base=tmp_path), store, settings)
    yield rule_engine
    rule_engine.close()


def feed(engine: RuleEngine, store: Store, *states: tuple[float, bool, int], source: str = "office") -> None:
    """Commit one observation per (seconds after T0, lights on, people), then tell the engine."""
    for offset, lights, people in states:
        obs = Observation(source=source, ts=T0 + offset, people=people, answers={"lights_on": lights})
        store.add(obs)
        engine.on_observation(obs)


def fired(store: Store, rule: str) -> list[float]:
    return [event["ts"] - T0 for event in Outbox(store).events(rule=rule)]


def test_fires_once_after_three_observations_not_two(engine: RuleEngine, store: Store) -> None:
    feed(engine, store, (0, True, 0), (1, True, 0), (2, False, 0))
    assert fired(store, "lit_and_empty") == []
    feed(engine, store, (3, True, 0), (4, True, 0), (5, True, 0), (6, True, 0), (7, True, 0))
    assert fired(store, "lit_and_empty") == [5]
    event = Outbox(store).events(rule="lit_and_empty")[0]
    assert (event["kind"], event["severity"], event["message"]) == (
        "rule",
        "warning",
        "lights on, nobody at office",
    )
    assert event["payload"]["held_observations"] == 3 and event["observation_id"] is not None


def test_cooldown_suppresses_a_repeat_until_it_passes(engine: RuleEngine, store: Store) -> None:
    feed(engine, store, (0, True, 0), (1, True, 0), (2, True, 0), (3, True, 2))  # fires at 2
    feed(engine, store, (10, True, 0), (11, True, 0), (12, True, 0), (13, True, 0))  # holds, cooling down
    assert fired(store, "lit_and_empty") == [2]
    feed(engine, store, (62, True, 0), (70, True, 0))  # still holding when the cooldown ends at 62
    assert fired(store, "lit_and_empty") == [2, 62]


def test_sources_are_held_separately(engine: RuleEngine, store: Store) -> None:
    feed(engine, store, (0, True, 0), (1, True, 0), source="a")
    feed(engine, store, (2, True, 0), source="b")
    feed(engine, store, (3, True, 0), source="a")
    assert [e["source"] for e in Outbox(store).events(rule="lit_and_empty")] == ["a"]


def test_time_hold_counts_observation_time_not_wall_time(engine: RuleEngine, store: Store) -> None:
    # Fed in a few milliseconds of wall time, spaced 10 s apart in observation time.
    feed(engine, store, (0, True, 5), (10, True, 5), (20, True, 5))
    assert fired(store, "lit_for_half_a_minute") == []
    feed(engine, store, (30, True, 5), (40, True, 5))
    assert fired(store, "lit_for_half_a_minute") == [30]
    feed(engine, store, (50, False, 5), (55, True, 5), (80, True, 5), (85, True, 5))
    assert fired(store, "lit_for_half_a_minute") == [30, 85]


def test_state_changes_from_episodes_and_changes(tmp_path: Path, engine: RuleEngine, store: Store) -> None:
    script = [(1, ""), (1, "none"), (2, "A person walked in."), (2, "No change."), (3, "nothing")]
    for offset, (episode, changes) in enumerate(script):
        obs = Observation(
            source="door", ts=T0 + offset, summary=f"s{offset}", changes=changes, episode_id=episode
        )
        store.add(obs)
        engine.on_observation(obs)
    engine.close()
    episodes = Outbox(store).events(rule="episode")
    assert [e["payload"]["episode_id"] for e in episodes] == [1, 2, 3]
    assert [e["payload"]["previous_episode_id"] for e in episodes] == [None, 1, 2]
    assert {e["kind"] for e in episodes} == {"state_change"}
    assert [e["message"] for e in Outbox(store).events(rule="changes")] == ["A person walked in."]
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(line["rule"], line["ts"] - T0) for line in lines] == [
        ("episode", 0),
        ("episode", 2),
        ("changes", 2),
        ("episode", 4),
    ]
    assert Outbox(store).pending() == 0


def test_episode_seen_before_a_restart_is_not_new(tmp_path: Path, store: Store, settings: Settings) -> None:
    store.add(Observation(source="door", ts=T0, episode_id=7))
    engine = RuleEngine(parse_rules(RULES, base=tmp_path), store, settings)
    obs = Observation(source="door", ts=T0 + 1, episode_id=7)
    store.add(obs)
    engine.on_observation(obs)
    engine.close()
    assert Outbox(store).events(rule="episode") == []


def test_odd_answers_never_raise(engine: RuleEngine, store: Store) -> None:
    obs = Observation(source="office", ts=T0, parsed=False, answers={"lights_on": "maybe"})  # type: ignore[dict-item]
    store.add(obs)
    engine.on_observation(obs)
    assert fired(store, "lit_for_half_a_minute") == []


def test_missing_webhook_secret_stops_the_start(tmp_path: Path, store: Store, settings: Settings) -> None:
    rules = parse_rules(
        "sinks: {hook: {type: webhook, url: 'http://127.0.0.1:9', secret_env: NO_SUCH_SECRET_X}}"
    )
    with pytest.raises(ScenewatchError, match="NO_SUCH_SECRET_X"):
        RuleEngine(rules, store, settings)


def fail_first_record(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Make the outbox's first commit fail as a locked database does; returns each call's rules."""
    calls: list[list[str]] = []
    record = Outbox.record

    def flaky(outbox: Outbox, events: Sequence[NewEvent], now: float | None = None) -> list[int]:
        calls.append([event.rule for event in events])
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return record(outbox, events, now)

    monkeypatch.setattr(Outbox, "record", flaky)
    return calls


def test_event_lost_to_a_failed_commit_fires_on_the_next_observation(
    engine: RuleEngine, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fail_first_record(monkeypatch)
    feed(engine, store, (0, True, 0), (1, True, 0), (2, True, 0))  # fires at 2; the commit fails
    assert calls == [["lit_and_empty"]] and fired(store, "lit_and_empty") == []
    feed(engine, store, (3, True, 0))
    assert fired(store, "lit_and_empty") == [3]
    feed(engine, store, (4, True, 0), (5, True, 0), (6, True, 0))
    assert fired(store, "lit_and_empty") == [3]  # exactly once
    assert calls == [["lit_and_empty"], ["lit_and_empty"]]


def test_new_episode_lost_to_a_failed_commit_after_a_restart(
    tmp_path: Path, store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add(Observation(source="door", ts=T0, episode_id=7))
    engine = RuleEngine(parse_rules(RULES, base=tmp_path), store, settings)
    calls = fail_first_record(monkeypatch)
    for offset in (1, 2, 3):
        obs = Observation(source="door", ts=T0 + offset, episode_id=8)
        store.add(obs)
        engine.on_observation(obs)
    engine.close()
    assert calls == [["episode"], ["episode"]]
    [event] = Outbox(store).events(rule="episode")
    assert (event["ts"] - T0, event["payload"]["previous_episode_id"]) == (2, 7)
