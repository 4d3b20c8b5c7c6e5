"""The chat page (``/chat``): the agent, streamed from ``POST /api/ask`` by the page's script; the
observation times an answer cites become links into the timeline; a thread is kept (its id in
the address, ``/chat?thread=ID``, and its messages in the conversation store)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from agent.core.config import Settings
from agent.core.durations import current_time
from agent.service.routes.common import ServiceDep
from agent.service.web.common import from_this_page
from agent.service.web.render import query, render
from agent.service.web.timeline import known_sources
from memory.observation import Observation
from memory.store import Store

CITED = re.compile(r"\b(?:(\d{4}-\d{2}-\d{2})[ T])?([01]?\d|2[0-3]):([0-5]\d):([0-5]\d)\b")
"""A time as the agent's tools write them: ``14:03:05`` (today) or ``2024-05-01 14:03:05``."""
CITE_WINDOW_S = 60.0
"""A cited time links to the nearest observation this close to it; further, it stays text."""


def cited_observation(store: Store, match: re.Match[str], today: date) -> Observation | None:
    """The stored observation a time cites: the first in that second (clock times are cut to the
    second), else the nearest within :data:`CITE_WINDOW_S`; None when there is none."""
    try:
        day = date.fromisoformat(match[1]) if match[1] else today
    except ValueError:
        return None
    ts = datetime(day.year, day.month, day.day).timestamp()
    ts += timedelta(hours=int(match[2]), minutes=int(match[3]), seconds=int(match[4])).total_seconds()
    near = (
        store.in_time_order(since=ts - CITE_WINDOW_S, until=ts + CITE_WINDOW_S, limit=500, newest_first=False)
        or []
    )
    within = [obs for obs in near if ts <= obs.ts < ts + 1]
    return within[0] if within else min(near, key=lambda obs: abs(obs.ts - ts), default=None)


def link_times(text: str, store: Store) -> Markup:
    """``text``, escaped, with each time it cites that names a stored observation made a link to it
    in the timeline."""
    today = datetime.fromtimestamp(current_time()).date()
    parts: list[str] = []
    done = 0
    for match in CITED.finditer(text):
        obs = cited_observation(store, match, today)
        if obs is None:
            continue
        parts.append(escape(text[done : match.start()]))
        href = "/timeline" + query(at=obs.ts, obs=obs.id)
        parts.append(Markup('<a class="cite" href="{}">{}</a>').format(href, match[0]))
        done = match.end()
    parts.append(escape(text[done:]))
    return Markup("").join(parts)


def thread_messages(settings: Settings, thread: str, store: Store) -> list[dict[str, Any]]:
    """The questions and answers of a kept thread, oldest first (the agent's tool calls left out)."""
    from langchain_core.messages import AIMessage, HumanMessage

    from agent.assistant.agent import open_checkpointer

    saver = open_checkpointer(settings)
    try:
        found = saver.get_tuple({"configurable": {"thread_id": thread}})
    finally:
        saver.conn.close()
    messages = found.checkpoint["channel_values"].get("messages", []) if found is not None else []
    said = []
    for message in messages:
        if isinstance(message, HumanMessage):
            said.append({"who": "you", "html": escape(message.text)})
        elif isinstance(message, AIMessage) and message.text.strip() and not message.tool_calls:
            said.append({"who": "agent", "html": link_times(message.text.strip(), store)})
    return said


def router(settings: Settings) -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/chat", response_class=HTMLResponse)
    def chat_page(
        request: Request,
        service: ServiceDep,
        thread: Annotated[str | None, Query(max_length=200, pattern=r"^[\w.:-]+$")] = None,
    ) -> HTMLResponse:
        said = thread_messages(settings, thread, service.reader) if thread else []
        return render(
            request,
            "chat.html",
            active="chat",
            title="Chat",
            thread=thread or "",
            said=said,
            sources=known_sources(service),
        )

    @ui.post(
        "/ui/chat/answer",
        response_class=HTMLResponse,
        dependencies=[Depends(from_this_page)],
        max_body_size=settings.api_max_body_bytes,
    )
    def answer(
        request: Request, service: ServiceDep, text: Annotated[str, Form(max_length=100_000)] = ""
    ) -> HTMLResponse:
        """An answer as the page shows it: the times it cites linked into the timeline."""
        return render(request, "_answer.html", html=link_times(text, service.reader))

    return ui
