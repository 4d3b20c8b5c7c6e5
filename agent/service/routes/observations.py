"""``/api/observations``: stored observations by time, a page at a time (the cursor is the last id of
the previous page), one by id, its thumbnail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from agent.core.config import Settings
from agent.service.documents import observation_document
from agent.service.errors import ApiError, NotFound
from agent.service.routes.common import (
    ServiceDep,
    SinceQuery,
    SourceQuery,
    UntilQuery,
    stored_source,
    time_range,
)
from agent.service.runtime import Service
from memory.observation import Observation


def inside(path: str | Path, folder: Path) -> Path | None:
    """``path`` resolved, when it is a file inside ``folder``; else None (never follow a path out)."""
    try:
        resolved = Path(path).resolve()
        return resolved if resolved.is_relative_to(folder.resolve()) and resolved.is_file() else None
    except (OSError, ValueError):
        return None


def _observation(service: Service, observation_id: int) -> Observation:
    found = service.reader.get_many([observation_id])
    if not found:
        raise NotFound(f"no observation with id {observation_id}")
    return found[0]


def router(settings: Settings) -> APIRouter:
    api = APIRouter(prefix="/api/observations", tags=["observations"])

    @api.get("", summary="Observations by time, newest first (or oldest), a page at a time")
    def list_observations(
        service: ServiceDep,
        source: SourceQuery = None,
        since: SinceQuery = None,
        until: UntilQuery = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Most observations in the page.")] = 50,
        cursor: Annotated[
            str | None,
            Query(
                description="The next_cursor of the previous page (an observation id).", pattern=r"^\d{1,18}$"
            ),
        ] = None,
        order: Annotated[
            Literal["newest", "oldest"], Query(description="Newest first, or oldest first.")
        ] = "newest",
    ) -> dict[str, Any]:
        start, end = time_range(since, until)
        items = service.reader.in_time_order(
            source=stored_source(service, source),
            since=start,
            until=end,
            after=int(cursor) if cursor is not None else None,
            limit=limit,
            newest_first=order == "newest",
        )
        if items is None:
            raise ApiError(
                f"cursor {cursor} names no observation (removed by pruning?): start again without it"
            )
        more = len(items) == limit
        return {
            "items": [observation_document(obs) for obs in items],
            "next_cursor": str(items[-1].id) if more and items else None,
        }

    @api.get("/{observation_id}", summary="One observation")
    def get_observation(observation_id: int, service: ServiceDep) -> dict[str, Any]:
        return observation_document(_observation(service, observation_id))

    @api.get(
        "/{observation_id}/thumbnail",
        summary="The analysed frame (JPEG)",
        response_class=FileResponse,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def thumbnail(observation_id: int, service: ServiceDep) -> FileResponse:
        obs = _observation(service, observation_id)
        if not obs.thumb_path:
            raise NotFound(f"observation {observation_id} has no thumbnail")
        path = inside(obs.thumb_path, settings.thumbs_dir)
        if path is None:
            raise NotFound(f"the thumbnail of observation {observation_id} is gone")
        if path.suffix.lower() not in (".jpg", ".jpeg"):
            raise ApiError(f"the thumbnail of observation {observation_id} is not a JPEG")
        return FileResponse(path, media_type="image/jpeg")

    return api
