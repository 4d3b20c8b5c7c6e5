"""The search page (``/search``): observations recalled by meaning within a time range, with their
frames (a frame opens its observation)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.service.documents import thumbnail_url
from agent.service.routes.common import ServiceDep, stored_source, time_range
from agent.service.runtime import Service
from agent.service.web.render import query, render, short_name
from agent.service.web.timeline import known_sources

RESULTS = 24
Text = Annotated[str | None, Query(max_length=1000)]
Time = Annotated[str | None, Query(max_length=100)]
Source = Annotated[str | None, Query(max_length=4096)]


def search(
    service: Service, q: str | None, since: str | None, until: str | None, source: str | None
) -> dict[str, Any]:
    """The page's results for a query (none without one), best first, or the error of a bad filter."""
    found: list[dict[str, Any]] = []
    error = ""
    if q:
        try:
            start, end = time_range(since, until)
            recalled = service.vectors().recall(
                q, source=stored_source(service, source), since=start, until=end, k=RESULTS
            )
        except ScenewatchError as exc:
            error, recalled = str(exc), []
        framed = {obs.id for obs in service.reader.get_many([item.id for item in recalled]) if obs.thumb_path}
        found = [
            {
                **item.to_dict(),
                "short": short_name(item.source),
                "thumbnail": thumbnail_url(item.id) if item.id in framed else None,
            }
            for item in recalled
        ]
    return {
        "results": found,
        "form": {"q": q, "since": since, "until": until, "source": source},
        "sources": known_sources(service),
        "error": error,
    }


def router(settings: Settings) -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/search", response_class=HTMLResponse)
    def search_page(
        request: Request,
        service: ServiceDep,
        q: Text = None,
        since: Time = None,
        until: Time = None,
        source: Source = None,
    ) -> HTMLResponse:
        found = search(service, q or None, since or None, until or None, source or None)
        return render(request, "search.html", active="search", title="Search", **found)

    @ui.get("/ui/search", response_class=HTMLResponse)
    def search_results(
        request: Request,
        service: ServiceDep,
        q: Text = None,
        since: Time = None,
        until: Time = None,
        source: Source = None,
    ) -> HTMLResponse:
        found = search(service, q or None, since or None, until or None, source or None)
        response = render(request, "_results.html", **found)
        response.headers["HX-Push-Url"] = "/search" + query(q=q, since=since, until=until, source=source)
        return response

    return ui
