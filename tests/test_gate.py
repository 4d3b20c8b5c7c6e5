"""The change gate: noise does not wake it, a change does, the heartbeat is in source time."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from agent.bench.clips import Appearance, write_clip
from agent.core.config import Settings
from agent.pipeline.gate import ChangeGate, change_score, grey_thumbnail
from agent.sources import VideoFileSource

THRESHOLD = Settings().gate_threshold


def scene(noise: int = 0, box: tuple[int, int, int, int] | None = None, seed: int = 0) -> np.ndarray:
    """A 240×320 textured BGR frame with optional sensor noise and a white box (x, y, w, h)."""
    yy, xx = np.mgrid[0:240, 0:320]
    frame = np.stack([xx * 255 // 320, yy * 255 // 240, np.full_like(xx, 120)], axis=-1).astype(np.int16)
    frame += np.random.default_rng(seed).integers(-noise, noise + 1, frame.shape, dtype=np.int16)
    if box:
        x, y, w, h = box
        frame[y : y + h, x : x + w] = 255
    return np.clip(frame, 0, 255).astype(np.uint8)


def test_thumbnail_keeps_the_aspect_ratio() -> None:
    thumb = grey_thumbnail(scene(), 64)
    assert thumb.shape == (48, 64)
    assert thumb.min() >= 0.0 and thumb.max() <= 1.0


def test_noise_scores_nothing_and_a_person_sized_box_scores_above_the_threshold() -> None:
    base = grey_thumbnail(scene(noise=12, seed=1), 64)
    assert change_score(base, grey_thumbnail(scene(noise=12, seed=2), 64)) < THRESHOLD / 4
    person = grey_thumbnail(scene(noise=12, seed=2, box=(150, 80, 16, 48)), 64)  # 1% of the picture
    assert change_score(base, person) >= THRESHOLD


def test_different_sizes_count_as_a_full_change() -> None:
    assert change_score(np.zeros((4, 4), np.float32), np.zeros((4, 5), np.float32)) == 1.0


def test_gate_skips_unchanged_and_wakes_on_change_and_heartbeat() -> None:
    gate = ChangeGate(threshold=THRESHOLD, side=64, heartbeat_s=10.0)
    still, changed = scene(noise=3), scene(noise=3, box=(100, 60, 80, 80))
    assert gate.check(still, 0.0).reason == "first"
    assert not gate.check(still, 1.0).analyse
    assert gate.check(changed, 2.0).reason == "pixels"
    assert not gate.check(changed, 11.9).analyse  # compared with the last analysed frame
    beat = gate.check(changed, 12.0)
    assert beat.reason == "heartbeat" and beat.score is not None and beat.score < THRESHOLD
    assert (gate.sampled, gate.skipped) == (5, 2)
    assert gate.skipped_fraction == pytest.approx(0.4)


def test_reset_makes_the_next_frame_analysed() -> None:
    gate = ChangeGate(threshold=THRESHOLD, side=64, heartbeat_s=10.0)
    gate.check(scene(), 0.0)
    gate.reset()
    assert gate.check(scene(), 1.0).reason == "first"


# Clips the threshold was not tuned on: light or heavy noise, small or large "people" that
# move (a box hopping along every 0.5 s) or stand still, at 10 and 25 fps.
def walker(start: float, end: float, width: float, height: float, y: float, color=(40, 40, 40)):
    """Boxes that cross the frame from left to right between ``start`` and ``end``."""
    steps = round((end - start) / 0.5)
    return tuple(
        Appearance(start + i * 0.5, start + (i + 1) * 0.5, color, (0.05 + 0.85 * i / steps, y, width, height))
        for i in range(steps)
    )


CLIPS = {
    "small walker, light noise": dict(appearances=walker(4.0, 10.0, 0.05, 0.2, 0.5), noise=3, fps=10.0),
    "large walker, heavy noise": dict(
        appearances=walker(3.0, 8.0, 0.12, 0.5, 0.3, (200, 220, 250)), noise=14, fps=25.0
    ),
    "parked box": dict(appearances=(Appearance(5.0, 12.0),), noise=6, fps=10.0),
}


def sampled_decisions(path: Path, heartbeat_s: float = 10.0) -> list[tuple[float, bool]]:
    source = VideoFileSource(path, name=path.name, every_s=1.0, start_ts=0.0)
    gate = ChangeGate(threshold=THRESHOLD, side=64, heartbeat_s=heartbeat_s)
    try:
        return [
            (frame.video_t or 0.0, gate.check(frame.image, frame.video_t or 0.0).analyse)
            for frame in source.frames(threading.Event())
        ]
    finally:
        source.close()


@pytest.mark.parametrize("name", CLIPS)
def test_synthetic_changes_are_seen_and_still_stretches_skipped(tmp_path: Path, name: str) -> None:
    spec = CLIPS[name]
    path = write_clip(tmp_path / "clip.mp4", duration_s=24.0, seed=7, **spec)
    decisions = sampled_decisions(path)
    analysed = [t for t, analyse in decisions if analyse]
    changes = {a.start_s for a in spec["appearances"]} | {a.end_s for a in spec["appearances"]}
    for change in changes:  # every change is analysed at the first sample that shows it
        assert any(change <= t < change + 1.0 for t in analysed), (name, change, analysed)
    last_change = max(changes)
    still = [(t, a) for t, a in decisions if t >= last_change + 1.0]
    # After the last change only heartbeats: at most one per 10 s.
    assert sum(a for _, a in still) <= len(still) // 10 + 1, (name, analysed)
