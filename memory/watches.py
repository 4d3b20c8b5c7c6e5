"""Watches: yes/no questions about one source, each with the rule that turns its answers into
events, set up at run time (by the agent: "tell me when a package is left at the door").

They live in the ``watches`` table of the observation database, so they outlive the process that
made them: a running service starts them at once, and ``scenewatch serve`` starts the stored ones
of its sources when it starts. A removed watch keeps its row (``active = 0``): its events still
name it. These functions only store; checking a watch and running it is
:class:`agent.events.watchlist.Watchlist`'s job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from agent.core.durations import current_time
from agent.core.errors import ScenewatchError
from memory.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS watches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    question TEXT NOT NULL,
    predicate TEXT NOT NULL,
    hold TEXT NOT NULL,
    severity TEXT NOT NULL,
    created REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX IF NOT EXISTS watches_active_name ON watches (name) WHERE active = 1;
"""


@dataclass(frozen=True)
class Watch:
    """A stored watch: ``name`` names both its question (in predicates and the describe answers)
    and its rule (on its events); ``predicate`` is the rule's ``when``, ``hold`` its ``for``."""

    id: int
    source: str
    name: str
    question: str
    predicate: str
    hold: str
    severity: str
    created: float
    active: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (``GET /api/watches``): every field, and ``time``, the creation as ISO 8601."""
        return {**asdict(self), "time": datetime.fromtimestamp(self.created, UTC).isoformat()}


def _table(store: Store) -> Store:
    store.ensure_schema(SCHEMA)
    return store


def _watch(row: Any) -> Watch:
    return Watch(
        id=row["id"],
        source=row["source"],
        name=row["name"],
        question=row["question"],
        predicate=row["predicate"],
        hold=row["hold"],
        severity=row["severity"],
        created=row["created"],
        active=bool(row["active"]),
    )


def add_watch(
    store: Store,
    *,
    source: str,
    name: str,
    question: str,
    predicate: str,
    hold: str,
    severity: str,
    now: float | None = None,
) -> Watch:
    """Store an active watch and return it; ScenewatchError when an active one has that name."""
    created = current_time() if now is None else now
    with _table(store).transaction() as conn:
        if conn.execute("SELECT 1 FROM watches WHERE name = ? AND active = 1", (name,)).fetchone():
            raise ScenewatchError(f"a watch called {name} already exists: choose another name")
        cursor = conn.execute(
            "INSERT INTO watches (source, name, question, predicate, hold, severity, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (source, name, question, predicate, hold, severity, created),
        )
    return Watch(
        int(cursor.lastrowid or 0), source, name, question, predicate, hold, severity, created, active=True
    )


def get_watch(store: Store, watch_id: int) -> Watch | None:
    """The watch with this id (active or removed), or None."""
    rows = _table(store).execute("SELECT * FROM watches WHERE id = ?", (watch_id,))
    return _watch(rows[0]) if rows else None


def list_watches(store: Store, *, source: str | None = None, removed: bool = False) -> list[Watch]:
    """The active watches (with ``removed``, the removed ones too), oldest first; of ``source`` only
    when it is given."""
    clauses = ["1 = 1" if removed else "active = 1"]
    params: list[Any] = []
    if source is not None:
        clauses.append("source = ?")
        params.append(source)
    rows = _table(store).execute(f"SELECT * FROM watches WHERE {' AND '.join(clauses)} ORDER BY id", params)
    return [_watch(row) for row in rows]


def remove_watch(store: Store, watch_id: int) -> Watch | None:
    """Mark a watch removed and return it as it was; None when no active watch has this id.

    In a running service, remove through :meth:`agent.events.watchlist.Watchlist.remove`, which also
    stops its rule and its question."""
    with _table(store).transaction() as conn:
        row = conn.execute("SELECT * FROM watches WHERE id = ? AND active = 1", (watch_id,)).fetchone()
        if row is None:
            return None
        conn.execute("UPDATE watches SET active = 0 WHERE id = ?", (watch_id,))
    return _watch(row)
