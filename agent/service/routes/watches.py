"""``/api/watches``: the watches the agent set up (``tell me when ...``): listed and removed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.service.errors import NotFound
from agent.service.routes.common import ServiceDep, SourceQuery, stored_source


def router(settings: Settings) -> APIRouter:
    api = APIRouter(prefix="/api/watches", tags=["watches"])

    @api.get("", summary="The agent's watches (oldest first): question, condition, source, running")
    def list_watches(
        service: ServiceDep,
        source: SourceQuery = None,
        removed: Annotated[bool, Query(description="Include the removed ones.")] = False,
    ) -> list[dict[str, Any]]:
        return service.watch_documents(stored_source(service, source), removed=removed)

    @api.delete("/{watch_id}", status_code=204, summary="Remove a watch: its rule and question stop")
    def remove_watch(watch_id: int, service: ServiceDep) -> Response:
        try:
            service.watches.remove(watch_id)
        except ScenewatchError as exc:
            raise NotFound(str(exc)) from None
        return Response(status_code=204)

    return api
