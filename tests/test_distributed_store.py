"""The store keeps a frame once (its frame id is unique), and an older database gains the column."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from memory.observation import Observation
from memory.store import OBSERVATIONS_SCHEMA, Store


def test_a_frame_id_is_stored_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "obs.db")
    first = Observation(source="cam", ts=10.0, summary="a", frame_id="f1")
    assert store.add_once(first) and first.id
    again = Observation(source="cam", ts=10.0, summary="b", frame_id="f1")
    assert not store.add_once(again) and again.id == 0
    assert store.add(Observation(source="cam", ts=11.0)) and store.add(Observation(source="cam", ts=11.0))
    assert [(o.summary, o.frame_id) for o in store.between()] == [("a", "f1"), ("", None), ("", None)]
    store.close()


def test_a_database_from_before_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    old_schema = OBSERVATIONS_SCHEMA.replace(",\n    frame_id TEXT", "")
    assert "frame_id" not in old_schema
    conn.executescript(old_schema)
    conn.execute("INSERT INTO observations (source, ts, summary) VALUES ('cam', 1.0, 'before')")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.add_once(Observation(source="cam", ts=2.0, frame_id="f2"))
    assert not store.add_once(Observation(source="cam", ts=2.0, frame_id="f2"))
    assert [(o.summary, o.frame_id) for o in store.between()] == [("before", None), ("", "f2")]
    store.close()
