"""``/api/stream``: observations and events as Server-Sent Events (:mod:`agent.service.stream`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from agent.core.config import Settings
from agent.service.errors import ApiError
from agent.service.routes.common import ServiceDep, SourceQuery, stored_source
from agent.service.stream import KINDS, Cursor, live_messages, newest_cursor

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def router(settings: Settings) -> APIRouter:
    api = APIRouter(prefix="/api", tags=["live"])

    @api.get(
        "/stream",
        summary="Observations and events as they are committed (Server-Sent Events)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        request: Request,
        service: ServiceDep,
        after: Annotated[
            str | None, Query(description="Start after this cursor (OBSERVATION_ID-EVENT_ID); default: now.")
        ] = None,
        kinds: Annotated[
            str, Query(description="observation, event, or both (comma-separated).")
        ] = "observation,event",
        source: SourceQuery = None,
        last_event_id: Annotated[
            str | None, Header(description="Sent by a reconnecting EventSource.")
        ] = None,
    ) -> StreamingResponse:
        wanted = tuple(kind for kind in KINDS if kind in {part.strip() for part in kinds.split(",")})
        if not wanted:
            raise ApiError(f"kinds must name observation and/or event (got {kinds!r})")
        given = last_event_id or after
        cursor = Cursor.parse(given) if given else newest_cursor(service.reader, service.outbox)
        messages = live_messages(
            service.reader,
            service.outbox,
            service.commits,
            cursor,
            kinds=wanted,
            source=stored_source(service, source) if source else None,
            ping_s=settings.api_stream_ping_s,
            stopping=request.app.state.stopping,
        )
        return StreamingResponse(messages, media_type="text/event-stream", headers=SSE_HEADERS)

    return api
