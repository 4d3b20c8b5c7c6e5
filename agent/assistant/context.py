"""What the agent is told with each question: the camera log, as quoted data, never as instructions.

Observation summaries are written by a vision model from what it sees, and a scene can hold text
(a sign, a screen, a note held up to the camera) that reads like an instruction. So the log never
joins the system prompt: it travels with the current question, between ``<scene_data>`` tags, each
text quoted as a JSON string whose ``<`` and ``>`` are escaped (no text can close the tags), and the
prompts say that what is inside is data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import BaseMessage, HumanMessage

from agent.core.durations import clock, current_time
from memory.observation import Observation
from memory.store import Store
from memory.vectors import VectorIndex
from prompts import quote, render_prompt
from tools.recall import format_recalled
from tools.timeline import cite

log = logging.getLogger(__name__)


def window_line(obs: Observation) -> str:
    """An observation as the model reads it: its time, then its description and changes, quoted."""
    line = f"- {cite(obs)}: {quote(obs.summary or obs.raw)}"
    return f"{line} changes: {quote(obs.changes)}" if obs.changes else line


@dataclass
class ObservationContext:
    """The camera log for a question: the window of the source and the observations recalled for it."""

    store: Store
    vectors: VectorIndex
    source: str | None
    window: int = 5
    k: int = 5

    def for_question(self, question: str) -> str:
        """The log for ``question`` (read fresh: the watch may still be adding)."""
        lines = [f"Local time now: {clock(current_time())}."]
        sources = ", ".join(quote(name) for name in self.store.sources())
        lines.append(f"Sources with observations: {sources or 'none'}.")
        if self.source:
            lines.append(f"\nLatest observations of {quote(self.source)} (oldest first):")
            recent = self.store.recent(self.source, self.window)
            lines += [window_line(obs) for obs in recent] or ["- none yet"]
        if question.strip():
            recalled = self.vectors.recall(question, source=self.source, k=self.k)
            lines.append("\nObservations recalled for the question (oldest first):")
            lines += format_recalled(recalled) or ["- none"]
        return "\n".join(lines)


def _last_question(messages: Sequence[BaseMessage]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), None)


class ContextMiddleware(AgentMiddleware):
    """Sends the current question with its camera log (``prompts/assistant_context.md``); the
    conversation the thread keeps holds the question alone."""

    def __init__(self, context: ObservationContext, on_context: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.context = context
        self.on_context = on_context

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        index = _last_question(request.messages)
        if index is None:
            return handler(request)
        question = request.messages[index].text
        block = self.context.for_question(question)
        log.debug("camera log given with the question:\n%s", block)
        if self.on_context is not None:
            self.on_context(block)
        messages = list(request.messages)
        messages[index] = HumanMessage(render_prompt("assistant_context", log=block, question=question))
        return handler(request.override(messages=messages))
