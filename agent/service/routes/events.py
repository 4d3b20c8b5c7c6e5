"""``/api/events``: events raised by rules, with their deliveries; one event; acknowledging it; its clip."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from agent.core.config import Settings
from agent.pipeline.clips import clip_file
from agent.service.errors import NotFound
from agent.service.routes.common import ServiceDep, SinceQuery, SourceQuery, stored_source, time_range


def router(settings: Settings) -> APIRouter:
    api = APIRouter(prefix="/api/events", tags=["events"])

    @api.get("", summary="The latest events (oldest first), with their deliveries, as `events --json`")
    def list_events(
        service: ServiceDep,
        since: SinceQuery = None,
        rule: Annotated[
            str | None, Query(description="Only this rule (episode, changes: state changes).")
        ] = None,
        source: SourceQuery = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Most events (the latest).")] = 50,
    ) -> list[dict[str, Any]]:
        start, _ = time_range(since, None)
        return service.outbox.events(
            since=start, rule=rule, source=stored_source(service, source), limit=limit
        )

    @api.get("/{event_id}", summary="One event")
    def get_event(event_id: int, service: ServiceDep) -> dict[str, Any]:
        event = service.outbox.get(event_id)
        if event is None:
            raise NotFound(f"no event with id {event_id}")
        return event

    @api.post("/{event_id}/ack", summary="Acknowledge an event (again: keeps the first time)")
    def acknowledge(event_id: int, service: ServiceDep) -> dict[str, Any]:
        event = service.outbox.acknowledge(event_id)
        if event is None:
            raise NotFound(f"no event with id {event_id}")
        return event

    @api.get(
        "/{event_id}/clip",
        summary="The event's clip (MP4), when its rule asked for one (written a few seconds after the event)",
        response_class=FileResponse,
        responses={200: {"content": {"video/mp4": {}}}},
    )
    def clip(event_id: int, service: ServiceDep) -> FileResponse:
        named = get_event(event_id, service)["payload"].get("clip")
        if not named or not isinstance(named, str):
            raise NotFound(f"event {event_id} has no clip")
        path = clip_file(settings, named)  # only an MP4 inside the clips folder
        if path is None:
            raise NotFound(f"the clip of event {event_id} is not there (not written yet, or removed)")
        return FileResponse(path, media_type="video/mp4")

    return api
