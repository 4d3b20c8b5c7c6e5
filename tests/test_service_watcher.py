"""The Watcher under the service: sources started and stopped while it runs, the frame hook, resuming."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from service_support import frame_counter

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.pipeline.watch import Watcher, open_watched, run_watch
from agent.sources import Frame
from memory.store import Store
from tools.vision.engine import Engine


def test_run_watch_hands_every_sampled_frame_to_on_frame(synthetic_clip: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    seen: list[tuple[str, float | None]] = []

    def on_frame(source: str, frame: Frame) -> None:
        seen.append((source, frame.video_t))
        if len(seen) == 3:
            raise RuntimeError("a broken frame consumer")  # logged; the watch goes on

    store = Store(settings.db_path)
    with Engine(frame_counter()) as engine:
        summary = run_watch([str(synthetic_clip)], settings, engine=engine, store=store, on_frame=on_frame)
    assert len(seen) == summary.sampled == 20 and summary.errors == {}
    assert [t for _, t in seen] == [float(second) for second in range(20)]
    assert {name for name, _ in seen} == {str(synthetic_clip)}
    assert sum(summary.sources[str(synthetic_clip)].reasons.values()) == summary.sampled
    store.close()


def test_sources_start_and_stop_on_one_watcher(synthetic_clip: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", pipeline_depth=1)
    store = Store(settings.db_path)
    ended: list[str] = []
    with Engine(frame_counter(delay=0.2)) as engine:
        watcher = Watcher(settings, engine=engine, store=store, on_end=lambda w: ended.append(w.source.name))
        name = str(synthetic_clip)
        worker = watcher.start(open_watched(name, settings, 1000.0))
        with pytest.raises(ScenewatchError, match="already being watched"):
            watcher.start(open_watched(name, settings, 1000.0))
        while store.count() < 2:
            threading.Event().wait(0.05)
        assert watcher.stop_source(name, timeout=30)
        assert worker.done.is_set() and ended == [name]
        assert store.count() == worker.stats.analysed  # the answer in flight was committed
        last = store.recent(name, 1)[0].video_t
        assert last is not None
        again = watcher.start(open_watched(name, settings, 1000.0), after_video_t=last)
        watcher.wait()
        later = [obs.video_t for obs in store.page(limit=100)]
        assert later == sorted(later) and len(set(later)) == len(later)  # went on after, nothing twice
        assert again.stats.sampled == 19 - int(last)
        watcher.close()
        with pytest.raises(ScenewatchError, match="closing"):
            watcher.start(open_watched(name, settings, 1000.0))
    store.close()
