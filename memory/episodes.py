"""Episodes: consecutive observations of one source in the same state, merged into a time span.

Two observations are in the same state when the people count and the watch answers are equal and
the summaries mean the same (cosine similarity of their MiniLM embeddings at least
``settings.episode_similarity``). Each observation is compared with its episode's first observation,
the representative whose summary and thumbnail stand for the episode, so slow drift still ends an
episode. An unparsed answer has no count or answers to compare: its text is compared instead. A
silence longer than ``settings.episode_gap_s`` also starts a new episode.

Time ranges: :func:`episodes_between` finds the episodes overlapping a range without walking the
history before it. Those that start inside the range come from the ``start_ts`` index; those that
began before it and were still going when it starts come from an R*Tree of the episodes' spans
(``episode_spans``, kept by triggers: float32 bounds rounded outwards, so it gives a superset that
the exact columns then filter).
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from agent.core.config import Settings
from memory.embeddings import MemoryEmbeddings
from memory.observation import Observation
from memory.store import Store, range_sql

log = logging.getLogger(__name__)

TEXT_SIMILARITY = 0.6  # difflib ratio that keeps an episode going when an answer did not parse

EPISODES_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    start_ts REAL NOT NULL,
    end_ts REAL NOT NULL,
    observations INTEGER NOT NULL DEFAULT 1,
    summary TEXT NOT NULL DEFAULT '',
    changes TEXT NOT NULL DEFAULT '',
    people INTEGER,
    answers TEXT NOT NULL DEFAULT '{}',
    thumb_path TEXT,
    first_observation INTEGER,
    closed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS episodes_source_start ON episodes (source, start_ts);
CREATE INDEX IF NOT EXISTS episodes_start ON episodes (start_ts);
CREATE INDEX IF NOT EXISTS episodes_end ON episodes (end_ts);
"""

SPANS_SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS episode_spans USING rtree(id, start_ts, end_ts)",
    """CREATE TRIGGER IF NOT EXISTS episode_spans_insert AFTER INSERT ON episodes BEGIN
        INSERT OR REPLACE INTO episode_spans VALUES (new.id, new.start_ts, new.end_ts);
    END""",
    """CREATE TRIGGER IF NOT EXISTS episode_spans_update AFTER UPDATE OF start_ts, end_ts ON episodes BEGIN
        UPDATE episode_spans SET start_ts = new.start_ts, end_ts = new.end_ts WHERE id = new.id;
    END""",
    """CREATE TRIGGER IF NOT EXISTS episode_spans_delete AFTER DELETE ON episodes BEGIN
        DELETE FROM episode_spans WHERE id = old.id;
    END""",
    # the episodes of a database from before the spans
    "INSERT OR REPLACE INTO episode_spans SELECT id, start_ts, end_ts FROM episodes",
)
"""The episodes' spans as an R*Tree (SQLite's ``rtree`` module: which episodes contain an instant),
kept by triggers; made, and filled from the episodes there are, in one transaction."""


def ensure_episodes_schema(store: Store) -> None:
    """The episodes table, its indexes, and the R*Tree of their spans (made once)."""
    store.ensure_schema(EPISODES_SCHEMA)
    if store.execute("SELECT 1 FROM sqlite_master WHERE name = 'episode_spans_delete'"):
        return
    with store.transaction() as conn:
        for statement in SPANS_SCHEMA:
            conn.execute(statement)


@dataclass
class Episode:
    """A span of time in which one source stayed in one state."""

    id: int
    source: str
    start_ts: float
    end_ts: float
    observations: int
    summary: str
    changes: str = ""
    people: int | None = None
    answers: dict[str, bool] = field(default_factory=dict)
    thumb_path: str | None = None
    closed: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_ts - self.start_ts

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


