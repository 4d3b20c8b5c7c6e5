"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from agent.core.config import Settings
from agent.service.metrics import CONTENT_TYPE
from agent.service.routes.common import ServiceDep


def router(settings: Settings) -> APIRouter:
    api = APIRouter(tags=["system"])

    @api.get("/healthz", summary="The process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", summary="The model is loaded and the store open (503 until then)")
    def readyz(service: ServiceDep) -> Any:
        if service.ready:
            return {"ready": True, "model": service.engine.model_name, "sources": len(service.watched())}
        reason = f"failed: {service.failure}" if service.failure else "starting: the model is loading"
        return JSONResponse({"ready": False, "error": reason}, status_code=503)

    @api.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
    def metrics(service: ServiceDep) -> Response:
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)

    return api
