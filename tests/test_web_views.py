"""What the page shows, without a browser: the timeline's filters and axis, detections and tracks,
cited times made links."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from helpers import FROZEN_NOW
from langchain_core.embeddings import DeterministicFakeEmbedding
from service_support import settings_for

from agent.service.runtime import Service
from agent.service.web.chat import link_times
from agent.service.web.render import TEMPLATES
from agent.service.web.timeline import Filters, build_timeline, classes_of, track_bars
from memory.episodes import EpisodeTracker
from memory.events import NewEvent
from memory.observation import Observation

START = FROZEN_NOW - 100.3
"""The first observation: 15:28:19.7 on the frozen day (times that are not whole seconds)."""
SCENE = ["an empty hall"] * 5 + ["a red box on the floor"] * 3 + ["an empty hall"] * 2


@pytest.fixture
def service(tmp_path: Path, frozen_clock: float) -> Iterator[Service]:
    """A service (not started: no model) whose store holds one watch of a hall where a box shows up."""
    settings = settings_for(tmp_path / "home")
    running = Service(settings)
    tracker = EpisodeTracker(running.reader, settings, embeddings=DeterministicFakeEmbedding(size=16))
    for i, summary in enumerate(SCENE):
        box = "box" in summary
        obs = Observation(
            "/cams/hall.mp4", START + i, summary, objects=["red box"] if box else ["wall"], people=0
        )
        running.reader.add(obs)
        tracker.on_observation(obs)
        if box and "box_seen" not in {row[1] for row in running.outbox.raised()}:
            running.outbox.record(
                [NewEvent(obs.ts, obs.source, "box_seen", "rule", "info", "a box", {}, obs.id)]
            )
    tracker.close()
    try:
        yield running
    finally:
        running.close()


def since(seconds_ago: float) -> str:
    return datetime.fromtimestamp(FROZEN_NOW - seconds_ago).isoformat(timespec="seconds")


def test_the_timeline_shows_episodes_events_and_what_was_seen(service: Service) -> None:
    view = build_timeline(service, Filters(since="10m"))
    assert not view.error and view.observations == len(SCENE)
    assert [card["episode"].summary for card in view.episodes] == [
        "an empty hall",
        "a red box on the floor",
        "an empty hall",
    ]  # newest first
    [lane] = view.lanes
    assert lane.short == "hall.mp4" and len(lane.spans) == 3 and len(lane.markers) == 1
    lefts = [span["left"] for span in lane.spans]
    assert lefts == sorted(lefts) and 0 < lefts[0] <= 10 and all(0 < s["width"] <= 100 for s in lane.spans)
    assert lane.markers[0]["rule"] == "box_seen"
    assert set(view.classes) == {"wall", "red box"} and view.rules == ["box_seen"]
    assert view.ticks[0][1] == "15:28:19"


def test_the_timeline_filters_by_class_rule_and_time(service: Service) -> None:
    boxes = build_timeline(service, Filters(since="10m", cls="Red Box"))
    assert boxes.observations == 3 and [c["episode"].summary for c in boxes.episodes] == [
        "a red box on the floor"
    ]
    assert all(len(card["frames"]) <= 3 for card in boxes.episodes)
    ruled = build_timeline(service, Filters(since="10m", rule="box_seen"))
    assert [card["episode"].summary for card in ruled.episodes] == ["a red box on the floor"]
    assert [len(card["events"]) for card in ruled.episodes] == [1]
    assert not build_timeline(service, Filters(since="10m", rule="door_open")).episodes
    late = build_timeline(service, Filters(since=since(96)))  # from 15:28:24: the first episode's tail
    assert late.observations == len(SCENE) - 5
    assert build_timeline(service, Filters(since="1d", until="23h")).lanes == []
    wrong = build_timeline(service, Filters(since="soon"))
    assert "not a time" in wrong.error


def test_cited_times_link_to_their_observations(service: Service) -> None:
    html = str(
        link_times(
            "The box came at 15:28:25, left by 15:28:27 <b>ok</b>; nothing at 03:00:00.", service.reader
        )
    )
    stored = {round(obs.ts - START): obs.id for obs in service.reader.page(limit=100)}
    assert f'<a class="cite" href="/timeline?at={START + 6}&amp;obs={stored[6]}">15:28:25</a>' in html
    assert f"obs={stored[8]}" in html  # 15:28:27 is the second of the observation at 15:28:27.7
    assert "03:00:00." in html and html.count("<a ") == 2
    assert "&lt;b&gt;ok&lt;/b&gt;" in html  # the model's text is text
    dated = str(link_times("on 2025-06-14 15:28:20 and 2025-06-13 15:28:20", service.reader))
    assert dated.count("<a ") == 1


def test_detections_show_as_tracks_and_in_the_observation() -> None:
    person = {"label": "person", "score": 0.91, "box": [10, 20, 110, 220], "track": 7}
    documents = [
        {"id": 1, "ts": 100.0, "detections": [person]},
        {
            "id": 2,
            "ts": 101.0,
            "detections": [person, {"label": "car", "score": 0.8, "box": [0, 0, 5, 5], "track": 7}],
        },
        {"id": 3, "ts": 102.5, "detections": [{**person, "track": 8}], "objects": ["Bicycle"]},
        {"id": 4, "ts": 103.0, "detections": None},
    ]
    bars = track_bars(documents)
    assert [(b["track"], b["label"], b["first"], b["last"], b["frames"]) for b in bars] == [
        (7, "person", 100.0, 101.0, 2),
        (7, "car", 101.0, 101.0, 1),  # the same number in another class is another track
        (8, "person", 102.5, 102.5, 1),
    ]
    assert classes_of(documents[2]) == {"person", "bicycle"} and classes_of(documents[3]) == set()
    html = TEMPLATES.get_template("_observation.html").render(
        obs={
            **Observation("cam", FROZEN_NOW, "<script>x</script>", id=2).to_dict(),
            "detections": documents[1]["detections"],
            "thumbnail": "/api/observations/2/thumbnail",
        },
        short="cam",
    )
    assert "<caption>Detections</caption>" in html and "<td>car</td>" in html and "10, 20, 110, 220" in html
    assert "<script>x" not in html and "&lt;script&gt;x" in html


def test_every_file_of_the_page_ships_with_the_package() -> None:
    """The package data in pyproject.toml names every template and static file (no CDN: the wheel
    must carry them all)."""
    import tomllib
    from fnmatch import fnmatch

    import agent.service.web as web

    root = Path(web.__file__).parent
    patterns = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]["package-data"]["agent.service.web"]
    shipped = [p for p in root.rglob("*") if p.is_file() and p.parent.name in ("templates", "static")]
    assert {p.name for p in shipped} >= {"htmx.min.js", "sse.min.js", "LICENSE.htmx", "base.html", "app.js"}
    missing = [
        p for p in shipped if not any(fnmatch(str(p.relative_to(root)), pattern) for pattern in patterns)
    ]
    assert not missing
