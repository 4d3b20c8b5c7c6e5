"""``/api/kb/search``: a knowledge base of device manuals, searched as `kb search --json`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from agent.core.config import Settings
from agent.service.routes.common import ServiceDep


def router(settings: Settings) -> APIRouter:
    api = APIRouter(prefix="/api/kb", tags=["knowledge base"])

    @api.get("/search", summary="The best chunks of a knowledge base for a query")
    def search(
        service: ServiceDep,
        q: Annotated[
            str, Query(min_length=1, max_length=1000, description="Words, an error code, a model number.")
        ],
        kb: Annotated[str | None, Query(description="Knowledge base name (default: default).")] = None,
        k: Annotated[int, Query(ge=1, le=50, description="How many chunks.")] = 5,
    ) -> list[dict[str, Any]]:
        from memory.knowledge.knowledge_base import DEFAULT_KB, KnowledgeBase

        base = KnowledgeBase.open(service.settings, kb or DEFAULT_KB).require()
        return [hit.to_dict() for hit in base.search(q, k)]

    return api
