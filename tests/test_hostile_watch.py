"""A disk that fills during a watch (issue 12, hostile probe): the rows committed before are kept and
the failures are logged in one line each, with no traceback (closing a listener included)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.core.config import load_settings
from agent.pipeline.session import open_pipeline
from memory.observation import Observation
from memory.store import Store
from tools.vision.scripted import ScriptedBackend


class WritesOnClose:
    """A listener that writes to the store when it closes, as the episode tracker and outbox do."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_schema("CREATE TABLE IF NOT EXISTS notes (text TEXT)")

    def on_observation(self, obs: Observation) -> None:
        pass

    def close(self) -> None:
        self.store.execute("INSERT INTO notes VALUES (?)", ("x" * 100_000,))


def test_a_disk_that_fills_during_a_watch(synthetic_clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(every_s=0.5, heartbeat_s=0.5)
    answers = (f'{{"summary": "scene {n} {"detail " * 300}", "people": 0}}' for n in range(1000))
    caplog.set_level(logging.INFO)
    with open_pipeline(settings, backend=ScriptedBackend(answers), memory=False) as pipeline:
        store = pipeline.store
        pipeline.listeners.append(WritesOnClose(store))
        pages = store.execute("PRAGMA page_count")[0][0]
        store.execute(f"PRAGMA max_page_count = {pages + 8}")  # the disk is full after a few rows
        summary = pipeline.watch([str(synthetic_clip)])
        kept = store.count()
    stats = summary.sources[str(synthetic_clip)]
    assert stats.error is not None and "is full" in stats.error
    assert 0 < kept == stats.analysed  # every row committed before the disk filled is there
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    closing = [r.getMessage() for r in caplog.records if r.getMessage().startswith("closing listener")]
    assert closing == [
        f"closing listener WritesOnClose failed: the disk holding {settings.db_path} is full "
        "(database or disk is full): free some space, then try again"
    ]
    reopened = Store(settings.db_path)
    assert reopened.count() == kept
    reopened.close()