def _row_to_episode(row: Any) -> Episode:
    return Episode(
        id=row["id"],
        source=row["source"],
        start_ts=row["start_ts"],
        end_ts=row["end_ts"],
        observations=row["observations"],
        summary=row["summary"],
        changes=row["changes"],
        people=row["people"],
        answers=json.loads(row["answers"]),
        thumb_path=row["thumb_path"],
        closed=bool(row["closed"]),
    )


@dataclass
class _Open:
    episode: Episode
    vector: np.ndarray | None  # the representative's summary embedding (None when unparsed)
    text: str


class EpisodeTracker:
    """An :class:`~agent.pipeline.listeners.ObservationListener` that assigns each observation its episode.

    Run it first among the listeners: it sets ``obs.episode_id`` (and stores it) for the ones after.
    It embeds one summary per observation (a few milliseconds) and holds one open episode per source.
    """

    def __init__(self, store: Store, settings: Settings, *, embeddings: Embeddings | None = None) -> None:
        ensure_episodes_schema(store)
        self.store = store
        self.similarity = settings.episode_similarity
        self.gap_s = settings.episode_gap_s
        self.embeddings = embeddings or MemoryEmbeddings()
        self._open: dict[str, _Open] = {}

    def on_observation(self, obs: Observation) -> None:
        try:
            self._track(obs)
        except Exception:  # a listener never stops the watch
            log.exception("episode tracking failed on observation %s", obs.id)

    def close(self) -> None:
        """Close every open episode (a later watch starts new ones)."""
        for current in self._open.values():
            self._close(current.episode)
        self._open.clear()

    def _track(self, obs: Observation) -> None:
        if obs.id is None:
            return
        vector = self._embed(obs.summary) if obs.parsed and obs.summary.strip() else None
        current = self._open.get(obs.source)
        if current is None:
            # A new watch of this source: whatever an earlier run left open is over.
            self.store.execute(
                "UPDATE episodes SET closed = 1 WHERE source = ? AND closed = 0", (obs.source,)
            )
        if current is not None and self._same_state(current, obs, vector):
            self.store.execute(
                "UPDATE episodes SET end_ts = MAX(end_ts, ?), observations = observations + 1 WHERE id = ?",
                (obs.ts, current.episode.id),
            )
            current.episode.end_ts = max(current.episode.end_ts, obs.ts)
            current.episode.observations += 1
        else:
            if current is not None:
                # Frames the gate skipped since the last observation were unchanged: the old state
                # lasted until this one was seen (unless the gap says the watch was down).
                contiguous = obs.ts - current.episode.end_ts <= self.gap_s
                self._close(current.episode, until=obs.ts if contiguous else None)
            current = _Open(self._start(obs), vector, obs.summary or obs.raw)
            self._open[obs.source] = current
        obs.episode_id = current.episode.id
        self.store.set_episode(obs.id, current.episode.id)

    def _same_state(self, current: _Open, obs: Observation, vector: np.ndarray | None) -> bool:
        episode = current.episode
        if obs.ts - episode.end_ts > self.gap_s:
            return False
        if vector is None or current.vector is None:
            return text_similarity(current.text, obs.summary or obs.raw) >= TEXT_SIMILARITY
        if obs.people != episode.people or obs.answers != episode.answers:
            return False
        return float(vector @ current.vector) >= self.similarity

    def _embed(self, text: str) -> np.ndarray:
        vector = np.asarray(self.embeddings.embed_query(text), dtype=np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def _start(self, obs: Observation) -> Episode:
        values = (obs.source, obs.ts, obs.ts, obs.summary or obs.raw, obs.changes, obs.people)
        rows = self.store.execute(
            "INSERT INTO episodes (source, start_ts, end_ts, summary, changes, people, answers, thumb_path,"
            " first_observation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (*values, json.dumps(obs.answers), obs.thumb_path, obs.id),
        )
        return Episode(
            rows[0][0],
            obs.source,
            obs.ts,
            obs.ts,
            1,
            obs.summary or obs.raw,
            obs.changes,
            obs.people,
            dict(obs.answers),
            obs.thumb_path,
        )

    def _close(self, episode: Episode, until: float | None = None) -> None:
        """Close an episode; ``until`` extends it to when the next state was first seen."""
        episode.closed = True
        if until is not None:
            episode.end_ts = max(episode.end_ts, until)
        self.store.execute(
            "UPDATE episodes SET closed = 1, end_ts = ? WHERE id = ?", (episode.end_ts, episode.id)
        )


def text_similarity(a: str, b: str) -> float:
    """How alike two texts are, 0 to 1 (difflib's ratio over lower-cased words)."""
    return difflib.SequenceMatcher(None, a.lower().split(), b.lower().split()).ratio()


def episodes_between(
    store: Store,
    since: float | None = None,
    until: float | None = None,
    source: str | None = None,
    limit: int | None = None,
) -> list[Episode]:
    """Episodes overlapping the range (epoch seconds, inclusive), oldest first.

    Bounded by what is found, not by the history before ``since``: the episodes already going at
    ``since`` come from the R*Tree of spans, those starting in the range from the ``start_ts`` index.
    """
    ensure_episodes_schema(store)
    tail = f" LIMIT {int(limit)}" if limit is not None else ""
    if since is None:
        clauses, params = range_sql("start_ts", "end_ts", None, until, source)
        rows = store.execute(f"SELECT * FROM episodes WHERE {clauses} ORDER BY start_ts, id{tail}", params)
        return [_row_to_episode(row) for row in rows]
    extra, rest = "", []  # the rest of the range, and the source
    if until is not None:
        extra, rest = extra + " AND {e}start_ts <= ?", [*rest, until]
    if source is not None:
        extra, rest = extra + " AND {e}source = ?", [*rest, source]
    going = store.execute(  # the spans' float32 bounds give a superset: the exact columns decide
        "SELECT e.* FROM episode_spans AS s CROSS JOIN episodes AS e ON e.id = s.id"  # CROSS: spans first
        " WHERE s.start_ts <= ? AND s.end_ts >= ? AND e.start_ts < ? AND e.end_ts >= ?"
        f"{extra.format(e='e.')} ORDER BY e.start_ts, e.id{tail}",
        [since, since, since, since, *rest],
    )
    starting = store.execute(
        f"SELECT * FROM episodes WHERE start_ts >= ?{extra.format(e='')} ORDER BY start_ts, id{tail}",
        [since, *rest],
    )
    rows = [*going, *starting]
    return [_row_to_episode(row) for row in (rows if limit is None else rows[: int(limit)])]


def episode_counts(store: Store) -> tuple[int, int]:
    """How many episodes there are, and how many of them are still open."""
    ensure_episodes_schema(store)
    total, still_open = store.execute("SELECT COUNT(*), COUNT(*) FILTER (WHERE NOT closed) FROM episodes")[0]
    return int(total), int(still_open)


def prune_episodes(store: Store, cutoff: float) -> int:
    """Remove the episodes that ended before ``cutoff`` (their observations are gone); those that began
    before it now start at their first remaining observation. Returns how many were removed."""
    ensure_episodes_schema(store)
    removed = len(store.execute("DELETE FROM episodes WHERE end_ts < ? RETURNING id", (cutoff,)))
    store.execute(
        """
        UPDATE episodes SET
            start_ts = (SELECT MIN(ts) FROM observations WHERE episode_id = episodes.id),
            observations = (SELECT COUNT(*) FROM observations WHERE episode_id = episodes.id),
            first_observation = (SELECT id FROM observations WHERE episode_id = episodes.id ORDER BY ts, id),
            thumb_path = (SELECT thumb_path FROM observations WHERE episode_id = episodes.id ORDER BY ts, id)
        WHERE start_ts < ? AND EXISTS (SELECT 1 FROM observations WHERE episode_id = episodes.id)
        """,
        (cutoff,),
    )
    return removed
