"""What the route modules share: the service of the request, time ranges and source names."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from agent.core.durations import parse_since
from agent.core.errors import ScenewatchError
from agent.service.errors import ApiError, NotFound
from agent.service.runtime import Service
from agent.sources import resolve_source
from memory.sources import list_sources

TIME_HELP = "A duration ago (10m, 2h), a date (2024-05-01T12:00) or an epoch time, as the CLI takes it."


def current_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(current_service)]
SinceQuery = Annotated[str | None, Query(description="From this time. " + TIME_HELP)]
UntilQuery = Annotated[str | None, Query(description="Up to this time. " + TIME_HELP)]
SourceQuery = Annotated[
    str | None, Query(description="Only this source: its stored name, or a path or base name that ends it.")
]


def time_range(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """Epoch seconds of ``since`` and ``until`` (400 for a bad time or a reversed range)."""
    start = parse_since(since) if since else None
    end = parse_since(until) if until else None
    if start is not None and end is not None and start > end:
        raise ApiError("since is after until")
    return start, end


def stored_source(service: Service, given: str | None) -> str | None:
    """The stored source ``given`` names (404 when none does; 400 when several could)."""
    try:
        known = [*service.outbox.sources(), *(record.name for record in list_sources(service.reader))]
        return resolve_source(service.reader, given, also=known)
    except ScenewatchError as exc:
        raise (NotFound if str(exc).startswith("no source") else ApiError)(str(exc)) from None
