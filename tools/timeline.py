"""Time for the agent: reading the times it passes to tools, citing observation times.

Answers cite observations by local clock time, plus the position in the video for file
sources (``14:03:05 (video 0:05.0)``).
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Protocol

from agent.durations import parse_since
from agent.errors import ScenewatchError

_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def clock(ts: float, *, now: float | None = None) -> str:
    """Local time of ``ts``: ``14:03:05`` today, ``2024-05-01 14:03:05`` on another day."""
    moment = datetime.fromtimestamp(ts)
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M:%S")


def video_position(seconds: float) -> str:
    """A position in a video as ``m:ss.s`` (``0:05.0``, ``12:30.5``)."""
    minutes, rest = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}:{rest:04.1f}"


class Timed(Protocol):
    """Anything seen at a time: an observation, a recalled observation."""

    ts: float
    video_t: float | None


def cite(item: Timed, *, now: float | None = None) -> str:
    """How answers cite an observation: local time, and the video position for file sources."""
    when = clock(item.ts, now=now)
    return when if item.video_t is None else f"{when} (video {video_position(item.video_t)})"


def parse_when(text: str, *, now: float | None = None) -> float:
    """Epoch seconds from a time the model wrote: ``10m`` or ``2h ago``, ``14:05`` (today),
    ``2024-05-01T14:05``, or an epoch number."""
    match = _CLOCK.fullmatch(text.strip())
    if match:
        hour, minute, second = (int(group or 0) for group in match.groups())
        base = datetime.fromtimestamp(time.time() if now is None else now)
        try:
            return base.replace(hour=hour, minute=minute, second=second, microsecond=0).timestamp()
        except ValueError:
            raise ScenewatchError(f"not a time of day: {text!r}") from None
    return parse_since(text, now=now)
