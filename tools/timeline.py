"""The ``timeline`` tool, and time for the agent: reading the times it passes to tools, citing
observation times.

Answers cite observations by local clock time, plus the position in the video for file
sources (``14:03:05 (video 0:05.0)``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Protocol

from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel, Field

from agent.core.durations import clock, clock_format, current_time, parse_since, video_position
from agent.core.errors import ScenewatchError
from memory.store import Store
from memory.timeline import TimelineEntry, timeline
from tools.narrative import log_line

TIMELINE_LINES = 60  # most timeline entries one answer lists
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


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
        base = datetime.fromtimestamp(current_time() if now is None else now)
        try:
            return base.replace(hour=hour, minute=minute, second=second, microsecond=0).timestamp()
        except ValueError:
            raise ScenewatchError(f"not a time of day: {text!r}") from None
    return parse_since(text, now=now)


def video_at(store: Store, source: str, ts: float) -> float | None:
    """The video position of time ``ts`` of a file source (None for live sources)."""
    latest = store.latest_at(source, ts)
    if latest is None or latest.video_t is None:
        return None
    return latest.video_t + ts - latest.ts


def timeline_line(store: Store, entry: TimelineEntry) -> str:
    """A timeline entry as the model reads it, with video positions for file sources."""
    line = f"- {log_line(entry, clock_format(entry.start))}"
    start = video_at(store, entry.source, entry.start)
    if start is None:
        return line
    if entry.kind == "event":
        return f"{line} (video {video_position(start)})"
    return f"{line} (video {video_position(start)}–{video_position(start + entry.duration_s)})"


class TimelineArgs(BaseModel):
    since: str = Field(description="start of the range: 10m, 2h, 14:05 or 2024-05-01T14:05")
    until: str | None = Field(default=None, description="end of the range (default: now)")


def make_timeline_tool(store: Store) -> BaseTool:
    """``timeline``: episodes (spans of one state) and events of a time range, from SQLite."""

    @tool("timeline", args_schema=TimelineArgs)
    def timeline_tool(since: str, until: str | None = None) -> str:
        """List what happened in a time range, in order: episodes (spans in which the scene
        stayed the same, with how long they lasted) and alert events. Use it for "what
        happened", "how long" and "when did it start/stop" questions."""
        start, end = parse_when(since), parse_when(until) if until else None
        entries = timeline(store, start, end)
        if not entries:
            return "Nothing was observed in that time range."
        lines = [timeline_line(store, entry) for entry in entries[:TIMELINE_LINES]]
        if len(entries) > TIMELINE_LINES:
            lines.append(f"... and {len(entries) - TIMELINE_LINES} more entries: narrow the range.")
        return "\n".join(["Timeline, oldest first:", *lines])

    return timeline_tool
