"""What the page's routes share: who may change things through them, and the time range they show."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request

from agent.service.errors import ApiError


class Forbidden(ApiError):
    status = 403


def same_origin(request: Request) -> None:
    """403 when the browser says the request comes from another site: its ``Origin`` names another
    host than the one it sent the request to (the scheme is not compared: behind a proxy that ends
    TLS the server sees http)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Forbidden("this request comes from another site")


def from_this_page(request: Request) -> None:
    """403 unless the request comes from this server's page: htmx sends ``HX-Request``, which a form
    on another site cannot (a custom header needs CORS, which is off), and the origin is this one."""
    same_origin(request)
    if request.headers.get("hx-request") != "true":
        raise Forbidden("send this from the scenewatch page (HX-Request header missing)")
