"""Rules over what the detector saw: the sources section (zones, gate options), counts per class,
entries, exits, dwell time and zone occupancy; observations that store detections and tracks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.core.config import Settings, load_settings
from agent.core.errors import ScenewatchError
from agent.events.rule_engine import RuleEngine, observation_context
from agent.events.ruleset import SourceRules, parse_rules
from memory.events import Outbox
from memory.observation import Observation
from memory.store import Store

T0 = 1_700_000_000.0

RULES = """\
sources:
  shop.mp4:
    zones:
      door: [[0.16, 0.33], [0.52, 0.33], [0.52, 1.0], [0.16, 1.0]]
      till: [[400, 0], [640, 0], [640, 200]]
    gate: {only_while: [person, car], pixels: false, heartbeat: 30s, threshold: 0.02}
    text: true
  driveway_cam:
    zones:
      driveway: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]
sinks: {log: {type: jsonl, path: events.jsonl}}
rules:
  waiting_at_the_door:
    when: "'person' in zone_door"
    for: 30s
  car_at_night:
    when: "'car' in zone_driveway and hour >= 22"
  crowd:
    when: "count_person >= 3"
  someone_left:
    when: "'person' in exited"
  lingering:
    when: "dwell_s >= 60"
"""


def person(track: int | None, box: list[int], score: float = 0.9) -> dict[str, object]:
    item: dict[str, object] = {"label": "person", "score": score, "box": box}
    if track is not None:
        item["track"] = track
    return item


def track(
    number: int, first: float, last: float, state: str, zones: list[str] | None = None
) -> dict[str, object]:
    return {"track": number, "label": "person", "first_ts": first, "last_ts": last, "state": state,
            "zones": zones or []}  # fmt: skip


def test_the_sources_section_parses_zones_and_gate_options() -> None:
    rules = parse_rules(RULES, name="r.yaml")
    shop = rules.sources["shop.mp4"]
    assert shop == SourceRules(
        zones={
            "door": ((0.16, 0.33), (0.52, 0.33), (0.52, 1.0), (0.16, 1.0)),
            "till": ((400, 0), (640, 0), (640, 200)),
        },
        only_while=("person", "car"),
        pixels=False,
        heartbeat_s=30.0,
        threshold=0.02,
        text=True,
    )
    assert rules.sources["driveway_cam"].only_while == () and rules.sources["driveway_cam"].pixels


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("only_while: [person, car]", "only_while: [persons]", "line 6: sources.shop.mp4.gate.only_while: "
         "the detector knows no class 'persons'"),
        ("till: [[400, 0], [640, 0], [640, 200]]", "till: [[400, 0], [640, 0]]",
         "zone till needs at least 3 points"),
        ("heartbeat: 30s", "heartbeat: soon", "not a duration"),
        ("pixels: false", "pixel: false", "unknown field 'pixel' (did you mean 'pixels'?)"),
        ("    text: true", "    txt: true", "unknown field 'txt' (did you mean 'text'?)"),
        ("'person' in zone_door", "'person' in zone_dor", "did you mean 'zone_door'?"),
        ("count_person >= 3", "count_persons >= 3", "did you mean 'count_person'?"),
    ],
)  # fmt: skip
def test_mistakes_in_the_sources_section_name_their_line(old: str, new: str, expected: str) -> None:
    assert old in RULES
    with pytest.raises(ScenewatchError) as caught:
        parse_rules(RULES.replace(old, new), name="r.yaml")
    assert str(caught.value).startswith("r.yaml, line ") and expected in str(caught.value)


def test_the_context_counts_classes_and_knows_entries_exits_dwell_and_zones() -> None:
    obs = Observation(
        source="shop.mp4",
        ts=T0 + 100,
        detections=[person(3, [100, 100, 150, 300]), person(None, [400, 0, 430, 80]),
                    {"label": "car", "score": 0.8, "box": [0, 200, 200, 360], "track": 4}],
        tracks=[track(3, T0 + 30, T0 + 100, "present", ["door"]), track(5, T0 + 95, T0 + 100, "entered"),
                track(2, T0 + 10, T0 + 60, "left")],
    )  # fmt: skip
    context = observation_context(obs, {})
    assert context["detected"] == ["person", "person", "car"]
    assert (context["count_person"], context["count_car"], context["count_traffic_light"]) == (2, 1, 0)
    assert context["entered"] == ["person"] and context["exited"] == ["person"]
    assert context["dwell_s"] == pytest.approx(70.0) and context["zone_door"] == ["person"]
    blind = observation_context(Observation(source="shop.mp4", ts=T0), {})
    assert blind["detected"] is None and blind["dwell_s"] is None and blind.get("count_person") is None


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[RuleEngine, Store]]:
    store = Store(tmp_path / "scenewatch.db")
    settings: Settings = load_settings(events_backoff_s=0.05, events_close_s=1.0)
    rule_engine = RuleEngine(parse_rules(RULES, base=tmp_path), store, settings)
    yield rule_engine, store
    rule_engine.close()
    store.close()


def observe(
    engine: RuleEngine, store: Store, offset: float, zones: list[str], source: str = "shop.mp4"
) -> None:
    first = T0 + 5
    obs = Observation(
        source=source,
        ts=T0 + offset,
        detections=[person(1, [200, 150, 260, 350])],
        tracks=[track(1, first, T0 + offset, "present", zones)],
    )
    store.add(obs)
    engine.on_observation(obs)


def test_a_person_in_zone_door_for_30_s(engine: tuple[RuleEngine, Store]) -> None:
    rule_engine, store = engine
    for offset in (5, 20, 30):
        observe(rule_engine, store, offset, ["door"])
    observe(rule_engine, store, 32, [])  # stepped out of the zone: the hold starts again
    for offset in (40, 60, 71):
        observe(rule_engine, store, offset, ["door"])
    fired = [event["ts"] - T0 for event in Outbox(store).events(rule="waiting_at_the_door")]
    assert fired == [71.0]
    lingering = [event["ts"] - T0 for event in Outbox(store).events(rule="lingering")]
    assert lingering == [71.0]  # in view since 5 s: 66 s by then


def test_no_zone_and_no_detector_never_match(engine: tuple[RuleEngine, Store]) -> None:
    rule_engine, store = engine
    blind = Observation(source="shop.mp4", ts=T0 + 200)  # a frame no detector looked at
    store.add(blind)
    rule_engine.on_observation(blind)
    events, _ = rule_engine.evaluate(
        Observation(source="driveway_cam", ts=T0 + 201, detections=[], tracks=[])
    )
    assert events == [] and Outbox(store).events() == []


def test_observations_keep_detections_tracks_and_text(tmp_path: Path) -> None:
    store = Store(tmp_path / "scenewatch.db")
    obs = Observation(
        source="shop.mp4",
        ts=T0,
        detections=[person(3, [1, 2, 3, 4])],
        tracks=[track(3, T0 - 2, T0, "entered", ["door"])],
        text=["OPEN", "E-104"],
    )
    store.add(obs)
    store.add(Observation(source="shop.mp4", ts=T0 + 1))
    again, plain = store.recent("shop.mp4", 2)
    assert (
        again.detections == obs.detections and again.tracks == obs.tracks and again.text == ["OPEN", "E-104"]
    )
    assert plain.detections is None and plain.tracks is None and plain.text is None
    assert again.to_dict()["detections"] == [
        {"label": "person", "score": 0.9, "box": [1, 2, 3, 4], "track": 3}
    ]
    store.close()


OLD_SCHEMA = """CREATE TABLE observations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, ts REAL NOT NULL, video_t REAL,
    summary TEXT NOT NULL DEFAULT '', people INTEGER, objects TEXT NOT NULL DEFAULT '[]',
    actions TEXT NOT NULL DEFAULT '[]', changes TEXT NOT NULL DEFAULT '', answers TEXT NOT NULL DEFAULT '{}',
    raw TEXT NOT NULL DEFAULT '', parsed INTEGER NOT NULL DEFAULT 1, gate_score REAL, latency_ms REAL,
    thumb_path TEXT, model TEXT NOT NULL DEFAULT '', episode_id INTEGER, indexed INTEGER NOT NULL DEFAULT 0
)"""
"""The observations table as scenewatch created it before the detector."""


def test_an_older_database_gets_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_SCHEMA)
        conn.execute("INSERT INTO observations (source, ts, summary) VALUES ('cam', 1.0, 'an old one')")
    store = Store(path)
    (old,) = store.recent("cam", 5)
    assert old.summary == "an old one" and old.detections is None
    store.add(Observation(source="cam", ts=2.0, detections=[], tracks=[]))
    assert store.recent("cam", 1)[0].detections == []
    store.close()
    assert Store(path).count() == 2  # opening it again changes nothing
