"""The sources page (``/``): a card per camera with its latest frames, summary, people count and
state; add, pause, resume and remove. Live: the grid is fetched again when the stream brings an
observation, and when a source's state changes (``/ui/sources/changes``, below)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.service.documents import observation_document
from agent.service.routes.common import ServiceDep
from agent.service.runtime import Service
from agent.service.stream import POLL_S, RETRY_MS, sse
from agent.service.web.common import from_this_page
from agent.service.web.render import display_name, render, short_name, stream_url

RECENT = 6
"""Frames shown on a card: the latest, large, and those before it, small."""

LABELS = {"watching": "live", "failed": "given up"}
"""How a state reads on a card when it differs from its name (a file being watched reads "watching")."""


def state_label(state: str, live: bool) -> str:
    if state == "watching" and not live:
        return "watching"
    return LABELS.get(state, state)


def source_cards(service: Service) -> list[dict[str, Any]]:
    """Every recorded source as its card shows it: the API's view plus its recent frames (newest first)."""
    cards = []
    for source in service.sources():
        recent = [
            observation_document(obs) for obs in reversed(service.reader.recent(source["name"], RECENT))
        ]
        latest = recent[0] if recent else None
        detections = (latest or {}).get("detections")
        cards.append(
            {
                **source,
                "short": short_name(source["name"]),
                "shown": display_name(source["name"]),
                "label": state_label(source["state"], source["live"]),
                "latest": latest,
                "earlier": recent[1:],
                "persons": None
                if detections is None
                else sum(item.get("label") == "person" for item in detections),
            }
        )
    return cards


def state_marks(service: Service) -> str:
    """The sources and their states, as one string that changes when any of them changes."""
    return ";".join(f"{record['id']}:{record['state']}" for record in service.sources())


async def state_changes(service: Service, seen: str, stopping: threading.Event) -> AsyncIterator[str]:
    """SSE ``changed`` each time the sources or their states differ from ``seen`` (the page's own)."""
    loop = asyncio.get_running_loop()
    yield f"retry: {RETRY_MS}\n\n"
    with service.commits.subscription() as woken:
        quiet_since = loop.time()
        while not stopping.is_set():
            woken.clear()
            marks = await anyio.to_thread.run_sync(state_marks, service)
            if marks != seen:
                seen = marks
                quiet_since = loop.time()
                yield sse("changed", {"states": marks})
            with suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), POLL_S)
            if loop.time() - quiet_since >= service.settings.api_stream_ping_s:
                yield ": ping\n\n"
                quiet_since = loop.time()


def router(settings: Settings) -> APIRouter:
    ui = APIRouter(include_in_schema=False)
    changes = [Depends(from_this_page)]
    body_limit = settings.api_max_body_bytes

    def grid(request: Request, service: Service, message: str = "", failed: bool = False) -> HTMLResponse:
        return render(request, "_grid.html", cards=source_cards(service), message=message, failed=failed)

    @ui.get("/", response_class=HTMLResponse)
    def sources_page(request: Request, service: ServiceDep) -> HTMLResponse:
        return render(
            request,
            "sources.html",
            active="sources",
            title="Sources",
            stream=stream_url(request),
            cards=source_cards(service),
            marks=state_marks(service),
        )

    @ui.get("/ui/sources", response_class=HTMLResponse)
    def sources_grid(request: Request, service: ServiceDep) -> HTMLResponse:
        return grid(request, service)

    @ui.get("/ui/sources/changes", response_class=StreamingResponse)
    def sources_changes(
        request: Request, service: ServiceDep, seen: Annotated[str, Query(max_length=100_000)] = ""
    ) -> StreamingResponse:
        return StreamingResponse(
            state_changes(service, seen, request.app.state.stopping),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @ui.post("/ui/sources", response_class=HTMLResponse, dependencies=changes, max_body_size=body_limit)
    def add_source(
        request: Request, service: ServiceDep, source: Annotated[str, Form(max_length=4096)] = ""
    ) -> HTMLResponse:
        if not source.strip():
            return grid(
                request, service, "Name a source: a video file, a folder, a webcam index or a URL.", True
            )
        try:
            added = service.add_source(source)
        except ScenewatchError as exc:
            return grid(request, service, str(exc), True)
        return grid(request, service, f"Watching {short_name(added['name'])}.")

    def change(request: Request, service: Service, action: str, source_id: int) -> HTMLResponse:
        try:
            name = short_name(service.source(source_id)["name"])
            getattr(service, action)(source_id)
        except ScenewatchError as exc:
            return grid(request, service, str(exc), True)
        done = {"pause": "Paused", "resume": "Watching", "remove": "Removed"}[action]
        return grid(request, service, f"{done} {name}.")

    @ui.post("/ui/sources/{source_id}/pause", response_class=HTMLResponse, dependencies=changes)
    def pause(request: Request, source_id: int, service: ServiceDep) -> HTMLResponse:
        return change(request, service, "pause", source_id)

    @ui.post("/ui/sources/{source_id}/resume", response_class=HTMLResponse, dependencies=changes)
    def resume(request: Request, source_id: int, service: ServiceDep) -> HTMLResponse:
        return change(request, service, "resume", source_id)

    @ui.post("/ui/sources/{source_id}/remove", response_class=HTMLResponse, dependencies=changes)
    def remove(request: Request, source_id: int, service: ServiceDep) -> HTMLResponse:
        return change(request, service, "remove", source_id)

    return ui
