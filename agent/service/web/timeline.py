"""The timeline page (``/timeline``): per source, episodes as spans with their frames, events as
markers, and the detector's tracks when observations carry ``detections``; filters by source,
class, rule and time; a frame opens its observation (``/ui/observations/{id}``: the frame, the
detections, the full JSON).

:func:`build_timeline` gathers what one view shows from the store (a bounded number of rows) and
places it on a time axis in percent of its width, so the template draws it as SVG.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from agent.core.config import Settings
from agent.core.durations import clock, current_time
from agent.core.errors import ScenewatchError
from agent.service.documents import observation_document
from agent.service.errors import NotFound
from agent.service.routes.common import ServiceDep, stored_source, time_range
from agent.service.runtime import Service
from agent.service.web.render import query, render, short_name, stream_url
from memory.episodes import episodes_between
from memory.sources import list_sources

MAX_OBSERVATIONS = 3000
"""Most observations one view reads (the earliest of the range; the page says when it stops there)."""
MAX_EPISODES = 500
MAX_EVENTS = 1000
MAX_CARDS = 100
"""Most episodes listed with their frames (the latest); the axis shows every one."""
FRAMES_PER_EPISODE = 8
AT_WINDOW_S = 300.0
"""A view opened at a moment (``at``, a link from the chat) shows this much either side of it."""
DEFAULT_SINCE = "1h"


@dataclass
class Filters:
    """What the view shows: as typed in the form (times as the CLI takes them)."""

    source: str | None = None
    cls: str | None = None
    rule: str | None = None
    since: str = DEFAULT_SINCE
    until: str | None = None
    obs: int | None = None
    """An observation to open at once (a link from the chat)."""

    def query(self) -> str:
        return query(source=self.source, cls=self.cls, rule=self.rule, since=self.since, until=self.until)


@dataclass
class Lane:
    """One source on the axis: episode spans, event markers and track bars, in percent."""

    source: str
    short: str
    spans: list[dict[str, Any]] = field(default_factory=list)
    markers: list[dict[str, Any]] = field(default_factory=list)
    tracks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def height(self) -> int:
        return 34 + 10 * len(self.tracks)


@dataclass
class TimelineView:
    """Everything one view of the timeline shows: the axis (epoch seconds), the lanes, the episodes
    listed with their frames and events, and the choices the filters offer."""

    filters: Filters
    start: float
    end: float
    lanes: list[Lane]
    episodes: list[dict[str, Any]]
    more_episodes: int
    ticks: list[tuple[float, str]]
    sources: list[str]
    classes: list[str]
    rules: list[str]
    observations: int
    truncated: bool
    error: str = ""


def classes_of(document: dict[str, Any]) -> set[str]:
    """What an observation saw, as the class filter matches it: the detector's labels and the
    objects the model named (lower case)."""
    found = {str(item.get("label", "")).lower() for item in document.get("detections") or []}
    found |= {str(name).strip().lower() for name in document.get("objects") or []}
    return found - {""}


def spread(items: list[Any], most: int) -> list[Any]:
    """Up to ``most`` of ``items``, evenly spaced, the first and the last always in."""
    if len(items) <= most:
        return items
    step = (len(items) - 1) / (most - 1)
    return [items[round(i * step)] for i in range(most)]


def track_bars(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tracks the detections of one source name (a tracker numbers each class apart): label,
    first and last time seen, how many frames, the last observation."""
    tracks: dict[tuple[str, Any], dict[str, Any]] = {}
    for document in documents:
        for item in document.get("detections") or []:
            track, label = item.get("track"), str(item.get("label", "?"))
            if track is None:
                continue
            bar = tracks.setdefault(
                (label, track), {"track": track, "label": label, "first": document["ts"], "frames": 0}
            )
            bar["last"], bar["frames"], bar["observation"] = document["ts"], bar["frames"] + 1, document["id"]
    return sorted(tracks.values(), key=lambda bar: (bar["first"], str(bar["track"])))


def known_sources(service: Service) -> list[str]:
    """Every source a filter can name: recorded, observed, or named by an event."""
    names = {record.name for record in list_sources(service.reader)} | set(service.reader.sources())
    return sorted(names | set(service.outbox.sources()))


def axis(
    start: float | None,
    end: float | None,
    documents: list[dict[str, Any]],
    episodes: list[Any],
    events: list[dict[str, Any]],
) -> tuple[float, float]:
    """The span the axis shows: what the range holds, from its first to its last moment (a clip
    watched faster than real time has moments after now); the range itself when it holds nothing."""
    moments = [d["ts"] for d in documents] + [e["ts"] for e in events]
    moments += [t for episode in episodes for t in (episode.start_ts, episode.end_ts)]
    if start is not None:
        moments = [max(t, start) for t in moments]
    if end is not None:
        moments = [min(t, end) for t in moments]
    if moments:
        first, last = min(moments), max(moments)
    else:
        first = start if start is not None else current_time() - 3600
        last = end if end is not None else current_time()
    pad = max((last - first) * 0.01, 0.5)
    return first - pad, last + pad


