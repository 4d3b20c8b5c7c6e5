"""Change moments of a clip, found by a pixel measure of their own, and whether a run covered them.

A frame sampled as the watch samples files is a change moment when, against the previous
sampled frame, at least ``MIN_CHANGED`` of the pixels of a blurred 160-pixel grey copy moved
by more than ``PIXEL_STEP`` grey levels. The measure compares consecutive samples (the gate compares with
the last *analysed* frame, at another size, with its own threshold), so it judges the gate
rather than repeating it. A moment is covered when a frame within one sampling interval of
it was analysed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agent.sources import VideoFileSource

WIDTH = 160
PIXEL_STEP = 25
MIN_CHANGED = 0.02


@dataclass
class ChangeMoment:
    """A sampled time whose frame differs strongly from the previous sample, and its coverage."""

    t: float
    changed: float  # fraction of pixels that moved
    analysed_at: float | None = None  # the nearest analysed time within one interval

    @property
    def covered(self) -> bool:
        return self.analysed_at is not None


def _grey(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    small = cv2.resize(frame, (WIDTH, max(1, round(height * WIDTH / width))), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0).astype(np.int16)


def change_moments(path: Path, every_s: float) -> list[ChangeMoment]:
    """The sampled times at which the picture changed strongly since the previous sample."""
    moments, previous = [], None
    source = VideoFileSource(path, name=str(path), every_s=every_s, start_ts=0.0)
    try:
        for frame in source.frames(threading.Event()):
            grey = _grey(frame.image)
            if previous is not None:
                changed = float(np.mean(np.abs(grey - previous) > PIXEL_STEP))
                if changed >= MIN_CHANGED:
                    moments.append(ChangeMoment(round(frame.video_t or 0.0, 3), round(changed, 4)))
            previous = grey
    finally:
        source.close()
    return moments


def mark_coverage(moments: Sequence[ChangeMoment], analysed: Sequence[float], every_s: float) -> int:
    """Set each moment's ``analysed_at`` (nearest analysed time within one interval); return the misses."""
    slack = every_s + 0.05 * every_s
    for moment in moments:
        near = [t for t in analysed if abs(t - moment.t) <= slack]
        moment.analysed_at = min(near, key=lambda t: abs(t - moment.t)) if near else None
    return sum(not moment.covered for moment in moments)
