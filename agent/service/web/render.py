"""Rendering the page: the Jinja2 templates shipped in ``templates/``, their filters, the headers.

Every page and fragment is rendered here with autoescaping on (summaries, events and answers are
text from a model or a camera, never markup) and a strict Content-Security-Policy: scripts, styles,
images and media only from this server, no inline script, no eval, no framing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from agent.core.durations import clock, format_duration
from agent.service.stream import newest_cursor

HERE = Path(__file__).parent
STATIC = HERE / "static"

CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def display_name(name: str) -> str:
    """A source name fit to show: a URL without its password (``rtsp://user:***@host/...``)."""
    parts = urlsplit(name)
    if parts.scheme and parts.password:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}{port}"))
    return name


def short_name(name: str) -> str:
    """The last part of a source name (a file's name, a stream's path), without credentials."""
    shown = display_name(name).rstrip("/")
    tail = shown.rsplit("/", 1)[-1]
    return tail or shown


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def query(**params: Any) -> str:
    """``?a=1&b=2`` of the params that have a value ("" when none has)."""
    given = {
        key: "1" if value is True else value
        for key, value in params.items()
        if value not in (None, "", False)
    }
    return f"?{urlencode(given)}" if given else ""


TEMPLATES = Jinja2Templates(directory=HERE / "templates")
TEMPLATES.env.filters.update(
    clock=clock, duration=format_duration, short=short_name, shown=display_name, pretty_json=pretty_json
)
TEMPLATES.env.globals.update(query=query)


def stream_url(request: Request) -> str:
    """The live stream from the rows the page was rendered with (``/api/stream?after=...``)."""
    service = request.app.state.service
    return "/api/stream" + query(after=str(newest_cursor(service.reader, service.outbox)))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page or a fragment, with the security headers."""
    settings = request.app.state.service.settings
    context.setdefault("signed_in", settings.api_token is not None)
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code, headers=HEADERS)
