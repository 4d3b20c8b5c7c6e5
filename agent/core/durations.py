"""Durations and points in time as text: parsed as people type them (``1s``, ``500ms``, ``10m``,
``1h``, ``30d``) and written as people read them (local clock times, video positions)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime

from agent.core.errors import ScenewatchError

_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})\s*([a-z]*)")
_DURATION = re.compile(rf"(?:{_NUMBER}\s*[a-z]*\s*)+")
_EPOCH_MIN = 1e8  # a bare number this large is a timestamp (1973 on), not a number of seconds

_clock: Callable[[], float] = time.time


def current_time() -> float:
    """The current time in epoch seconds: what "10m ago", "today" and "now" are counted from.

    The wall clock, unless :func:`use_clock` put another in its place (tests fix the time of day).
    """
    return _clock()


def use_clock(clock: Callable[[], float] | None) -> None:
    """Count "now" from ``clock`` (a function returning epoch seconds); None: the wall clock again."""
    global _clock
    _clock = clock or time.time


def parse_duration(text: str | float) -> float:
    """Seconds in ``text``: ``2`` (seconds), ``1.5s``, ``500ms``, ``10m``, ``1h30m``, ``30d``.

    Raises ScenewatchError for anything else.
    """
    if isinstance(text, int | float):
        if text < 0:
            raise ScenewatchError(f"a duration cannot be negative: {text}")
        return float(text)
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise ScenewatchError(f"not a duration: {text!r} (examples: 2, 1s, 500ms, 10m, 1h, 30d)")
    parts = _PART.findall(cleaned)
    if len(parts) > 1 and not all(unit for _, unit in parts):
        raise ScenewatchError(f"not a duration: {text!r} (give each number a unit: 1h30m)")
    seconds = 0.0
    for number, unit in parts:
        if (unit or "s") not in _UNITS:
            raise ScenewatchError(f"unknown unit {unit!r} in {text!r} (use ms, s, m, h, d or w)")
        seconds += float(number) * _UNITS[unit or "s"]
    return seconds


def parse_since(text: str, *, now: float | None = None) -> float:
    """Epoch seconds from ``text``: a duration ago (``10m``, ``2h ago``), an ISO date, or an epoch time."""
    cleaned = text.strip().lower().removesuffix("ago").strip()
    try:
        number = float(cleaned)
    except ValueError:
        number = None
    if number is not None and number >= _EPOCH_MIN:
        return number
    if _DURATION.fullmatch(cleaned):
        return (current_time() if now is None else now) - parse_duration(cleaned)
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ScenewatchError(
            f"not a time: {text!r} (a duration ago such as 10m or 2h, or a date such as 2024-05-01T12:00)"
        ) from None


def clock_format(ts: float, *, now: float | None = None) -> str:
    """``strftime`` format for ``ts``: the time alone today, with the date on another day."""
    today = datetime.fromtimestamp(current_time() if now is None else now).date()
    return "%H:%M:%S" if datetime.fromtimestamp(ts).date() == today else "%Y-%m-%d %H:%M:%S"


def clock(ts: float, *, now: float | None = None) -> str:
    """Local time of ``ts``: ``14:03:05`` today, ``2024-05-01 14:03:05`` on another day."""
    return datetime.fromtimestamp(ts).strftime(clock_format(ts, now=now))


def format_duration(seconds: float) -> str:
    """A duration as people read it: ``500ms``, ``45s``, ``3m 20s``, ``2h 05m``, ``3d 4h``."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    seconds = max(0, round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def video_position(seconds: float) -> str:
    """A position in a video as ``m:ss.s`` (``0:05.0``, ``12:30.5``)."""
    minutes, rest = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}:{rest:04.1f}"
