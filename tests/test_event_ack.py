"""Acknowledging an event: ``Outbox.acknowledge``, the column added to older databases, and
``POST /api/events/{id}/ack``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers import FROZEN_NOW
from service_support import served, settings_for

from memory.events import NewEvent, Outbox
from memory.store import Store

OLD_EVENTS = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, source TEXT NOT NULL, rule TEXT NOT NULL,
    kind TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL, payload TEXT NOT NULL DEFAULT '{}',
    observation_id INTEGER
);
INSERT INTO events (ts, source, rule, kind, severity, message)
    VALUES (1.0e9, 'cam', 'door', 'rule', 'warning', 'open');
"""


def event(message: str = "the door is open") -> NewEvent:
    return NewEvent(FROZEN_NOW, "cam", "door", "rule", "warning", message, sinks={"log": {"path": "x"}})


def test_an_older_database_gets_the_column_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_EVENTS)
    store = Store(path)
    try:
        outbox = Outbox(store)
        Outbox(store)  # a second opening finds the column there
        [old] = outbox.events()
        assert old["message"] == "open" and old["acknowledged_at"] is None
        assert outbox.acknowledge(old["id"], now=FROZEN_NOW)["acknowledged_at"] == FROZEN_NOW
        assert outbox.record([event()], now=FROZEN_NOW) == [2]
    finally:
        store.close()


def test_acknowledging_twice_keeps_the_first_time(tmp_path: Path) -> None:
    store = Store(tmp_path / "scenewatch.db")
    try:
        outbox = Outbox(store)
        first, second = outbox.record([event(), event("still open")], now=FROZEN_NOW)
        assert outbox.acknowledge(first, now=FROZEN_NOW + 5)["acknowledged_at"] == FROZEN_NOW + 5
        assert outbox.acknowledge(first, now=FROZEN_NOW + 9)["acknowledged_at"] == FROZEN_NOW + 5
        assert outbox.get(second)["acknowledged_at"] is None
        assert outbox.acknowledge(99) is None
        claimed = outbox.claim(FROZEN_NOW)
        assert (
            claimed is not None and "acknowledged_at" not in claimed.document
        )  # sinks get the event as raised
    finally:
        store.close()


def test_the_api_acknowledges_an_event(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    with served(settings) as api:
        [raised] = Outbox(api.service.reader).record([event()])
        answer = api.client.post(f"/api/events/{raised}/ack")
        assert answer.status_code == 200 and answer.json()["acknowledged_at"] is not None
        assert api.client.get("/api/events").json()[0]["acknowledged_at"] == answer.json()["acknowledged_at"]
        missing = api.client.post("/api/events/999/ack")
        assert missing.status_code == 404 and missing.json() == {"error": "no event with id 999"}
        assert "/api/events/{event_id}/ack" in api.client.get("/openapi.json").json()["paths"]
