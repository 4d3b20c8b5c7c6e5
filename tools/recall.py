"""The ``recall`` tool: search past observations by meaning, within a time range."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel, Field

from memory.vectors import Recalled, VectorIndex
from prompts import quote
from tools.timeline import cite, parse_when


def format_recalled(found: Sequence[Recalled]) -> list[str]:
    """One line per recalled observation, oldest first, cited by time; source and summary quoted
    (:func:`prompts.quote`: they are data, never the prompt's own words)."""
    ordered = sorted(found, key=lambda item: item.ts)
    return [
        f"- {cite(item)} [{quote(item.source)}] (match {item.score:.2f}): {quote(item.summary)}"
        for item in ordered
    ]


class RecallArgs(BaseModel):
    query: str = Field(description="what to look for, in words (for example: a person at the door)")
    since: str | None = Field(
        default=None, description="only observations from this time on (10m, 2h, 14:05)"
    )
    until: str | None = Field(default=None, description="only observations up to this time (10m, 14:30)")


def make_recall_tool(vectors: VectorIndex, k: int = 5) -> BaseTool:
    """``recall``: the ``k`` observations closest in meaning to a query (one search at a time:
    the vector index is not thread-safe and the agent may run tool calls in parallel)."""
    lock = threading.Lock()

    @tool("recall", args_schema=RecallArgs)
    def recall(query: str, since: str | None = None, until: str | None = None) -> str:
        """Search everything the camera has seen for observations matching a description,
        optionally within a time range. Returns the best matches, oldest first, with their
        times: use it for "when did ...", "did anyone ...", "was there ever ..." questions."""
        start, end = parse_when(since) if since else None, parse_when(until) if until else None
        with lock:
            found = vectors.recall(query, since=start, until=end, k=k)
        if not found:
            return f"No observations match {query!r} in that time range."
        return "\n".join([f"Observations matching {query!r}, oldest first:", *format_recalled(found)])

    return recall
