"""The event log: events raised by rules and their deliveries (the outbox), in the observation database.

An event and one outbox row per sink are committed together, before anything is sent, so none is
lost; :class:`~agent.events.delivery.DeliveryWorker` relays the rows. A person acknowledges an
event (``acknowledged_at``: :meth:`Outbox.acknowledge`). Readers (the timeline, the
``events`` command, the API) reach these tables through :class:`Outbox` and :func:`events_between`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.core.durations import current_time
from memory.store import Store, range_sql

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    source TEXT NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    observation_id INTEGER,
    acknowledged_at REAL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL REFERENCES events (id),
    sink TEXT NOT NULL,
    target TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    lease_until REAL,
    delivered_at REAL,
    last_error TEXT,
    UNIQUE (event_id, sink)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_at) WHERE delivered_at IS NULL;
"""

LEASE_MARGIN_S = 10.0  # a lease outlives the sink's timeout by this much
ADDED_COLUMNS = {"acknowledged_at": "REAL"}
"""Columns of ``events`` added after the first release: an older database gets them when it opens."""


@dataclass
class NewEvent:
    """An event to commit, with the sinks (name -> target) it goes to."""

    ts: float
    source: str
    rule: str
    kind: str
    severity: str
    message: str
    payload: dict[str, Any] = field(default_factory=dict)
    observation_id: int | None = None
    sinks: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Delivery:
    """One claimed outbox row: the event as sent (``document``) and where to send it."""

    id: int
    sink: str
    target: dict[str, Any]
    attempts: int
    document: dict[str, Any]


def event_document(row: Any) -> dict[str, Any]:
    """An ``events`` row as the JSON object sinks receive."""
    return {
        "id": row["id"],
        "ts": row["ts"],
        "time": datetime.fromtimestamp(row["ts"], UTC).isoformat(),
        "source": row["source"],
        "rule": row["rule"],
        "kind": row["kind"],
        "severity": row["severity"],
        "message": row["message"],
        "observation_id": row["observation_id"],
        "payload": json.loads(row["payload"]),
    }


