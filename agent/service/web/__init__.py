"""The page served at ``/`` by ``scenewatch serve``: server-rendered templates with htmx and its SSE
extension, every file shipped in this package (``templates/``, ``static/``: no CDN, works offline).

Pages: sources (``/``), timeline, events, search, chat, and the sign-in form when a token is set.
Each page is HTML from the server; its parts are fetched again as fragments (``/ui/...``) when a
filter changes, an action is taken or the live stream (``/api/stream``) says something new was
committed: no polling loop runs in the browser.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from agent.core.config import Settings
from agent.service.web import chat, events, login, search, sources, timeline
from agent.service.web.render import STATIC

PAGES = (login, sources, timeline, events, search, chat)


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the page's routes and its static files (``/static``) on ``app``."""
    for module in PAGES:
        app.include_router(module.router(settings))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