def build_timeline(service: Service, filters: Filters) -> TimelineView:
    """What the view of ``filters`` shows (an error message in ``error`` for a bad filter)."""
    reader = service.reader
    error = ""
    try:
        start, end = time_range(filters.since, filters.until)
        source = stored_source(service, filters.source) if filters.source else None
    except ScenewatchError as exc:
        error, start, end, source = str(exc), current_time() - 3600, None, None
    observations = reader.in_time_order(
        source=source, since=start, until=end, limit=MAX_OBSERVATIONS, newest_first=False
    )
    documents = [observation_document(obs) for obs in observations or []]
    episodes = episodes_between(reader, start, end, source, MAX_EPISODES)
    events = [
        event
        for event in service.outbox.events(since=start, source=source, limit=MAX_EVENTS)
        if end is None or event["ts"] <= end
    ]
    class_counts = Counter(name for document in documents for name in classes_of(document))
    rules = sorted({event["rule"] for event in events})

    matching = documents
    if filters.cls:
        matching = [document for document in documents if filters.cls.lower() in classes_of(document)]
        seen = {document["id"] for document in matching}
        events = [event for event in events if event["observation_id"] in seen]
    if filters.rule:
        events = [event for event in events if event["rule"] == filters.rule]
    by_episode: dict[int | None, list[dict[str, Any]]] = defaultdict(list)
    for document in matching:
        by_episode[document["episode_id"]].append(document)
    episode_of = {document["id"]: document["episode_id"] for document in documents}
    events_by_episode: dict[int | None, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        events_by_episode[episode_of.get(event["observation_id"])].append(event)
    if filters.cls:
        episodes = [episode for episode in episodes if by_episode.get(episode.id)]
    if filters.rule:
        episodes = [episode for episode in episodes if events_by_episode.get(episode.id)]

    axis_start, axis_end = axis(start, end, documents, episodes, events)

    def pct(ts: float) -> float:
        return round(min(max((ts - axis_start) / (axis_end - axis_start), 0.0), 1.0) * 100, 3)

    lanes: dict[str, Lane] = {}

    def lane(name: str) -> Lane:
        return lanes.setdefault(name, Lane(name, short_name(name)))

    cards = []
    for episode in episodes:
        left = pct(episode.start_ts)
        frames = [d for d in by_episode.get(episode.id, []) if d["thumbnail"]]
        lane(episode.source).spans.append(
            {
                "id": episode.id,
                "left": left,
                "width": max(pct(episode.end_ts) - left, 0.4),
                "busy": bool(episode.people),
                "title": f"{clock(episode.start_ts)}: {episode.summary}",
                "observation": frames[0]["id"] if frames else None,
            }
        )
        cards.append(
            {
                "episode": episode,
                "short": short_name(episode.source),
                "frames": spread(frames, FRAMES_PER_EPISODE),
                "events": events_by_episode.get(episode.id, []),
            }
        )
    for event in events:
        lane(event["source"]).markers.append({**event, "left": pct(event["ts"])})
    for name in {document["source"] for document in matching}:
        for bar in track_bars([d for d in matching if d["source"] == name]):
            left = pct(bar["first"])
            lane(name).tracks.append({**bar, "left": left, "width": max(pct(bar["last"]) - left, 0.4)})
    ticks = [
        (
            pct(axis_start + i * (axis_end - axis_start) / 4),
            clock(axis_start + i * (axis_end - axis_start) / 4),
        )
        for i in range(5)
    ]
    cards.sort(key=lambda card: card["episode"].start_ts, reverse=True)
    shown_cards = cards[:MAX_CARDS]
    return TimelineView(
        filters=filters,
        start=axis_start,
        end=axis_end,
        lanes=sorted(lanes.values(), key=lambda item: item.source),
        episodes=shown_cards,
        more_episodes=len(cards) - len(shown_cards),
        ticks=ticks,
        sources=known_sources(service),
        classes=[name for name, _ in class_counts.most_common(30)],
        rules=rules,
        observations=len(matching),
        truncated=len(documents) >= MAX_OBSERVATIONS,
        error=error,
    )


def read_filters(
    source: Annotated[str | None, Query(max_length=4096)] = None,
    cls: Annotated[str | None, Query(max_length=200)] = None,
    rule: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(max_length=100)] = None,
    until: Annotated[str | None, Query(max_length=100)] = None,
    at: float | None = None,
    obs: int | None = None,
) -> Filters:
    """The filters of a request (empty form fields count as not given); ``at``, a moment, sets the
    range to :data:`AT_WINDOW_S` either side of it."""
    if at is not None:
        since, until = (
            datetime.fromtimestamp(at + side).isoformat(timespec="seconds")
            for side in (-AT_WINDOW_S, AT_WINDOW_S)
        )
    return Filters(source or None, cls or None, rule or None, since or DEFAULT_SINCE, until or None, obs)


FiltersDep = Annotated[Filters, Depends(read_filters)]


def router(settings: Settings) -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/timeline", response_class=HTMLResponse)
    def timeline_page(request: Request, service: ServiceDep, filters: FiltersDep) -> HTMLResponse:
        view = build_timeline(service, filters)
        stream = stream_url(request)
        return render(request, "timeline.html", active="timeline", title="Timeline", stream=stream, view=view)

    @ui.get("/ui/timeline", response_class=HTMLResponse)
    def timeline_fragment(request: Request, service: ServiceDep, filters: FiltersDep) -> HTMLResponse:
        view = build_timeline(service, filters)
        response = render(request, "_timeline.html", view=view, fragment=True)
        response.headers["HX-Replace-Url"] = "/timeline" + filters.query()
        return response

    @ui.get("/ui/observations/{observation_id}", response_class=HTMLResponse)
    def observation_detail(request: Request, observation_id: int, service: ServiceDep) -> HTMLResponse:
        found = service.reader.get_many([observation_id])
        if not found:
            raise NotFound(f"no observation with id {observation_id}")
        document = observation_document(found[0])
        return render(request, "_observation.html", obs=document, short=short_name(document["source"]))

    return ui
