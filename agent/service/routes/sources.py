"""``/api/sources``: the sources the service watches: list, add, pause, resume, remove."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from agent.core.config import Settings
from agent.service.routes.common import ServiceDep


class NewSource(BaseModel):
    source: str = Field(
        min_length=1,
        max_length=4096,
        description="A video file, an image folder, a webcam index (0) or a stream URL (rtsp://, http(s)://).",
    )


def router(settings: Settings) -> APIRouter:
    api = APIRouter(prefix="/api/sources", tags=["sources"])
    body_limit = settings.api_max_body_bytes

    @api.get("", summary="Every source: state, counts, latest observation")
    def list_sources(service: ServiceDep) -> list[dict[str, Any]]:
        return service.sources()

    @api.post("", status_code=201, summary="Add a source and start watching it", max_body_size=body_limit)
    def add_source(new: NewSource, service: ServiceDep) -> dict[str, Any]:
        return service.add_source(new.source)

    @api.get("/{source_id}", summary="One source")
    def get_source(source_id: int, service: ServiceDep) -> dict[str, Any]:
        return service.source(source_id)

    @api.post("/{source_id}/pause", summary="Stop watching; keep the source")
    def pause(source_id: int, service: ServiceDep) -> dict[str, Any]:
        return service.pause(source_id)

    @api.post("/{source_id}/resume", summary="Watch a paused or failed source again")
    def resume(source_id: int, service: ServiceDep) -> dict[str, Any]:
        return service.resume(source_id)

    @api.delete(
        "/{source_id}", status_code=204, summary="Stop watching and forget the source (its observations stay)"
    )
    def remove(source_id: int, service: ServiceDep) -> Response:
        service.remove(source_id)
        return Response(status_code=204)

    return api