class Outbox:
    """The ``events`` and ``outbox`` tables of the observation database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_schema(SCHEMA)
        self._add_columns()

    def _add_columns(self) -> None:
        """Add the columns an older ``events`` table lacks (NULL in its rows)."""
        have = {row["name"] for row in self.store.execute("PRAGMA table_info(events)")}
        for name, kind in ADDED_COLUMNS.items():
            if name in have:
                continue
            try:
                self.store.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise

    def record(self, events: Sequence[NewEvent], now: float | None = None) -> list[int]:
        """Commit events and their deliveries in one transaction; returns the event ids."""
        now = current_time() if now is None else now
        ids = []
        with self.store.transaction() as conn:
            for event in events:
                cursor = conn.execute(
                    "INSERT INTO events (ts, source, rule, kind, severity, message, payload, observation_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.ts,
                        event.source,
                        event.rule,
                        event.kind,
                        event.severity,
                        event.message,
                        json.dumps(event.payload, ensure_ascii=False, default=str),
                        event.observation_id,
                    ),
                )
                event_id = int(cursor.lastrowid or 0)
                conn.executemany(
                    "INSERT INTO outbox (event_id, sink, target, next_at) VALUES (?, ?, ?, ?)",
                    [(event_id, name, json.dumps(target), now) for name, target in event.sinks.items()],
                )
                ids.append(event_id)
        return ids

    def claim(self, now: float, *, after_id: int = 0, due_only: bool = True) -> Delivery | None:
        """Lease the next undelivered row after ``after_id`` (due now, unless ``due_only`` is off)."""
        due = " AND o.next_at <= :now" if due_only else ""
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT o.id AS delivery_id, o.sink, o.target, o.attempts, e.* FROM outbox o"
                " JOIN events e ON e.id = o.event_id"
                " WHERE o.delivered_at IS NULL AND (o.lease_until IS NULL OR o.lease_until <= :now)"
                f" AND o.id > :after{due} ORDER BY o.id LIMIT 1",
                {"now": now, "after": after_id},
            ).fetchone()
            if row is None:
                return None
            target = json.loads(row["target"])
            lease = now + float(target.get("timeout_s", 0.0)) + LEASE_MARGIN_S
            conn.execute("UPDATE outbox SET lease_until = ? WHERE id = ?", (lease, row["delivery_id"]))
        return Delivery(row["delivery_id"], row["sink"], target, row["attempts"], event_document(row))

    def succeeded(self, delivery_id: int, now: float) -> None:
        self.store.execute(
            "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, lease_until = NULL,"
            " last_error = NULL WHERE id = ?",
            (now, delivery_id),
        )

    def failed(self, delivery_id: int, error: str, retry_at: float) -> None:
        self.store.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_at = ?, lease_until = NULL, last_error = ?"
            " WHERE id = ?",
            (retry_at, error[:500], delivery_id),
        )

    def next_due(self) -> float | None:
        """When the earliest undelivered row can be tried (None when all are delivered)."""
        return self.store.execute(
            "SELECT MIN(MAX(next_at, COALESCE(lease_until, 0))) FROM outbox WHERE delivered_at IS NULL"
        )[0][0]

    def sources(self) -> list[str]:
        """The sources of recorded events (kept when their observations are pruned)."""
        return [row[0] for row in self.store.execute("SELECT DISTINCT source FROM events ORDER BY source")]

    def pending(self) -> int:
        return int(self.store.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")[0][0])

    def events(
        self,
        *,
        since: float | None = None,
        rule: str | None = None,
        source: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The latest events (newest last), each with ``acknowledged_at`` (None until acknowledged) and
        ``deliveries``: sink, delivered, attempts, error."""
        clauses, params = [], []
        for clause, value in (("ts >= ?", since), ("rule = ?", rule), ("source = ?", source)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.store.execute(
            f"SELECT * FROM events {where} ORDER BY ts DESC, id DESC LIMIT ?", [*params, limit]
        )
        return self._with_deliveries(list(reversed(rows)))

    def after(self, event_id: int, *, source: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Events committed after ``event_id`` (of one source), by id, as :meth:`events` gives them."""
        clause, params = ("AND source = ?", [source]) if source is not None else ("", [])
        rows = self.store.execute(
            f"SELECT * FROM events WHERE id > ? {clause} ORDER BY id LIMIT ?", [event_id, *params, limit]
        )
        return self._with_deliveries(rows)

    def get(self, event_id: int) -> dict[str, Any] | None:
        """One event as :meth:`events` gives it, or None."""
        found = self._with_deliveries(self.store.execute("SELECT * FROM events WHERE id = ?", (event_id,)))
        return found[0] if found else None

    def acknowledge(self, event_id: int, now: float | None = None) -> dict[str, Any] | None:
        """Mark an event acknowledged (a second time keeps the first time); the event, or None."""
        self.store.execute(
            "UPDATE events SET acknowledged_at = ? WHERE id = ? AND acknowledged_at IS NULL",
            (current_time() if now is None else now, event_id),
        )
        return self.get(event_id)

    def last_id(self) -> int:
        """The id of the latest event (0 when there is none)."""
        return int(self.store.execute("SELECT COALESCE(MAX(id), 0) FROM events")[0][0])

    def raised(self) -> list[tuple[str, str, int]]:
        """``(source, rule, count)`` of every event recorded."""
        rows = self.store.execute("SELECT source, rule, COUNT(*) FROM events GROUP BY source, rule")
        return [(row[0], row[1], row[2]) for row in rows]

    def deliveries_by_sink(self) -> list[tuple[str, int, int]]:
        """``(sink, delivered, pending)`` over the outbox."""
        rows = self.store.execute(
            "SELECT sink, COUNT(delivered_at), COUNT(*) - COUNT(delivered_at) FROM outbox GROUP BY sink"
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def _with_deliveries(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """Event documents of ``rows`` (in their order), each with its ``deliveries``."""
        documents = {
            row["id"]: {**event_document(row), "acknowledged_at": row["acknowledged_at"], "deliveries": []}
            for row in rows
        }
        if documents:
            marks = ", ".join("?" * len(documents))
            for row in self.store.execute(
                f"SELECT * FROM outbox WHERE event_id IN ({marks}) ORDER BY id", list(documents)
            ):
                documents[row["event_id"]]["deliveries"].append(
                    {
                        "sink": row["sink"],
                        "delivered": row["delivered_at"] is not None,
                        "attempts": row["attempts"],
                        "error": row["last_error"],
                    }
                )
        return list(documents.values())


def events_between(
    store: Store,
    since: float | None = None,
    until: float | None = None,
    source: str | None = None,
    limit: int | None = None,
) -> list[Any]:
    """Events of the range (epoch seconds, inclusive), oldest first: rows with ``ts``, ``source``,
    ``rule``, ``kind``, ``severity`` and ``message`` (none when no rules file was ever used)."""
    if not store.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"):
        return []
    clauses, params = range_sql("ts", "ts", since, until, source)
    tail = f" LIMIT {int(limit)}" if limit is not None else ""
    return store.execute(
        f"SELECT ts, source, rule, kind, severity, message FROM events WHERE {clauses} ORDER BY ts, id{tail}",
        params,
    )
