"""The search page (``/search``): observations recalled by meaning within a time range, with their
frames (a frame opens its observation)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
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


@dataclass
class SearchForm:
    """The search form's fields, from the query string (the page and its results fragment alike)."""

    q: Text = None
    since: Time = None
    until: Time = None
    source: Source = None


Form = Annotated[SearchForm, Depends()]


def search(service: Service, form: SearchForm) -> dict[str, Any]:
    """The page's results for a query (none without one), best first, or the error of a bad filter."""
    q, since, until, source = (form.q or None, form.since or None, form.until or None, form.source or None)
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
    def search_page(request: Request, service: ServiceDep, form: Form) -> HTMLResponse:
        return render(request, "search.html", active="search", title="Search", **search(service, form))

    @ui.get("/ui/search", response_class=HTMLResponse)
    def search_results(request: Request, service: ServiceDep, form: Form) -> HTMLResponse:
        response = render(request, "_results.html", **search(service, form))
        response.headers["HX-Push-Url"] = "/search" + query(**asdict(form))
        return response

    return ui
