"""The ``narrate`` tool: the story of a time range, written from its episodes and events."""

from __future__ import annotations

from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel, Field

from agent.core.config import Settings
from agent.core.durations import clock
from memory.store import Store
from tools.narrative import narrate
from tools.timeline import parse_when
from tools.vision.base import VisionBackend


class NarrateArgs(BaseModel):
    since: str = Field(description="start of the range: 10m, 2h, 14:05 or 2024-05-01T14:05")
    until: str | None = Field(default=None, description="end of the range (default: now)")


def make_narrate_tool(engine: VisionBackend, store: Store, settings: Settings) -> BaseTool:
    """``narrate``: a change-aware narrative of a range, written by the model through ``engine``."""

    @tool("narrate", args_schema=NarrateArgs)
    def narrate_tool(since: str, until: str | None = None) -> str:
        """Tell the story of a time range in a few sentences: what was there, what changed and
        when. Use it for "what happened this morning", "summarise the last hour"."""
        start, end = parse_when(since), parse_when(until) if until else None
        story = narrate(store, engine, start, end, None, settings)
        span = f"{clock(start)} to {clock(end) if end is not None else 'now'}"
        return f"Narrative from {span} ({story.episodes} episodes, {story.events} events): {story.text}"

    return narrate_tool
