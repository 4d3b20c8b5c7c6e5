"""Real footage (SCENEWATCH_TEST_MEDIA): activity is covered, a static scene is mostly skipped."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.config import Settings
from agent.pipeline.watch import run_watch
from agent.sources import VideoFileSource
from memory.store import Store
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

pytestmark = pytest.mark.media


def uncovered_windows(times: list[float], start: float, end: float, width: float = 2.0) -> list[float]:
    """Starts of the ``width``-second windows from ``start`` to ``end`` that hold no observation."""
    starts = [start + i * width for i in range(math.ceil((end - start) / width))]
    return [s for s in starts if not any(s <= t < min(s + width, end) for t in times)]


def sampled_between(path: Path, first: int, last: int) -> int:
    """How many 1 s samples of ``path`` fall on seconds ``first`` .. ``last``."""
    source = VideoFileSource(path, name=path.name, every_s=1.0, start_ts=0.0)
    try:
        return sum(first <= round(f.video_t or 0) <= last for f in source.frames(threading.Event()))
    finally:
        source.close()


def test_watch_shopfront_with_the_tiny_model(
    media_dir: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``scenewatch watch shopfront_cctv.mp4 --model TINY --every 1s --jsonl out.jsonl``."""
    monkeypatch.setenv("SCENEWATCH_MAX_NEW_TOKENS", "8")  # gibberish either way; keeps the test quick
    clip, jsonl = media_dir / "shopfront_cctv.mp4", tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["watch", str(clip), "--model", str(tiny_checkpoint), "--every", "1s", "--jsonl", str(jsonl)]
    )
    assert result.exit_code == 0, result.output
    times = [json.loads(line)["video_t"] for line in jsonl.read_text().splitlines()]
    # A person passes between 3 s and 16 s: every 2 s window of it has an observation.
    assert uncovered_windows(times, 3.0, 16.0) == []
    # From 20 s to 54 s the scene is static: 35 samples, at most half of them analysed.
    assert sampled_between(clip, 20, 54) == 35
    static = [t for t in times if 20 <= round(t) <= 54]
    assert len(static) <= 17, static
    assert "sampled" in result.output and "65" in result.output


def test_runner_crossing_is_covered(media_dir: Path, tmp_path: Path) -> None:
    """Footage the threshold was not tuned on: the runner is seen all the way across."""
    settings = Settings(home=tmp_path / "home")
    store = Store(settings.db_path)
    with Engine(ScriptedBackend(default='{"summary": "a runner"}')) as engine:
        summary = run_watch([str(media_dir / "runner.mp4")], settings, engine=engine, store=store)
    times = [o.video_t for o in store.between()]
    assert uncovered_windows(times, 1.0, 16.0) == []
    assert summary.sampled == 18 and summary.analysed == len(times)
