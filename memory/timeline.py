"""The timeline of a time range: episodes (spans in one state) and events (instants), in time order;
and the tracks the object detector followed through it (:func:`track_spans`, for narratives).

An episode's detail gives the people count of its observation, and the most people the detector
saw at once during it when that differs (a vision model's count and the detector's can).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from memory.episodes import Episode, episodes_between
from memory.events import events_between
from memory.observation import changes_text
from memory.store import Store


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a timeline: an episode (a span) or an event (an instant)."""

    kind: Literal["episode", "event"]
    source: str
    start: float
    end: float
    text: str
    detail: str = ""
    observations: int = 0
    changes: str = ""

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


def timeline(
    store: Store,
    since: float | None = None,
    until: float | None = None,
    source: str | None = None,
    limit: int | None = None,
) -> list[TimelineEntry]:
    """Episodes and events of the range, in time order."""
    episodes = episodes_between(store, since, until, source, limit)
    people = _detector_people(store, [episode.id for episode in episodes])
    entries = [_episode_entry(ep, people.get(ep.id)) for ep in episodes]
    entries += [_event_entry(row) for row in events_between(store, since, until, source, limit)]
    entries.sort(key=lambda entry: (entry.start, entry.kind != "episode"))
    return entries[:limit] if limit is not None else entries


def _episode_entry(episode: Episode, detected_people: int | None = None) -> TimelineEntry:
    state = [] if episode.people is None else [f"people {episode.people}"]
    if detected_people is not None and detected_people != episode.people:
        state.append(f"detector: up to {detected_people} {'person' if detected_people == 1 else 'people'}")
    state += [f"{name} {'yes' if value else 'no'}" for name, value in episode.answers.items()]
    return TimelineEntry(
        "episode",
        episode.source,
        episode.start_ts,
        episode.end_ts,
        episode.summary,
        ", ".join(state),
        episode.observations,
        changes_text(episode.changes),
    )


def _event_entry(row: Any) -> TimelineEntry:
    detail = f"{row['rule']} ({row['kind']}, {row['severity']})"
    return TimelineEntry("event", row["source"], row["ts"], row["ts"], row["message"], detail)


def _detector_people(store: Store, episode_ids: list[int]) -> dict[int, int]:
    """The most persons the detector saw at once in each episode (those with detector findings)."""
    most: dict[int, int] = {}
    for first in range(0, len(episode_ids), 500):
        chunk = episode_ids[first : first + 500]
        rows = store.execute(
            f"SELECT episode_id, detections FROM observations WHERE detections IS NOT NULL "
            f"AND episode_id IN ({', '.join('?' * len(chunk))})",
            chunk,
        )
        for row in rows:
            count = sum(item["label"] == "person" for item in json.loads(row["detections"]))
            most[row["episode_id"]] = max(count, most.get(row["episode_id"], 0))
    return most


@dataclass
class TrackSpan:
    """One object the detector's tracker followed: when it was first and last seen, and where."""

    source: str
    track: int
    label: str
    first_ts: float
    last_ts: float
    left: bool = False
    zones: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.last_ts - self.first_ts

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


def track_spans(
    store: Store, since: float | None = None, until: float | None = None, source: str | None = None
) -> list[TrackSpan]:
    """The tracks seen in the range's observations, by first sighting: entries and exits.

    A track is one tracker id of one source from one watch (ids restart with each watch, so its
    first sighting is part of its identity); ``left`` when an observation recorded its exit.
    """
    clauses, params = ["tracks IS NOT NULL"], []
    for clause, value in (("source = ?", source), ("ts >= ?", since), ("ts <= ?", until)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    rows = store.execute(
        f"SELECT source, tracks FROM observations WHERE {' AND '.join(clauses)} ORDER BY ts, id", params
    )
    spans: dict[tuple[str, int, float], TrackSpan] = {}
    zones: dict[tuple[str, int, float], set[str]] = defaultdict(set)
    for row in rows:
        for track in json.loads(row["tracks"]):
            key = (row["source"], track["track"], round(track["first_ts"], 3))
            new = TrackSpan(key[0], key[1], track["label"], track["first_ts"], track["last_ts"])
            span = spans.setdefault(key, new)
            span.last_ts = max(span.last_ts, track["last_ts"])
            span.left = span.left or track["state"] == "left"
            zones[key].update(track["zones"])
    for key, span in spans.items():
        span.zones = sorted(zones[key])
    return sorted(spans.values(), key=lambda span: (span.first_ts, span.source, span.track))
