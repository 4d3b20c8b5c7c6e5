"""The FastAPI application of ``scenewatch serve``: routes by noun, MCP, errors as JSON, the token, CORS.

:func:`create_app` wires a :class:`~agent.service.runtime.Service` into an app whose lifespan
starts it (the model loads in the background: ``/readyz`` says when it is done) and closes it at
shutdown, after the open requests were answered. ``/mcp`` is the MCP server
(:mod:`agent.service.mcp`, streamable HTTP) over the service's store, engine, vectors and watches;
its session manager runs in the same lifespan, and the token middleware covers it as every route.
``/docs`` serves Swagger UI from files shipped in the ``fastapi-offline`` package: no CDN, it
works offline.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import anyio
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware

from agent.service.errors import install_error_handlers
from agent.service.mcp import build_mcp_server, mcp_http
from agent.service.routes import agent, events, kb, memory, observations, sources, stream, system, watches
from agent.service.runtime import Service, ServiceEngine
from agent.service.security import TokenMiddleware
from agent.service.web import install as install_web

ROUTES = (system, sources, observations, events, stream, memory, agent, watches, kb)

DESCRIPTION = """The HTTP API of scenewatch: sources, observations, events, the live stream, memory and
the agent. Shapes match the CLI's `--json`. Errors are `{"error": "..."}`. With
`SCENEWATCH_API_TOKEN` set, send `Authorization: Bearer TOKEN` (the Authorize button)."""


def _version() -> str:
    try:
        return version("scenewatch")
    except PackageNotFoundError:
        return "0"


def create_app(service: Service) -> FastAPI:
    """The app serving ``service`` (started by the app's lifespan, closed at its end)."""
    settings = service.settings
    stopping = threading.Event()  # set when the server stops: the live streams end at once
    mcp = mcp_http(
        build_mcp_server(
            settings,
            store=service.reader,
            engine=ServiceEngine(service),
            vectors=service.vectors,
            watches=lambda: service.watches,
        ),
        host=settings.api_host,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            async with mcp.session_manager.run():  # MCP sessions end before the service closes
                yield
        finally:
            stopping.set()
            service.commits.notify()
            await anyio.to_thread.run_sync(service.close)

    app = FastAPIOffline(
        title="scenewatch",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
        max_body_size=max(settings.api_max_upload_bytes, settings.api_max_body_bytes),
    )
    app.state.service = service
    app.state.stopping = stopping
    install_error_handlers(app)
    for module in ROUTES:
        app.include_router(module.router(settings))
    app.router.routes.extend(mcp.routes)  # raw Starlette routes: not in the OpenAPI description
    install_web(app, settings)  # the page at /
    token = settings.api_token.get_secret_value() if settings.api_token else None
    if token:
        app.add_middleware(TokenMiddleware, token=token)
    if settings.api_cors_origins:  # added last: outside the token check, so preflights pass
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    return app
