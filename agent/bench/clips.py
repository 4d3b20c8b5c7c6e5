"""Synthetic video clips with known change times, for tests, demos and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class Appearance:
    """A coloured box visible from ``start_s`` to ``end_s`` (seconds into the clip)."""

    start_s: float
    end_s: float
    color: tuple[int, int, int] = (0, 0, 255)  # BGR: red
    box: tuple[float, float, float, float] = (0.35, 0.3, 0.3, 0.4)  # x, y, w, h as fractions


def write_clip(
    path: str | Path,
    *,
    duration_s: float = 20.0,
    fps: float = 10.0,
    size: tuple[int, int] = (320, 240),
    appearances: tuple[Appearance, ...] = (Appearance(5.0, 12.0),),
    noise: int = 3,
    seed: int = 0,
) -> Path:
    """Write an MP4 of a static textured scene with light sensor noise and the given boxes."""
    out = Path(path)
    width, height = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([(xx * 255 // width), (yy * 255 // height), np.full_like(xx, 120)], axis=-1).astype(
        np.int16
    )
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {out}")
    try:
        for index in range(round(duration_s * fps)):
            t = index / fps
            frame = background + rng.integers(-noise, noise + 1, background.shape, dtype=np.int16)
            for item in appearances:
                if item.start_s <= t < item.end_s:
                    x, y, w, h = item.box
                    x0, y0 = int(x * width), int(y * height)
                    frame[y0 : y0 + int(h * height), x0 : x0 + int(w * width)] = item.color
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return out
