"""The timeline of a time range: episodes (spans in one state) and events (instants), in time order."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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
    entries = [_episode_entry(ep) for ep in episodes_between(store, since, until, source, limit)]
    entries += [_event_entry(row) for row in events_between(store, since, until, source, limit)]
    entries.sort(key=lambda entry: (entry.start, entry.kind != "episode"))
    return entries[:limit] if limit is not None else entries


def _episode_entry(episode: Episode) -> TimelineEntry:
    state = [] if episode.people is None else [f"people {episode.people}"]
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
