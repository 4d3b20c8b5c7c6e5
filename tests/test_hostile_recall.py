"""``recall`` after a watch was killed (``kill -9``) before its indexer caught up (issue 12, hostile
probe): the rows it left unindexed are indexed first and found, not "no matching observations";
while a running watch indexes them itself, recall leaves them to it and says so."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.config import load_settings
from memory.indexer import Indexer, IndexingLock
from memory.observation import Observation
from memory.store import Store

runner = CliRunner()
SEEN = ["A courier leaves a parcel on the doorstep.", "A grey cat sleeps on the garden wall."]


@pytest.fixture
def left_unindexed(scratch_home: Path) -> Store:
    """Rows committed to SQLite whose vectors were never written, as a killed watch leaves them."""
    store = Store(load_settings().db_path)
    for n, text in enumerate(SEEN):
        store.add(Observation(source="door", ts=time.time() - 600 + n, summary=text))
    assert store.unindexed_count() == len(SEEN)
    return store


def test_recall_indexes_what_a_killed_watch_left_and_finds_it(left_unindexed: Store) -> None:
    result = runner.invoke(app, ["recall", "a parcel delivery", "-k", "1"])
    assert result.exit_code == 0, result.output
    assert "indexed 2 observations that were missing from the index" in result.output
    assert "A courier leaves a parcel on the doorstep." in result.output
    assert left_unindexed.unindexed_count() == 0
    left_unindexed.close()


def test_recall_leaves_them_to_a_running_watch_and_says_so(left_unindexed: Store) -> None:
    watch = IndexingLock(load_settings())  # what a running watch's indexer holds
    assert watch.acquire(alone=False, wait=False)
    try:
        result = runner.invoke(app, ["recall", "a parcel delivery"])
    finally:
        watch.release()
    assert result.exit_code == 0, result.output
    said = "no matching observations among those indexed (2 are not indexed yet: a running watch is indexing"
    assert said in result.output
    assert left_unindexed.unindexed_count() == 2  # nothing written beside the watch
    left_unindexed.close()


def test_a_watch_waits_for_a_catch_up_to_end(left_unindexed: Store) -> None:
    settings = load_settings()
    catch_up = IndexingLock(settings)
    assert catch_up.acquire(alone=True, wait=False)
    started: list[Indexer] = []
    thread = threading.Thread(target=lambda: started.append(Indexer(left_unindexed, settings)), daemon=True)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and not started  # the watch's indexer waits
    catch_up.release()
    thread.join(30)
    assert started
    started[0].close()
    left_unindexed.close()
