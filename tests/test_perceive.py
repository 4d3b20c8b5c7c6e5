"""The detector stage and the gate that knows what the tracks did."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from agent.bench.labels import RUNNER
from agent.core.config import Settings, load_settings
from agent.events.ruleset import SourceRules
from agent.pipeline.gate import ChangeGate
from agent.pipeline.perceive import Perceiver, Perception, observation_fields
from agent.pipeline.watch import run_watch
from agent.sources import Frame, VideoFileSource
from memory.store import Store
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

ANSWER = '{"summary": "a quiet street", "people": 0, "objects": [], "actions": [], "changes": "none"}'


def still(value: int = 90) -> np.ndarray:
    return np.full((240, 320, 3), value, np.uint8)


def test_a_track_change_wakes_the_gate_when_few_pixels_moved() -> None:
    gate = ChangeGate(threshold=0.01, side=64, heartbeat_s=10.0)
    assert gate.check(still(), 0.0).reason == "first"
    assert gate.check(still(), 1.0).reason == "unchanged"
    assert gate.check(still(), 2.0, tracks_changed=True).reason == "tracks"
    assert gate.check(still(200), 3.0, tracks_changed=True).reason == "tracks"  # tracks first


def test_pixels_off_leaves_tracks_and_heartbeat() -> None:
    gate = ChangeGate(threshold=0.01, side=64, heartbeat_s=5.0, pixels=False)
    gate.check(still(), 0.0)
    assert gate.check(still(200), 1.0).reason == "unchanged"
    assert gate.check(still(200), 5.0).reason == "heartbeat"


def test_only_while_skips_while_absent_and_wakes_when_it_comes_back() -> None:
    gate = ChangeGate(threshold=0.01, side=64, heartbeat_s=5.0)
    assert gate.check(still(), 0.0, present=False).reason == "absent"
    assert gate.check(still(), 30.0, present=False).reason == "absent"  # no heartbeat while absent
    assert gate.check(still(), 31.0, present=True).reason == "first"
    assert gate.check(still(), 32.0, present=True).reason == "unchanged"
    gate.check(still(), 33.0, present=False)
    assert gate.check(still(), 34.0, present=True).reason == "tracks"  # it came back
    assert (gate.sampled, gate.skipped) == (6, 4)


@pytest.fixture(scope="module")
def perception() -> Perception:
    return Perception(load_settings(), {"/videos/door.mp4": SourceRules(only_while=("person",))})


def test_source_rules_are_found_by_name_path_or_base_name(perception: Perception, tmp_path: Path) -> None:
    assert perception.rules_for("/videos/door.mp4").only_while == ("person",)
    assert perception.rules_for("/elsewhere/door.mp4").only_while == ()  # keys that are paths match paths
    by_name = Perception(
        load_settings(), {"door.mp4": SourceRules(pixels=False), "0": SourceRules(text=True)}
    )
    assert not by_name.rules_for("/videos/door.mp4").pixels and by_name.rules_for("0").text
    assert by_name.rules_for("rtsp://cam/door.mp4") == SourceRules()


def frames_of(path: Path) -> list[Frame]:
    source = VideoFileSource(path, name=str(path), every_s=1.0, start_ts=1000.0)
    try:
        return list(source.frames(threading.Event()))
    finally:
        source.close()


def test_without_the_detector_the_stage_is_the_change_gate(synthetic_clip: Path) -> None:
    settings = load_settings()
    plain = ChangeGate(settings.gate_threshold, settings.gate_side, settings.heartbeat_s)
    perceiver = Perceiver(str(synthetic_clip), settings, None)
    for frame in frames_of(synthetic_clip):
        decision, expected = perceiver.decide(frame), plain.check(frame.image, frame.video_t or 0.0)
        assert (decision.analyse, decision.reason, decision.findings) == (
            expected.analyse,
            expected.reason,
            None,
        )


def test_analysed_frames_carry_findings(synthetic_clip: Path, perception: Perception) -> None:
    perceiver = Perceiver(str(synthetic_clip), load_settings(), perception)
    decisions = [perceiver.decide(frame) for frame in frames_of(synthetic_clip)]
    analysed = [d for d in decisions if d.analyse]
    assert analysed and all(d.findings is not None for d in analysed)
    assert all(d.findings is None for d in decisions if not d.analyse)
    first = analysed[0].findings
    assert first is not None and (first.width, first.height) == (320, 240) and first.ts == 1000.0
    assert observation_fields(first) == {"detections": first.detections, "tracks": [], "text": None}
    assert observation_fields(None) == {"detections": None, "tracks": None, "text": None}


def test_only_while_a_person_is_in_view_nothing_goes_to_the_model(
    synthetic_clip: Path, perception: Perception
) -> None:
    """The synthetic clip shows a red box, never a person."""
    waiting = Perception(load_settings(), {synthetic_clip.name: SourceRules(only_while=("person",))})
    perceiver = Perceiver(str(synthetic_clip), load_settings(), waiting)
    assert {perceiver.decide(frame).reason for frame in frames_of(synthetic_clip)} == {"absent"}


def test_a_watch_with_the_detector_stores_and_prompts_its_findings(
    synthetic_clip: Path, tmp_path: Path
) -> None:
    settings: Settings = load_settings(home=tmp_path)
    backend = ScriptedBackend(default=ANSWER)
    store = Store(settings.db_path)
    engine = Engine(backend, batch_size=4)
    jsonl = tmp_path / "out.jsonl"
    try:
        summary = run_watch(
            [str(synthetic_clip)],
            settings,
            engine=engine,
            store=store,
            jsonl=jsonl,
            perception=Perception(settings),
        )
    finally:
        engine.close()
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert rows and all(row["detections"] == [] and row["tracks"] == [] for row in rows)
    assert all(item.detections == [] for item in store.recent(None, 50))
    prompts = [request.messages[-1]["content"][-1]["text"] for request in backend.requests]
    assert all("detector: nothing detected" in prompt for prompt in prompts)
    assert all(request.findings is not None for request in backend.requests)
    assert sum(summary.reasons.values()) == summary.sampled and summary.reasons["first"] == 1
    assert summary.reasons["pixels"] >= 2  # the box came and went
    store.close()


@pytest.mark.media
def test_the_runner_is_one_track_that_enters_and_leaves(media_dir: Path, perception: Perception) -> None:
    clip = media_dir / "runner.mp4"
    perceiver = Perceiver(str(clip), load_settings(), perception)
    decisions = [(frame.video_t or 0.0, perceiver.decide(frame)) for frame in frames_of(clip)]
    findings = [(round(t), d.findings) for t, d in decisions if d.findings is not None]
    tracks = {track.track for _, f in findings for track in f.tracks}
    assert len(tracks) == 1
    changes = [change for _, f in findings for change in f.changes]
    assert changes[0].startswith("person 1 appeared at left") and changes[-1].startswith(
        "person 1 left after 1"
    )
    assert "tracks" in {d.reason for _, d in decisions}
    for t, f in findings:  # every analysed frame counts the people right (agent/bench/labels.py)
        assert RUNNER.right(t, f.count("person")) is not False, (t, f.count("person"))
