"""The agent's tools, built over the process's shared engine, store and settings."""

from __future__ import annotations

from langchain_core.tools import BaseTool

from agent.core.config import Settings
from memory.store import Store
from memory.vectors import VectorIndex
from tools.compare import make_compare_tool
from tools.frames import FrameReader
from tools.look import make_look_tool
from tools.narrate import make_narrate_tool
from tools.read_text import make_read_text_tool
from tools.recall import make_recall_tool
from tools.timeline import make_timeline_tool
from tools.troubleshoot import make_troubleshoot_tool
from tools.vision.base import VisionBackend
from tools.watch import WatchRegistry, make_watch_tool


def build_tools(
    engine: VisionBackend,
    store: Store,
    settings: Settings,
    *,
    vectors: VectorIndex,
    frames: FrameReader,
    source: str | None = None,
    watches: WatchRegistry | None = None,
) -> list[BaseTool]:
    """look, compare, recall, timeline, narrate, troubleshoot and read_text; and watch, given ``watches``.

    ``engine`` answers every vision request (pass the :class:`~tools.vision.engine.Engine` so the
    watch loop and the agent share one model); ``frames`` reads the sources for look and compare;
    ``source`` is the default for tools that take one (the source the conversation is about);
    ``watches`` takes the watches the agent sets up (:class:`agent.events.watchlist.Watchlist`).
    """
    tools = [
        make_look_tool(engine, store, frames, settings, source),
        make_compare_tool(engine, store, frames, settings, source),
        make_recall_tool(vectors, k=settings.recall_k),
        make_timeline_tool(store),
        make_narrate_tool(engine, store, settings),
        make_troubleshoot_tool(engine, settings),
        make_read_text_tool(store, frames, source),
    ]
    if watches is not None:
        tools.append(make_watch_tool(watches, source))
    return tools
