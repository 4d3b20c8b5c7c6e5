"""What every source yields: a :class:`Frame`, and the :class:`FrameSource` protocol the watch loop reads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One sampled frame: BGR pixels, epoch time and (files, folders) position in seconds."""

    image: np.ndarray
    ts: float
    video_t: float | None = None


class FrameSource(Protocol):
    """What the watch loop reads frames from."""

    name: str
    live: bool
    unreadable: int  # frames or images that could not be decoded (logged and skipped)
    video_s: float  # seconds of video covered so far (0 for live sources)

    def frames(self, stop: threading.Event) -> Iterator[Frame]: ...

    def close(self) -> None: ...
