"""The watch loop with the scripted backend: gate, batching, commit order, window, bad input."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import BrokenBackend, SlowBackend

from agent.bench.clips import Appearance, write_clip
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.pipeline.stats import WatchSummary
from agent.pipeline.watch import run_watch, source_slug
from agent.sources import SourceReader
from memory.observation import Observation
from memory.store import Store
from tools.look import grab
from tools.vision.base import VisionRequest, VisionResult
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

ANSWER = '{"summary": "frame %d", "people": 0, "objects": [], "actions": [], "changes": "", "answers": %s}'


def prompt_of(request: VisionRequest) -> str:
    return request.messages[-1]["content"][-1]["text"]


class Recorder:
    """A listener that records what it saw and whether it was closed."""

    def __init__(self, log: list[str], name: str, fail: bool = False) -> None:
        self.log, self.name, self.fail = log, name, fail
        self.seen: list[Observation] = []
        self.closed = False

    def on_observation(self, obs: Observation) -> None:
        self.log.append(f"{self.name}:{obs.id}")
        self.seen.append(obs)
        if self.fail:
            raise RuntimeError("listener bug")

    def close(self) -> None:
        self.closed = True


def counting_backend(answers: str = "{}") -> ScriptedBackend:
    counter = iter(range(1_000_000))
    return ScriptedBackend(lambda request: ANSWER % (next(counter), answers))


def watch(
    sources: Sequence[str | Path], settings: Settings, backend: ScriptedBackend, **kwargs
) -> tuple[WatchSummary, Store]:
    store = Store(settings.db_path)
    with Engine(backend, batch_size=settings.batch_size, batch_wait_ms=settings.batch_wait_ms) as engine:
        summary = run_watch([str(s) for s in sources], settings, engine=engine, store=store, **kwargs)
    return summary, store


def test_a_file_becomes_committed_observations_with_thumbnails_listeners_and_jsonl(
    synthetic_clip: Path, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", heartbeat_s=5.0)
    calls: list[str] = []
    listeners = [Recorder(calls, "episodes"), Recorder(calls, "broken", fail=True), Recorder(calls, "rules")]
    jsonl = tmp_path / "out.jsonl"
    updates: list[Observation | None] = []
    started = time.time()
    summary, store = watch(
        [synthetic_clip],
        settings,
        counting_backend('{"q1": "yes"}'),
        questions={"q1": "Is there a red box?"},
        listeners=listeners,
        jsonl=jsonl,
        on_update=lambda stats, obs: updates.append(obs),
    )
    rows = store.between()
    # Box from 5 s to 12 s, heartbeat 5 s: the first frame, the two changes, two heartbeats.
    assert [o.video_t for o in rows] == pytest.approx([0.0, 5.0, 10.0, 12.0, 17.0])
    assert summary.sampled == 20 and summary.analysed == 5 and summary.skipped == 15
    assert summary.dropped == summary.failed == 0
    assert summary.video_s == pytest.approx(19.9)
    assert 1 <= summary.model_calls <= 5 and len(summary.latencies_ms) == 5
    assert summary.p95_latency_ms >= summary.mean_latency_ms > 0
    for obs in rows:
        assert started <= obs.ts - obs.video_t <= time.time()  # ts = watch start + video_t
        assert obs.answers == {"q1": True} and obs.parsed and obs.model == "scripted"
        assert Path(obs.thumb_path).is_file()
        assert Path(obs.thumb_path).parent == settings.thumbs_dir / source_slug(str(synthetic_clip))
        assert max(cv2.imread(obs.thumb_path).shape[:2]) <= settings.thumb_side
    assert rows[0].gate_score is None and rows[1].gate_score > settings.gate_threshold
    assert calls == [f"{name}:{o.id}" for o in rows for name in ("episodes", "broken", "rules")]
    assert all(listener.closed for listener in listeners)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["id"] for line in lines] == [o.id for o in rows]
    assert {"source", "ts", "video_t", "summary", "gate_score", "latency_ms"} <= set(lines[0])
    assert len(updates) == 20 and sum(u is not None for u in updates) == 5


def test_files_are_stored_under_their_absolute_path_and_found_from_anywhere(
    synthetic_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(synthetic_clip.parent)
    settings = Settings(home=tmp_path / "home", heartbeat_s=60.0)
    jsonl = tmp_path / "watch.jsonl"
    summary, store = watch([synthetic_clip.name], settings, counting_backend(), jsonl=jsonl)
    absolute = str(synthetic_clip.resolve())
    assert list(summary.sources) == [absolute]
    assert len(store.between(source=absolute)) == store.count() == summary.analysed > 0
    assert {json.loads(line)["source"] for line in jsonl.read_text().splitlines()} == {absolute}
    monkeypatch.chdir(tmp_path)  # another directory: the stored name still finds the file
    image, when = grab(store, SourceReader(store), store.recent(None, 1)[0].source, 64)
    assert image.size and when.startswith("video")
    with pytest.raises(ScenewatchError, match="twice"):
        watch([absolute, os.path.relpath(synthetic_clip)], settings, counting_backend())


def test_prompts_carry_the_window_and_a_restart_appends(synthetic_clip: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", window=2, heartbeat_s=3.0, pipeline_depth=1)
    backend = counting_backend()
    watch([synthetic_clip], settings, backend)
    prompts = [prompt_of(r) for r in backend.requests]
    assert "first observation" in prompts[0]
    assert "frame 0" in prompts[1] and "frame 1" in prompts[2] and "frame 0" not in prompts[3]
    first_run = len(prompts)
    later = counting_backend()
    _, store = watch([synthetic_clip], settings, later)
    assert store.count() == 2 * first_run
    assert f"frame {first_run - 1}" in prompt_of(later.requests[0])  # seeded from the store


def test_unparseable_answers_are_stored_as_text(synthetic_clip: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    _, store = watch([synthetic_clip], settings, ScriptedBackend(default="A red box, I think.  "))
    rows = store.between()
    assert rows and all(not o.parsed and o.summary == "A red box, I think." for o in rows)


def test_two_sources_share_one_engine_and_are_batched_together(tmp_path: Path) -> None:
    wide = write_clip(tmp_path / "wide.mp4", size=(320, 240), appearances=(Appearance(2.0, 9.0),))
    tall = write_clip(tmp_path / "tall.mp4", size=(240, 320), appearances=(Appearance(3.0, 11.0),))
    settings = Settings(home=tmp_path / "home", heartbeat_s=2.0, batch_wait_ms=200)
    backend = counting_backend()
    summary, store = watch([wide, tall], settings, backend)
    assert set(store.sources()) == {str(wide), str(tall)}
    assert summary.sources[str(wide)].analysed + summary.sources[str(tall)].analysed == store.count()
    shapes = [{request.images[0].size for request in batch} for batch in backend.batches]
    assert any(len(sizes) == 2 for sizes in shapes)  # one batch held frames of both sources
    assert summary.model_calls == len(backend.batches) < store.count()


class FlakyBackend(ScriptedBackend):
    """Fails every other batch."""

    def __init__(self) -> None:
        super().__init__(default='{"summary": "ok"}')
        self.calls = 0

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        self.calls += 1
        if self.calls % 2 == 0:
            raise RuntimeError("CUDA out of memory")
        return super().generate(requests)


def test_model_failures_are_logged_skips(
    synthetic_clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path / "home", pipeline_depth=1, heartbeat_s=2.0)
    with caplog.at_level(logging.WARNING):
        summary, store = watch([synthetic_clip], settings, FlakyBackend())
    assert summary.failed > 0 and store.count() == summary.analysed > 0
    assert "out of memory" in caplog.text
    assert not summary.errors


def test_an_unreadable_folder_image_is_a_logged_skip(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    for index in range(4):
        cv2.imwrite(str(folder / f"{index}.jpg"), np.full((60, 80, 3), index * 60, np.uint8))
    (folder / "2.jpg").write_bytes(b"\xff\xd8 truncated")
    settings = Settings(home=tmp_path / "home", frame_interval_s=5.0)
    with caplog.at_level(logging.WARNING):
        summary, store = watch([folder], settings, counting_backend())
    assert [o.video_t for o in store.between()] == [0.0, 5.0, 15.0]
    assert summary.failed == 1 and "2.jpg" in caplog.text


def test_bad_files_raise_clear_errors_and_close_the_listeners(tmp_path: Path, synthetic_clip: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 50)
    settings = Settings(home=tmp_path / "home")
    listener = Recorder([], "l")
    with pytest.raises(ScenewatchError, match="corrupt"):
        watch([synthetic_clip, corrupt], settings, counting_backend(), listeners=[listener])
    assert listener.closed
    with pytest.raises(ScenewatchError, match="twice"):
        watch([synthetic_clip, synthetic_clip], settings, counting_backend())


def test_stop_abandons_queued_work_and_keeps_what_was_committed(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "busy.mp4", duration_s=30.0, appearances=tuple(
        Appearance(t, t + 1.0, (0, 0, 255 - 8 * t)) for t in range(0, 30, 2)
    ))  # fmt: skip
    settings = Settings(home=tmp_path / "home", pipeline_depth=4, batch_size=1, heartbeat_s=1.0)
    stop = threading.Event()
    backend = SlowBackend(0.1, default='{"summary": "slow"}')
    threading.Timer(0.5, stop.set).start()
    summary, store = watch([clip], settings, backend, stop=stop)
    assert stop.is_set() and summary.sampled < 30
    assert store.count() == summary.analysed == len(backend.requests)
    assert summary.abandoned >= 1
    assert store.execute("PRAGMA integrity_check")[0][0] == "ok"


def test_hurry_abandons_the_answers_in_flight_without_waiting_for_them(
    synthetic_clip: Path, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", pipeline_depth=4, batch_size=2)
    store = Store(settings.db_path)
    stop, hurry = threading.Event(), threading.Event()
    engine = Engine(SlowBackend(3.0, default='{"summary": "slow"}'), batch_size=2, batch_wait_ms=0)
    threading.Timer(0.5, lambda: (stop.set(), hurry.set())).start()
    started = time.monotonic()
    try:
        summary = run_watch(
            [str(synthetic_clip)], settings, engine=engine, store=store, stop=stop, hurry=hurry
        )
        took = time.monotonic() - started
    finally:
        engine.close()  # the batch it was on ends now, after the watch: nobody commits it
    assert took < 2.0  # the first batch takes 3 s
    assert summary.analysed == store.count() == 0 and summary.abandoned >= 2
    assert store.execute("PRAGMA integrity_check")[0][0] == "ok"


def test_a_database_failure_stops_that_source_with_a_message(
    synthetic_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_add(self: Store, obs: Observation) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "add", broken_add)
    with caplog.at_level(logging.ERROR):
        summary, _ = watch([synthetic_clip], Settings(home=tmp_path / "home"), counting_backend())
    assert summary.errors == {str(synthetic_clip): "disk I/O error"}
    assert "Traceback" not in caplog.text


def test_an_unwritable_jsonl_path_is_a_clear_error(synthetic_clip: Path, tmp_path: Path) -> None:
    with pytest.raises(ScenewatchError, match="cannot write"):
        watch([synthetic_clip], Settings(home=tmp_path / "home"), counting_backend(), jsonl=tmp_path)


def test_a_source_that_yields_nothing_ends_with_an_error_and_the_others_go_on(
    synthetic_clip: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a picture, just text")
    settings = Settings(home=tmp_path / "home")
    summary, store = watch([synthetic_clip, fake], settings, counting_backend())
    assert "no frame could be read" in summary.errors[str(fake)]
    assert summary.sources[str(synthetic_clip)].analysed == store.count() > 0
    assert not summary.fruitless
    alone, _ = watch([fake], Settings(home=tmp_path / "alone"), counting_backend())
    assert alone.fruitless and alone.analysed == 0


def test_a_folder_of_unreadable_images_is_fruitless(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    for index in range(3):
        (folder / f"{index}.jpg").write_bytes(b"\xff\xd8 truncated")
    summary, _ = watch([folder], Settings(home=tmp_path / "home", frame_interval_s=1.0), counting_backend())
    assert "no image could be read" in summary.errors[str(folder)]
    assert summary.failed == 3 and summary.fruitless


def test_a_model_that_fails_every_frame_is_fruitless_and_a_quiet_scene_is_not(
    synthetic_clip: Path, tmp_path: Path
) -> None:
    failing, _ = watch([synthetic_clip], Settings(home=tmp_path / "a"), BrokenBackend())
    assert failing.failed > 0 and failing.analysed == 0 and not failing.errors
    assert failing.fruitless
    quiet, _ = watch([synthetic_clip], Settings(home=tmp_path / "b", heartbeat_s=60.0), counting_backend())
    assert quiet.skipped > quiet.analysed > 0 and not quiet.fruitless
