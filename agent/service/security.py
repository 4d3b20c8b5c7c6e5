"""Who may call the API, and how much they may send.

- **Token**: with ``SCENEWATCH_API_TOKEN`` set, every request but the health checks and the docs
  pages needs ``Authorization: Bearer <token>`` (or the cookie ``scenewatch_token``, for a
  browser's ``EventSource``, which cannot send headers). It is checked in an ASGI middleware,
  before any body is read. Listening on anything but a loopback address without a token is
  refused (:func:`check_exposure`).
- **Sizes**: JSON bodies up to ``api_max_body_bytes``, image uploads up to ``api_max_upload_bytes``
  (FastAPI's ``max_body_size``: 413 before reading when the length is declared, cut off when not),
  and an upload must decode as an image (:func:`read_upload`).
- **CORS** is off (no ``Access-Control-Allow-Origin``, so browsers block cross-origin reads)
  unless ``api_cors_origins`` names origins.
"""

from __future__ import annotations

import ipaddress
import secrets
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from fastapi import UploadFile
from PIL import Image
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.core.errors import ScenewatchError
from agent.service.errors import TooLarge, Unsupported, error_response
from tools.vision.base import VisionError
from tools.vision.images import ImageTooLarge, load_image

OPEN_PATHS = (
    "/healthz",
    "/readyz",
    "/docs",
    "/openapi.json",
    "/static-offline-docs/",
    "/login",
    "/logout",
    "/static/",
)
"""Paths answered without the token: health checks, the API description and its page, the page's
sign-in form and its static files (htmx, styles: nothing about the cameras)."""
COOKIE = "scenewatch_token"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost`` counts; other names do not)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """ScenewatchError when the API would listen beyond this machine without a token."""
    if not token and not is_loopback(host):
        raise ScenewatchError(
            f"refusing to listen on {host} without a token: set SCENEWATCH_API_TOKEN "
            "(clients then send 'Authorization: Bearer TOKEN'), or listen on 127.0.0.1"
        )


class TokenMiddleware:
    """Requires the bearer token (or its cookie) on every HTTP request outside :data:`OPEN_PATHS`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response: Response = error_response(401, "missing or wrong API token", {"WWW-Authenticate": "Bearer"})
        if _page_load(scope):  # a browser opening a page: to the sign-in form, then back
            target = scope["path"] + (
                f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else ""
            )
            response = RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        given = ""
        scheme, _, value = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
        elif b"cookie" in headers:
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(headers[b"cookie"].decode("latin-1"))
            except Exception:  # a malformed cookie header is no token
                return False
            given = cookie[COOKIE].value if COOKIE in cookie else ""
        return secrets.compare_digest(given.encode(), self.token)


def _page_load(scope: Scope) -> bool:
    """Whether a request is a browser loading a page (a GET for HTML outside the API and htmx)."""
    headers = dict(scope.get("headers") or [])
    return (
        scope["method"] == "GET"
        and not scope["path"].startswith(("/api/", "/ui/", "/metrics", "/mcp"))
        and b"hx-request" not in headers
        and b"text/html" in headers.get(b"accept", b"")
    )


async def read_upload(upload: UploadFile) -> Image.Image:
    """The uploaded image (RGB); 415 when it is no image, 413 when its pixels are too many."""
    data = await upload.read()
    if not data:
        raise Unsupported(f"the upload {upload.filename or ''} is empty: send an image".replace("  ", " "))
    try:
        return load_image(data)
    except ImageTooLarge as exc:
        raise TooLarge(f"the image has too many pixels: {exc}") from None
    except VisionError as exc:
        raise Unsupported(f"the upload is not an image this server can read ({exc})") from None
