"""The change gate: wake the model only when the picture changed, or when a heartbeat is due.

Each sampled frame is shrunk to a small grey thumbnail (longest side ``gate_side``, area
averaging, which also averages sensor and compression noise away) and compared with the
thumbnail of the last frame sent to the model. The score is the *changed area*: the fraction
of thumbnail pixels whose grey level moved by more than :data:`PIXEL_DELTA` (0..1). A person
walking through a CCTV view changes a few percent of the picture; compression shimmer, a
flickering clock overlay and slow light drift change well under one percent. (Plain mean
absolute difference mixes "a little everywhere" with "a lot somewhere": on the shopfront
footage its usable thresholds spanned only 0.004..0.008, the changed area's 0.005..0.02.)

With the detector stage (:mod:`agent.pipeline.perceive`) the gate also knows what the tracked
objects did. A frame is analysed, and the reason counted, for the first of:

- ``first``: the first frame of the source (or the first after a lost analysis);
- ``tracks``: a track appeared or left, or entered or left a zone (or, under ``only_while``,
  a wanted class came back into view);
- ``pixels``: the changed area reached ``threshold`` (lights, things the detector has no class
  for); a source may turn this reason off (``pixels: false``: tracks and heartbeat only);
- ``heartbeat``: ``heartbeat_s`` of source time (video time for files, capture time for live
  sources) passed since the last analysed frame;

else it is skipped as ``unchanged``, or as ``absent`` when the source asks for the vision model
only while certain classes are in view (``only_while: [person]``) and none is. Frames whose
analysis was dropped or failed do not count: :meth:`ChangeGate.reset` makes the next frame analysed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

PIXEL_DELTA = 0.08
"""A thumbnail pixel counts as changed when its grey level moved by more than this (0..1)."""

Reason = Literal["first", "tracks", "pixels", "heartbeat", "unchanged", "absent"]
REASONS: tuple[Reason, ...] = ("first", "tracks", "pixels", "heartbeat", "unchanged", "absent")


@dataclass(frozen=True)
class GateDecision:
    """Whether to analyse a frame, its change score (None for the first) and why."""

    analyse: bool
    score: float | None
    reason: Reason


def grey_thumbnail(frame: np.ndarray, side: int) -> np.ndarray:
    """A grey float32 thumbnail (0..1) whose longest side is ``side``, by area averaging."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    height, width = grey.shape[:2]
    scale = min(1.0, side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def change_score(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels that changed by more than PIXEL_DELTA (1.0 when the shapes differ)."""
    if a.shape != b.shape:
        return 1.0
    return float(np.count_nonzero(np.abs(a - b) > PIXEL_DELTA)) / a.size


class ChangeGate:
    """Decides, frame by frame, which frames of one source go to the model."""

    def __init__(self, threshold: float, side: int, heartbeat_s: float, *, pixels: bool = True) -> None:
        self.threshold = threshold
        self.side = side
        self.heartbeat_s = heartbeat_s
        self.pixels = pixels
        self.sampled = 0
        self.skipped = 0
        self._reference: np.ndarray | None = None
        self._reference_t: float | None = None
        self._absent = False

    def check(
        self, frame: np.ndarray, t: float, *, tracks_changed: bool = False, present: bool | None = None
    ) -> GateDecision:
        """Score ``frame`` (BGR, at source time ``t``); an analysed frame becomes the reference.

        ``tracks_changed``: the tracked objects changed since the previous sampled frame;
        ``present``: whether the classes the source waits for are in view (None: it waits for none).
        """
        self.sampled += 1
        thumb = grey_thumbnail(frame, self.side)
        came_back, self._absent = self._absent and bool(present), present is False
        score = None if self._reference is None else change_score(thumb, self._reference)
        if present is False:
            decision = GateDecision(False, score, "absent")
        elif self._reference is None or self._reference_t is None:
            decision = GateDecision(True, None, "first")
        elif tracks_changed or came_back:
            decision = GateDecision(True, score, "tracks")
        elif self.pixels and score is not None and score >= self.threshold:
            decision = GateDecision(True, score, "pixels")
        elif t - self._reference_t >= self.heartbeat_s:
            decision = GateDecision(True, score, "heartbeat")
        else:
            decision = GateDecision(False, score, "unchanged")
        if decision.analyse:
            self._reference, self._reference_t = thumb, t
        else:
            self.skipped += 1
        return decision

    def reset(self) -> None:
        """Forget the reference (its analysis was lost): the next frame is analysed."""
        self._reference = self._reference_t = None

    @property
    def skipped_fraction(self) -> float:
        """Share of sampled frames the gate kept from the model."""
        return self.skipped / self.sampled if self.sampled else 0.0
