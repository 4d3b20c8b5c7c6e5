"""The observation log."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.errors import ScenewatchError
from memory.observation import Observation
from memory.store import Store


def test_round_trip_and_queries(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    first = Observation(
        source="cam",
        ts=100.0,
        summary="empty room",
        answers={"lights_on": True},
        objects=["desk"],
        people=0,
        raw='{"summary": "empty room"}',
    )
    store.add(first)
    store.add(Observation(source="cam", ts=101.0, summary="a person enters", people=1, video_t=1.0))
    store.add(Observation(source="door", ts=102.0, summary="a parcel", parsed=False, raw="a parcel"))
    assert first.id == 1
    assert store.get_many([1]) == [first]
    assert [o.summary for o in store.recent("cam", 5)] == ["empty room", "a person enters"]
    assert [o.source for o in store.recent(None, 2)] == ["cam", "door"]
    assert [o.ts for o in store.between(since=100.5, until=102.0)] == [101.0, 102.0]
    assert store.count() == 3 and store.count("cam") == 2
    assert store.sources() == ["cam", "door"]
    assert store.unindexed_ids() == [1, 2, 3] and store.unindexed_count() == 3
    assert store.unindexed_ids(after_id=1, limit=1) == [2]
    store.mark_indexed([1, 2])
    assert store.unindexed_ids() == [3] and store.unindexed_count() == 1
    assert [o.id for o in store.get_many([3, 1])] == [3, 1]
    assert [o.id for o in store.between(limit=2)] == [1, 2]


def test_reopen_appends(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = Store(path)
    store.add(Observation(source="cam", ts=1.0))
    store.close()
    reopened = Store(path)
    reopened.add(Observation(source="cam", ts=2.0))
    assert reopened.count() == 2
    assert reopened.execute("PRAGMA journal_mode")[0][0] == "wal"


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ScenewatchError, match="not a usable scenewatch database"):
        Store(bogus)
