"""The sources a service watches: the ``sources`` table, so that they come back after a restart.

A row is a source the user asked the service to watch, under its stored name (an absolute path,
a URL, a webcam index), with the state it should be in: ``watching``, ``paused``, ``finished``
(a file or folder watched to its end) or ``failed`` (its watch ended on an error, kept in
``error``). ``start_ts`` anchors a file's times (``ts = start_ts + video_t``), so a file picked up
again after a restart keeps its times and goes on after its last stored observation
(:func:`resume_position`). Removing a row keeps the source's observations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from memory.store import Store

SourceState = Literal["watching", "paused", "finished", "failed"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    live INTEGER NOT NULL,
    state TEXT NOT NULL,
    start_ts REAL NOT NULL,
    added_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    error TEXT
);
"""


@dataclass(frozen=True)
class SourceRecord:
    """One row of the ``sources`` table."""

    id: int
    name: str
    live: bool
    state: SourceState
    start_ts: float
    added_at: float
    updated_at: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record(row: Any) -> SourceRecord:
    return SourceRecord(
        id=row["id"],
        name=row["name"],
        live=bool(row["live"]),
        state=row["state"],
        start_ts=row["start_ts"],
        added_at=row["added_at"],
        updated_at=row["updated_at"],
        error=row["error"],
    )


def ensure_schema(store: Store) -> None:
    """Create the ``sources`` table if it is not there."""
    store.ensure_schema(SCHEMA)


def add_source(store: Store, name: str, *, live: bool, start_ts: float, now: float) -> SourceRecord:
    """Record a new source, ``watching`` (the name must not be recorded yet: see :func:`get_source`)."""
    ensure_schema(store)
    store.execute(
        "INSERT INTO sources (name, live, state, start_ts, added_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        (name, int(live), "watching", start_ts, now, now),
    )
    record = get_source(store, name)
    assert record is not None
    return record


def list_sources(store: Store) -> list[SourceRecord]:
    """Every recorded source, in the order they were added."""
    ensure_schema(store)
    return [_record(row) for row in store.execute("SELECT * FROM sources ORDER BY id")]


def get_source(store: Store, name: str) -> SourceRecord | None:
    """The recorded source of that name, if any."""
    ensure_schema(store)
    rows = store.execute("SELECT * FROM sources WHERE name = ?", (name,))
    return _record(rows[0]) if rows else None


def source_by_id(store: Store, source_id: int) -> SourceRecord | None:
    """The recorded source with that id, if any."""
    ensure_schema(store)
    rows = store.execute("SELECT * FROM sources WHERE id = ?", (source_id,))
    return _record(rows[0]) if rows else None


def set_state(store: Store, name: str, state: SourceState, *, now: float, error: str | None = None) -> None:
    """Record the state a source is in (``error`` with ``failed``; cleared otherwise)."""
    ensure_schema(store)
    store.execute(
        "UPDATE sources SET state = ?, error = ?, updated_at = ? WHERE name = ?", (state, error, now, name)
    )


def remove_source(store: Store, name: str) -> bool:
    """Forget a source (its observations stay); False when it was not recorded."""
    ensure_schema(store)
    with store.transaction() as conn:
        return conn.execute("DELETE FROM sources WHERE name = ?", (name,)).rowcount > 0


def resume_position(store: Store, record: SourceRecord) -> float | None:
    """Seconds of video of a file or folder source already analysed under this record (its latest
    stored ``video_t`` since ``start_ts``); None for a live source or when there is none."""
    if record.live:
        return None
    rows = store.execute(
        "SELECT MAX(video_t) FROM observations WHERE source = ? AND ts >= ? AND video_t IS NOT NULL",
        (record.name, record.start_ts),
    )
    return rows[0][0]
