"""The background indexer: never blocks, flushes on close, repairs a crash at the next start."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from agent.core.config import Settings
from memory.indexer import Indexer
from memory.observation import Observation
from memory.store import Store
from memory.vectors import VectorIndex


class SlowIndex:
    """Stands in for the vector index: blocks until released, can fail once, records what it got."""

    def __init__(self, fail_first: bool = False) -> None:
        self.release = threading.Event()
        self.fail_next = fail_first
        self.added: list[int] = []

    def embed(self, observations: Sequence[Observation]) -> list[list[float]]:
        return [[1.0] for _ in observations]

    def add(self, observations: Sequence[Observation], vectors: Sequence[list[float]]) -> int:
        self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("index unavailable")
        self.added += [obs.id for obs in observations]
        return len(observations)

    def close(self) -> None:
        pass


def _commit(store: Store, n: int, start: int = 0) -> list[Observation]:
    found = []
    for i in range(start, start + n):
        obs = Observation(source="cam", ts=100.0 + i, summary=f"A red ball rolls to spot {i}.")
        store.add(obs)
        found.append(obs)
    return found


def _wait_indexed(store: Store, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while store.unindexed_ids(limit=1):
        assert time.monotonic() < deadline, "indexing did not finish"
        time.sleep(0.02)


def test_on_observation_never_blocks_and_nothing_is_lost(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    settings = Settings(home=tmp_path, index_batch=8)
    index = SlowIndex()
    indexer = Indexer(store, settings, index=index, queue_size=16)  # type: ignore[arg-type]
    started = time.perf_counter()
    for obs in _commit(store, 500):  # the index is stuck: the queue fills, the rest waits in SQLite
        indexer.on_observation(obs)
    assert time.perf_counter() - started < 2.0
    assert indexer.pending <= 16
    index.release.set()
    _wait_indexed(store)
    indexer.close()
    assert sorted(set(index.added)) == list(range(1, 501))


def test_close_flushes_the_queue(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    index = SlowIndex()
    index.release.set()
    indexer = Indexer(store, Settings(home=tmp_path), index=index, max_wait_s=30.0)  # type: ignore[arg-type]
    for obs in _commit(store, 20):
        indexer.on_observation(obs)
    indexer.close(timeout=10)
    assert sorted(index.added) == list(range(1, 21))
    assert not store.unindexed_count()


def test_a_failed_write_is_retried(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    index = SlowIndex(fail_first=True)
    index.release.set()
    indexer = Indexer(store, Settings(home=tmp_path), index=index)  # type: ignore[arg-type]
    for obs in _commit(store, 5):
        indexer.on_observation(obs)
    _wait_indexed(store)
    indexer.close()
    assert sorted(index.added) == [1, 2, 3, 4, 5]


def test_a_crash_between_commit_and_index_is_repaired_at_the_next_start(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    store = Store(settings.db_path)
    first = Indexer(store, settings)
    for obs in _commit(store, 10):
        first.on_observation(obs)
    first.close()
    # The crash: rows committed to SQLite, the process dies before they reach the index.
    _commit(store, 15, start=10)
    index = VectorIndex(store, settings)
    assert index.count() == 10 and store.unindexed_count() == 15
    index.close()

    restarted = Indexer(store, settings)  # the sweep at start indexes what was missed
    _wait_indexed(store)
    restarted.close()
    index = VectorIndex(store, settings)
    assert index.count() == 25
    found = index.recall("a red ball at spot 17", since=117.0, until=117.0)
    assert [item.id for item in found] == [18]
    index.close()
