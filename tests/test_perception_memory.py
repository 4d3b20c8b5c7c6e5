"""What the detector saw, remembered: people counts on the timeline, entries and exits in narratives,
the describe prompt's detector line; the bench's accuracy against the labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from agent.bench.detector import accuracy
from agent.bench.labels import RUNNER, SHOP
from agent.core.config import Settings
from agent.pipeline.describe import describe_request
from memory.episodes import EpisodeTracker
from memory.observation import Observation
from memory.store import Store
from memory.timeline import timeline, track_spans
from tools.narrative import narrate
from tools.perception.findings import Findings
from tools.vision.scripted import ScriptedBackend

T0 = 1_700_000_000.0
DOOR = "/videos/door.mp4"


def person(track: int | None) -> dict[str, object]:
    return {
        "label": "person",
        "score": 0.9,
        "box": [100, 100, 150, 300],
        **({"track": track} if track else {}),
    }


def track(
    number: int, first: float, last: float, state: str, zones: list[str] | None = None
) -> dict[str, object]:
    return {"track": number, "label": "person", "first_ts": T0 + first, "last_ts": T0 + last, "state": state,
            "zones": zones or []}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A VLM that counted one person while the detector saw two; person 1 came and went, 2 stayed."""
    store = Store(tmp_path / "scenewatch.db")
    tracker = EpisodeTracker(store, Settings(), embeddings=DeterministicFakeEmbedding(size=32))
    rows = [
        (0, "an empty pavement", 0, [], []),
        (3, "a woman walks to the door", 1, [person(1), person(None)], [track(1, 2, 3, "entered", ["door"])]),
        (5, "a woman walks to the door", 1, [person(1), person(2)],
         [track(1, 2, 5, "present", ["door"]), track(2, 4, 5, "entered")]),
        (9, "a man stands by the window", 1, [person(2)],
         [track(2, 4, 9, "present"), track(1, 2, 6, "left")]),
    ]  # fmt: skip
    for offset, summary, people, detections, tracks in rows:
        obs = Observation(DOOR, T0 + offset, summary, people=people, detections=detections, tracks=tracks)
        store.add(obs)
        tracker.on_observation(obs)
    store.add(Observation(DOOR, T0 + 12, "no detector ran", people=0))  # detections None: left out
    tracker.close()
    return store


def test_the_timeline_gives_the_detector_people_count_where_it_differs(store: Store) -> None:
    details = [entry.detail for entry in timeline(store, T0 - 1, T0 + 20) if entry.kind == "episode"]
    assert "people 1, detector: up to 2 people" in details
    assert "people 0" in details  # the empty pavement: the detector agreed


def test_tracks_are_spans_with_their_entry_exit_and_zones(store: Store) -> None:
    spans = track_spans(store, T0 - 1, T0 + 20, DOOR)
    assert [(s.track, s.first_ts - T0, s.last_ts - T0, s.left, s.zones) for s in spans] == [
        (1, 2.0, 6.0, True, ["door"]),
        (2, 4.0, 9.0, False, []),
    ]
    assert track_spans(store, T0 + 10, T0 + 20) == []


def test_the_narrative_log_tells_entries_and_exits(store: Store) -> None:
    backend = ScriptedBackend(default="A woman came to the door and left; a man stayed.")
    narrate(store, backend, T0 - 1, T0 + 20, DOOR, Settings())
    prompt = backend.requests[-1].messages[-1]["content"][-1]["text"]
    assert "TRACK [/videos/door.mp4] person 1 entered, was in door, left at" in prompt
    assert "person 2 entered, was last seen at" in prompt and "(5s in view)" in prompt


def test_the_describe_prompt_carries_the_detections() -> None:
    findings = Findings(640, 360, T0, [{"label": "person", "score": 0.97, "box": [478, 155, 564, 295]}])
    request = describe_request(
        np.zeros((360, 640, 3), np.uint8), previous=[], questions={}, now_ts=T0, max_side=224,
        findings=findings,
    )  # fmt: skip
    prompt = request.messages[-1]["content"][-1]["text"]
    assert "hints with confidences" in prompt and "detector: person 0.97 at right-centre" in prompt
    assert request.findings is findings
    plain = describe_request(
        np.zeros((36, 64, 3), np.uint8), previous=[], questions={}, now_ts=T0, max_side=224
    )
    assert "detector" not in plain.messages[-1]["content"][-1]["text"] and plain.findings is None


def test_people_accuracy_against_the_labels() -> None:
    perfect = accuracy(RUNNER, {t: (1 if 1 <= t <= 14 else 0) for t in range(18)})
    assert perfect["seconds"] == 17 and perfect["right_share"] == 1.0 and perfect["mean_abs_error"] == 0.0
    missed = accuracy(RUNNER, {0: 0, 1: 0, 2: 2, 15: 1})  # 15 s is not judged
    assert (missed["seconds"], missed["right"], missed["wrong"]) == (
        3, 1, {"1": {"counted": 0, "clear": 1, "upper": 1}, "2": {"counted": 2, "clear": 1, "upper": 1}}
    )  # fmt: skip
    assert SHOP.right(4, 1) and SHOP.right(4, 4) and not SHOP.right(4, 5) and not SHOP.right(40, 1)
