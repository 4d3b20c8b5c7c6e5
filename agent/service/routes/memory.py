"""``/api/timeline``, ``/api/recall``, ``/api/narrate``: the memory, as the CLI's ``--json`` gives it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from agent.core.config import Settings
from agent.service.documents import thumbnail_url
from agent.service.routes.common import (
    TIME_HELP,
    ServiceDep,
    SinceQuery,
    SourceQuery,
    UntilQuery,
    stored_source,
    time_range,
)
from memory.timeline import timeline


class NarrateRequest(BaseModel):
    since: str = Field(default="10m", description="From this time. " + TIME_HELP)
    until: str | None = Field(default=None, description="Up to this time (default: no end).")
    source: str | None = Field(default=None, description="Only this source (default: all).")


def router(settings: Settings) -> APIRouter:
    api = APIRouter(prefix="/api", tags=["memory"])

    @api.get("/timeline", summary="Episodes and events of a time range, oldest first, as `timeline --json`")
    def get_timeline(
        service: ServiceDep,
        since: Annotated[str, Query(description="From this time. " + TIME_HELP)] = "10m",
        until: UntilQuery = None,
        source: SourceQuery = None,
        limit: Annotated[int, Query(ge=1, le=5000, description="Most entries (the earliest).")] = 500,
    ) -> list[dict[str, Any]]:
        start, end = time_range(since, until)
        entries = timeline(service.reader, start, end, stored_source(service, source), limit=limit)
        return [entry.to_dict() for entry in entries]

    @api.get("/recall", summary="Observations by meaning, best match first, as `recall --json`")
    def recall(
        service: ServiceDep,
        q: Annotated[str, Query(min_length=1, max_length=1000, description="What to look for, in words.")],
        since: SinceQuery = None,
        until: UntilQuery = None,
        source: SourceQuery = None,
        k: Annotated[int | None, Query(ge=1, le=100, description="How many (default recall_k).")] = None,
    ) -> list[dict[str, Any]]:
        start, end = time_range(since, until)
        found = service.vectors().recall(
            q, source=stored_source(service, source), since=start, until=end, k=k or settings.recall_k
        )
        return [{**item.to_dict(), "thumbnail": thumbnail_url(item.id)} for item in found]

    @api.post(
        "/narrate",
        summary="What happened in a time range, told by the model, as `narrate --json`",
        max_body_size=settings.api_max_body_bytes,
    )
    def narrate(request: NarrateRequest, service: ServiceDep) -> dict[str, Any]:
        from tools.narrative import narrate as tell

        start, end = time_range(request.since, request.until)
        source = stored_source(service, request.source)
        return tell(service.reader, service.engine, start, end, source, settings).to_dict()

    return api
