"""Event clips: a rule with ``clip: 3s`` over a synthetic clip gives an MP4 browsers play, with the
frames sampled around the event."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from agent.core.config import load_settings
from agent.core.errors import ScenewatchError
from agent.events.rule_engine import RuleEngine
from agent.events.ruleset import parse_rules
from agent.pipeline.clips import ClipRecorder, clip_file, write_mp4
from agent.pipeline.watch import run_watch
from memory.events import Outbox
from memory.store import Store
from tools.vision.base import VisionRequest
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

RULES = """\
questions:
  box: "Is there a red box?"
sinks:
  log: {{type: jsonl, path: {log}}}
rules:
  box_seen:
    when: box
    clip: 3s
"""


def red_in_centre(image: np.ndarray) -> bool:
    """The synthetic clip's box (5 s to 12 s) covers the centre of the frame (BGR)."""
    blue, green, red = image[image.shape[0] // 2, image.shape[1] // 2].astype(int)
    return bool(red > 180 and green < 80 and blue < 80)


def answer(request: VisionRequest) -> str:
    rgb = np.asarray(request.images[0].convert("RGB"))
    box = red_in_centre(rgb[..., ::-1])
    return json.dumps(
        {"summary": "a red box" if box else "an empty scene", "people": 0, "answers": {"box": box}}
    )


def test_a_rule_with_a_clip_gets_an_mp4_of_the_frames_around_its_event(
    synthetic_clip: Path, tmp_path: Path
) -> None:
    settings = load_settings(
        db=tmp_path / "data" / "scenewatch.db",
        every_s=0.5,
        heartbeat_s=1.0,
        clip_after_s=1.0,
        events_close_s=2.0,
        public_url="http://cams.example:8765",
    )
    ruleset = parse_rules(RULES.format(log=tmp_path / "events.jsonl"))
    assert ruleset.rules[0].clip_s == 3.0
    store = Store(settings.db_path)
    recorder = ClipRecorder(settings, seconds=3.0)
    rule_engine = RuleEngine(ruleset, store, settings, clips=recorder)
    with Engine(ScriptedBackend(answer), batch_wait_ms=0) as engine:
        run_watch(
            [str(synthetic_clip)],
            settings,
            engine=engine,
            store=store,
            questions=rule_engine.questions,
            listeners=[rule_engine],
            on_frame=recorder.on_frame,
        )
    recorder.close()
    [event] = Outbox(store).events()
    store.close()
    assert event["rule"] == "box_seen" and event["payload"]["observation"]["video_t"] == 5.0
    path = clip_file(settings, event["payload"]["clip"])
    assert path is not None and path.parent.parent == settings.clips_dir and recorder.written == [path]

    # 3 s before the event (2.0 s) to 1 s after it (6.0 s), every 0.5 s: 9 frames, the box in the last 3
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [(frame.time, frame.to_ndarray(format="bgr24")) for frame in container.decode(stream)]
    assert [round(t, 3) for t, _ in frames] == [0.5 * i for i in range(9)]
    assert [red_in_centre(image) for _, image in frames] == [False] * 6 + [True] * 3
    assert frames[0][1].shape == (240, 320, 3)
    capture = cv2.VideoCapture(str(path))
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    assert decoded == 9
    assert path.read_bytes()[4:8] == b"ftyp" and b"moov" in path.read_bytes()[:200]  # faststart

    [sent] = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sent["clip_url"] == f"http://cams.example:8765/api/events/{event['id']}/clip"
    assert sent["payload"]["clip"] == event["payload"]["clip"]


def test_clip_file_refuses_paths_outside_the_clips_folder(tmp_path: Path) -> None:
    settings = load_settings(db=tmp_path / "scenewatch.db")
    inside = settings.clips_dir / "cam-0000" / "1-rule.mp4"
    image = np.zeros((32, 48, 3), np.uint8)
    write_mp4(inside, [(0.0, image), (0.5, image)])
    (tmp_path / "elsewhere.mp4").write_bytes(inside.read_bytes())
    assert clip_file(settings, "clips/cam-0000/1-rule.mp4") == inside.resolve()
    for bad in (
        "clips/../elsewhere.mp4",
        str(tmp_path / "elsewhere.mp4"),
        "clips/cam-0000/missing.mp4",
        None,
    ):
        assert clip_file(settings, bad) is None


def test_clip_lengths_are_checked_with_the_line(tmp_path: Path) -> None:
    for clip, reason in (("0s", "more than 0 s"), ("10m", "at most 2m"), ("soon", "soon")):
        with pytest.raises(ScenewatchError, match=rf"line 8: rules\.box_seen\.clip: .*{reason}"):
            parse_rules(RULES.format(log=tmp_path / "e.jsonl").replace("clip: 3s", f"clip: {clip}"))


def test_a_clip_waits_for_the_frames_after_its_event(tmp_path: Path) -> None:
    """Written once a frame past its end is sampled, not before; the frames outside are left out."""
    from agent.sources import Frame

    settings = load_settings(db=tmp_path / "scenewatch.db", every_s=1.0, clip_after_s=2.0)
    recorder = ClipRecorder(settings, seconds=2.0)
    frame = np.full((100, 200, 3), 90, np.uint8)
    path = recorder.clip_path("cam", 110.0, "rule")
    for ts in range(100, 111):
        recorder.on_frame("cam", Frame(frame, float(ts)))
    recorder.make_clip("cam", 110.0, 2.0, path)
    recorder.on_frame("cam", Frame(frame, 111.0))
    assert not recorder.written
    recorder.on_frame("cam", Frame(frame, 112.0))
    recorder.on_frame("cam", Frame(frame, 113.0))
    recorder.close()
    assert recorder.written == [settings.data_dir / path]
    with av.open(str(recorder.written[0])) as container:
        assert [round(f.time) for f in container.decode(video=0)] == [0, 1, 2, 3, 4]  # 108 s to 112 s


def test_frames_read_far_ahead_of_the_answers_are_kept_for_the_next_event(tmp_path: Path) -> None:
    """A file read 60 s past its latest committed observation (a still stretch while the model
    thinks): the frames before the next event are still there when its observation commits."""
    from agent.sources import Frame
    from memory.observation import Observation

    settings = load_settings(db=tmp_path / "scenewatch.db", every_s=1.0, clip_after_s=1.0)
    recorder = ClipRecorder(settings, seconds=3.0)
    frame = np.full((100, 200, 3), 90, np.uint8)
    recorder.on_observation(Observation(source="cam", ts=104.0, summary="before"))
    for ts in range(100, 170):
        recorder.on_frame("cam", Frame(frame, float(ts)))
    recorder.on_observation(Observation(source="cam", ts=105.0, summary="the event"))
    path = recorder.clip_path("cam", 105.0, "rule")
    recorder.make_clip("cam", 105.0, 3.0, path)
    recorder.on_frame("cam", Frame(frame, 170.0))
    recorder.close()
    with av.open(str(settings.data_dir / path)) as container:
        assert [round(f.time) for f in container.decode(video=0)] == [0, 1, 2, 3, 4]  # 102 s to 106 s
