"""Sampling by time: which frames, at increasing (possibly irregular) times, to take every ``every_s``."""

from __future__ import annotations

import math


class TimeSampler:
    """Picks, from frames at increasing times, the one nearest each multiple of ``every_s``.

    The spacing may vary (variable frame rate, dropped frames): a frame is taken when it is at or
    past the sampling time less half the gap *before* it, the best guess of the gap after it (which
    is unknown until the next frame comes). With a constant spacing this takes the frame nearest
    each sampling time, the first of two equally near.
    """

    def __init__(self, every_s: float) -> None:
        if not every_s > 0:
            raise ValueError(f"a sampling interval must be more than 0 s (got {every_s})")
        self.every_s = every_s
        self.next_t = 0.0
        self.target = 0.0  # the sampling time the last due frame was taken for
        self._previous: float | None = None

    def due(self, t: float) -> bool:
        """Whether the frame at ``t`` is the one to take for the next sampling time."""
        tolerance = 0.0 if self._previous is None else max(0.0, (t - self._previous) / 2)
        self._previous = t
        if t + tolerance < self.next_t:
            return False
        k = math.floor((t + tolerance) / self.every_s)
        self.target, self.next_t = k * self.every_s, (k + 1) * self.every_s
        return True


class MonotonicTime:
    """Decoder times made increasing, to the microsecond.

    A missing time (None: some decoders give a file's last frame none) is the previous time plus the
    last gap. A time that goes back (a timestamp reset: an HLS discontinuity, a camera restarting its
    clock) goes on from the previous time plus the last gap, and the times after it are shifted as
    much, so that the spacing of the frames is kept.
    """

    def __init__(self) -> None:
        self.last: float | None = None
        self.gap = 0.0  # the last positive spacing
        self._shift = 0.0

    def __call__(self, t: float | None) -> float:
        if t is None:
            t = 0.0 if self.last is None else self.last + self.gap
        else:
            t += self._shift
            if self.last is not None and t < self.last:
                self._shift += self.last + self.gap - t
                t = self.last + self.gap
        t = round(t, 6)
        if self.last is not None and t > self.last:
            self.gap = t - self.last
        self.last = t
        return t
