"""The events page (``/events``): severity, delivery state, the frame and the clip of each event;
acknowledging one. Live: the list is fetched again when the stream brings an event, and after an
acknowledgement (the ``acked`` trigger the answer carries)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.pipeline.clips import clip_file
from agent.service.documents import thumbnail_url
from agent.service.errors import NotFound
from agent.service.routes.common import ServiceDep, stored_source, time_range
from agent.service.runtime import Service
from agent.service.web.common import from_this_page
from agent.service.web.render import query, render, short_name, stream_url
from agent.service.web.timeline import known_sources

MAX_EVENTS = 200
Source = Annotated[str | None, Query(max_length=4096)]
Rule = Annotated[str | None, Query(max_length=200)]
Since = Annotated[str | None, Query(max_length=100)]
OpenOnly = Annotated[bool, Query(alias="open", description="Only events not acknowledged yet.")]


@dataclass
class EventFilters:
    """The events page's filters, from the query string (the page and its list fragment alike)."""

    source: Source = None
    rule: Rule = None
    since: Since = None
    open_only: OpenOnly = False

    def query(self) -> str:
        """The filters as the page's query string."""
        return query(source=self.source, rule=self.rule, since=self.since, open=self.open_only)


Filters = Annotated[EventFilters, Depends()]


def delivery_state(event: dict[str, Any]) -> str:
    """``delivered``, ``pending`` (some sink still to go), ``failing`` (a sink errs) or ``none``."""
    deliveries = event["deliveries"]
    if not deliveries:
        return "none"
    if all(item["delivered"] for item in deliveries):
        return "delivered"
    return "failing" if any(item["error"] for item in deliveries if not item["delivered"]) else "pending"


def decorate(service: Service, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as the page shows them: with their frame's URL, delivery state and clip URL."""
    ids = [event["observation_id"] for event in events if event["observation_id"] is not None]
    framed = {obs.id for obs in service.reader.get_many(ids) if obs.thumb_path}
    shown = []
    for event in events:
        named = event["payload"].get("clip")
        clip = clip_file(service.settings, named if isinstance(named, str) else None) is not None
        shown.append(
            {
                **event,
                "short": short_name(event["source"]),
                "thumbnail": thumbnail_url(event["observation_id"])
                if event["observation_id"] in framed
                else None,
                "delivery": delivery_state(event),
                "clip": f"/api/events/{event['id']}/clip" if clip else None,
                "document": event,
            }
        )
    return shown


def router(settings: Settings) -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    def listing(service: Service, filters: EventFilters) -> dict[str, Any]:
        source, rule, since = filters.source or None, filters.rule or None, filters.since or None
        open_only = filters.open_only
        error = ""
        try:
            start, _ = time_range(since, None)
            events = service.outbox.events(
                since=start, rule=rule, source=stored_source(service, source), limit=MAX_EVENTS
            )
        except ScenewatchError as exc:
            error, events = str(exc), []
        events.reverse()  # newest first
        if open_only:
            events = [event for event in events if event["acknowledged_at"] is None]
        return {
            "events": decorate(service, events),
            "filters": {"source": source, "rule": rule, "since": since, "open": open_only},
            "sources": known_sources(service),
            "rules": sorted({rule for _, rule, _ in service.outbox.raised()}),
            "error": error,
        }

    @ui.get("/events", response_class=HTMLResponse)
    def events_page(request: Request, service: ServiceDep, filters: Filters) -> HTMLResponse:
        shown = listing(service, filters)
        return render(
            request, "events.html", active="events", title="Events", stream=stream_url(request), **shown
        )

    @ui.get("/ui/events", response_class=HTMLResponse)
    def events_list(request: Request, service: ServiceDep, filters: Filters) -> HTMLResponse:
        response = render(request, "_events.html", **listing(service, filters))
        response.headers["HX-Replace-Url"] = "/events" + filters.query()
        return response

    def one(service: Service, event_id: int) -> dict[str, Any]:
        event = service.outbox.get(event_id)
        if event is None:
            raise NotFound(f"no event with id {event_id}")
        return decorate(service, [event])[0]

    @ui.get("/ui/events/{event_id}", response_class=HTMLResponse)
    def event_detail(request: Request, event_id: int, service: ServiceDep) -> HTMLResponse:
        return render(request, "_event.html", event=one(service, event_id))

    @ui.post("/ui/events/{event_id}/ack", response_class=HTMLResponse, dependencies=[Depends(from_this_page)])
    def acknowledge(request: Request, event_id: int, service: ServiceDep) -> HTMLResponse:
        if service.outbox.acknowledge(event_id) is None:
            raise NotFound(f"no event with id {event_id}")
        response = render(request, "_ack.html", event=one(service, event_id))
        response.headers["HX-Trigger"] = "acked"
        return response

    return ui
