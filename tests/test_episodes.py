"""Episodes: merging equal states, splitting on change, the timeline."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent.core.config import Settings
from agent.core.durations import format_duration
from memory.episodes import EPISODES_SCHEMA, EpisodeTracker, episodes_between
from memory.observation import Observation
from memory.store import Store
from memory.timeline import timeline

EMPTY = "An empty office with a desk and a chair."
TYPING = "A man in a blue shirt is typing at the desk."
# (ts, summary, people, lights on, parsed, the episode it belongs to)
SCRIPT = [
    (0, EMPTY, 0, True, True, 1),
    (10, "The office is empty, with a desk and a chair.", 0, True, True, 1),  # same meaning
    (20, "An empty office: a desk, a chair and a lamp.", 0, True, True, 1),
    (30, "A dog sleeps on the carpet of the empty office.", 0, True, True, 2),  # new meaning
    (40, "A man in a blue shirt sits at the desk, typing.", 1, True, True, 3),  # a person came
    (50, TYPING, 1, True, True, 3),
    (60, TYPING, 1, False, True, 4),  # a watch answer changed
    (70, TYPING, 2, False, True, 5),  # the people count changed
    (500, TYPING, 2, False, True, 6),  # after a long silence
    (510, TYPING, None, None, False, 6),  # unparsed, but the same text
    (520, "<garbled ### output", None, None, False, 7),  # unparsed and different
]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "db.sqlite")
    yield store
    store.close()


def _observe(
    store: Store, tracker: EpisodeTracker, source: str, ts: float, text: str, **fields
) -> Observation:
    parsed = fields.pop("parsed", True)
    obs = Observation(source=source, ts=ts, summary=text if parsed else "", raw=text, parsed=parsed, **fields)
    store.add(obs)
    tracker.on_observation(obs)
    return obs


def test_episodes_merge_and_split_at_the_right_places(store: Store) -> None:
    tracker = EpisodeTracker(store, Settings(episode_similarity=0.8, episode_gap_s=120))
    assigned = []
    for ts, summary, people, lights, parsed, _ in SCRIPT:
        answers = {} if lights is None else {"lights_on": lights}
        obs = _observe(store, tracker, "office", ts, summary, people=people, answers=answers, parsed=parsed)
        assigned.append(obs.episode_id)
        if ts in (10, 40):  # another source in between does not break this one's episodes
            _observe(store, tracker, "door", ts + 1, "A closed front door.", people=0)
    ordinal = {episode: n for n, episode in enumerate(dict.fromkeys(assigned), start=1)}
    assert [ordinal[episode] for episode in assigned] == [step[-1] for step in SCRIPT]
    assert [obs.episode_id for obs in store.between(source="office")] == assigned  # stored too
    episodes = episodes_between(store, source="office")
    # A state lasts until the next one is first seen (the gate skipped unchanged frames in
    # between), except across a gap longer than episode_gap_s (70 -> 500): the watch was down.
    assert [(ep.start_ts, ep.end_ts, ep.observations) for ep in episodes] == [
        (0, 30, 3),
        (30, 40, 1),
        (40, 60, 2),
        (60, 70, 1),
        (70, 70, 1),
        (500, 520, 2),
        (520, 520, 1),
    ]
    assert (
        episodes[0].summary == EMPTY
        and episodes[0].people == 0
        and episodes[0].answers == {"lights_on": True}
    )
    assert [ep.closed for ep in episodes] == [True] * 6 + [False]
    door = episodes_between(store, source="door")
    assert len(door) == 1 and door[0].observations == 2
    tracker.close()
    assert all(ep.closed for ep in episodes_between(store))


def test_a_new_tracker_closes_what_an_earlier_run_left_open(store: Store) -> None:
    first = EpisodeTracker(store, Settings())
    _observe(store, first, "office", 0, EMPTY, people=0)  # the process dies without close()
    second = EpisodeTracker(store, Settings())
    obs = _observe(store, second, "office", 5, EMPTY, people=0)
    episodes = episodes_between(store)
    assert len(episodes) == 2 and episodes[0].closed and obs.episode_id == episodes[1].id


def test_timeline_lists_episodes_and_events_in_time_order(store: Store) -> None:
    tracker = EpisodeTracker(store, Settings())
    for ts, text, people in ((100, EMPTY, 0), (160, EMPTY, 0), (400, TYPING, 1), (460, TYPING, 1)):
        changes = "a man came in" if ts == 400 else ""
        _observe(store, tracker, "office", ts, text, people=people, changes=changes)
    assert [entry.kind for entry in timeline(store)] == ["episode", "episode"]  # no events table yet
    store.ensure_schema(
        "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, ts REAL, source TEXT, rule TEXT, "
        "kind TEXT, severity TEXT, message TEXT)"
    )
    store.execute(
        "INSERT INTO events (ts, source, rule, kind, severity, message) VALUES (?, ?, ?, ?, ?, ?)",
        (400.0, "office", "person_seen", "state", "info", "someone is in the office"),
    )
    entries = timeline(store, since=150, until=1000)
    assert [(e.kind, e.start, e.end) for e in entries] == [
        ("episode", 100, 160),
        ("episode", 400, 460),
        ("event", 400, 400),
    ]
    assert entries[1].changes == "a man came in" and entries[1].detail == "people 1"
    assert format_duration(entries[0].duration_s) == "1m 00s"
    assert timeline(store, since=200, until=300) == []
    assert [e.kind for e in timeline(store, since=450, source="office")] == ["episode"]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 45, 200, 7500, 3 * 86400 + 4 * 3600)] == [
        "0s",
        "45s",
        "3m 20s",
        "2h 05m",
        "3d 4h",
    ]


def _brute_force(
    episodes: list[tuple[str, float, float]], since: float, until: float | None, source: str | None
) -> list[int]:
    """The ids (1-based, in insertion order) of the episodes overlapping the range, oldest first."""
    found = [
        (start, index + 1)
        for index, (name, start, end) in enumerate(episodes)
        if end >= since and (until is None or start <= until) and source in (None, name)
    ]
    return [index for _, index in sorted(found)]


def test_episodes_in_a_range_come_from_the_spans_and_the_start_index(tmp_path: Path) -> None:
    """Short and long episodes, overlapping ones of one source, ranges anywhere: the same as a brute
    force, in the same order; the episodes already going come from the R*Tree, not a walk of history."""
    rng = random.Random(7)
    base = 1_733_000_000.0  # float32 rounds this by 128 s: the exact columns must filter
    episodes: list[tuple[str, float, float]] = []
    for number in range(3000):
        start = base + number * 6 + rng.random()
        length = rng.choice([0.0, 3.0, 40.0, 700.0, 86_400.0]) if number % 50 else 5 * 86_400.0
        episodes.append((rng.choice(["door", "yard"]), start, start + length))
    store = Store(tmp_path / "spans.db")
    store.ensure_schema(EPISODES_SCHEMA)  # a database from before the spans: filled when first read
    with store.transaction() as conn:
        conn.executemany("INSERT INTO episodes (source, start_ts, end_ts) VALUES (?, ?, ?)", episodes)
    for _ in range(200):
        since = base + rng.uniform(-100, 3000 * 6 + 100)
        until = rng.choice([None, since + rng.choice([-60.0, 0.0, 1.0, 60.0, 3600.0, 86_400.0])])
        source = rng.choice([None, "door", "yard"])
        got = [episode.id for episode in episodes_between(store, since, until, source)]
        assert got == _brute_force(episodes, since, until, source), (since, until, source)
        limited = [episode.id for episode in episodes_between(store, since, until, source, limit=7)]
        assert limited == got[:7]
    store.execute("UPDATE episodes SET end_ts = end_ts + 1000 WHERE id = 2")  # an open episode grows
    store.execute("DELETE FROM episodes WHERE id = 3")
    episodes[1] = (episodes[1][0], episodes[1][1], episodes[1][2] + 1000)
    since = episodes[1][2] - 10
    assert 2 in [episode.id for episode in episodes_between(store, since)]
    assert 3 not in [episode.id for episode in episodes_between(store, base)]
    plan = " ".join(
        str(row[-1])
        for row in store.execute(
            "EXPLAIN QUERY PLAN SELECT e.* FROM episode_spans AS s CROSS JOIN episodes AS e ON e.id = s.id"
            " WHERE s.start_ts <= 1 AND s.end_ts >= 1 AND e.start_ts < 1 AND e.end_ts >= 1"
        )
    )
    assert "SCAN s VIRTUAL TABLE INDEX" in plan and "SEARCH e USING INTEGER PRIMARY KEY" in plan, plan
    store.close()


def test_the_timeline_reads_the_detector_people_of_its_episodes_through_an_index(store: Store) -> None:
    """Not a scan of every observation (a database of any age gets the index when it opens)."""
    plan = store.execute(
        "EXPLAIN QUERY PLAN SELECT episode_id, detections FROM observations"
        " WHERE detections IS NOT NULL AND episode_id IN (?, ?)",
        (1, 2),
    )
    assert "USING INDEX observations_episode_detected" in str(plan[0][-1])
