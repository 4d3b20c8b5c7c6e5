"""Signing in from a browser when the service has a token (``SCENEWATCH_API_TOKEN``).

A browser cannot add ``Authorization`` to a page load or an ``EventSource``, so ``/login`` takes the
token once in a form and sets it as the ``scenewatch_token`` cookie, which the token middleware
accepts: HttpOnly (no script reads it), SameSite=Strict (no other site's request carries it),
Secure over HTTPS, for this server's paths only. ``/logout`` clears it.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from agent.core.config import Settings
from agent.service.security import COOKIE
from agent.service.web.common import same_origin
from agent.service.web.render import render

COOKIE_MAX_AGE_S = 7 * 86400
"""How long a browser stays signed in."""


def local_path(target: str | None) -> str:
    """``target`` when it is a path on this server (``/timeline?...``), else ``/``: a sign-in link
    never sends the browser to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def router(settings: Settings) -> APIRouter:
    ui = APIRouter(include_in_schema=False)
    token = settings.api_token.get_secret_value() if settings.api_token else None

    @ui.get("/login", response_class=HTMLResponse)
    def login_page(
        request: Request, next: Annotated[str | None, Query(max_length=2000)] = None
    ) -> HTMLResponse:
        return render(
            request, "login.html", title="Sign in", next=local_path(next), wrong=False, needed=bool(token)
        )

    @ui.post("/login", response_class=HTMLResponse, dependencies=[Depends(same_origin)], max_body_size=16_384)
    def login(
        request: Request,
        token_given: Annotated[str, Form(alias="token", max_length=4096)] = "",
        next: Annotated[str | None, Form(max_length=2000)] = None,
    ) -> Response:
        target = local_path(next)
        if token is None:
            return RedirectResponse(target, status_code=303)
        if not secrets.compare_digest(token_given.strip().encode(), token.encode()):
            return render(request, "login.html", 401, title="Sign in", next=target, wrong=True, needed=True)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @ui.post("/logout", dependencies=[Depends(same_origin)])
    def logout() -> RedirectResponse:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return ui
