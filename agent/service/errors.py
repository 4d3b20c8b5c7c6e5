"""API errors: every failure answers one JSON object ``{"error": "..."}`` with the right status.

Routes raise :class:`ApiError` subclasses (or any ScenewatchError, a 400: bad input); request
validation, unknown routes and oversized bodies keep their status with the same shape; anything
else is logged and answered 500, and the server goes on.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from agent.core.errors import ScenewatchError

log = logging.getLogger(__name__)


class ApiError(ScenewatchError):
    """A request the service cannot answer, with its HTTP status (400: bad input)."""

    status = 400


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class TooLarge(ApiError):
    status = 413


class Unsupported(ApiError):
    status = 415


class UpstreamFailed(ApiError):
    """The model or a server behind it failed."""

    status = 502


class NotReady(ApiError):
    """The model is still loading, or failed to load."""

    status = 503


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    problems = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return 400, f"malformed JSON: {error.get('ctx', {}).get('error', error.get('msg'))}"
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return 422, "invalid request: " + "; ".join(problems)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as ``{"error": ...}``."""

    @app.exception_handler(ScenewatchError)
    async def scenewatch_error(request: Request, exc: ScenewatchError) -> JSONResponse:
        return error_response(getattr(exc, "status", 400), str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc)
        return error_response(status, message)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")
