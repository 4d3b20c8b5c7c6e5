"""``--backend detector`` as a user runs it: look, watch, and the commands that need a talking model.

The checks issue 14 names run on the shared footage: ``look`` finds a person on the shop clip's frame
at 5 s and none at 30 s; ``watch --backend detector --every 1s --jsonl F`` counts the people of every
row right (the runner: one while in view; the shop: within the labels of agent/bench/labels.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from agent.bench.labels import RUNNER, SHOP, PeopleLabels
from agent.core.config import load_settings
from agent.core.durations import current_time
from memory.observation import Observation
from memory.store import Store
from tools.perception.backend import from_settings
from tools.vision.base import VisionError, VisionRequest

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--home", str(home), *args], capture_output=True, text=True, timeout=300)


def frame_at(clip: Path, seconds: float, out: Path) -> Path:
    capture = cv2.VideoCapture(str(clip))
    capture.set(cv2.CAP_PROP_POS_FRAMES, round(seconds * capture.get(cv2.CAP_PROP_FPS)))
    ok, frame = capture.read()
    capture.release()
    assert ok
    cv2.imwrite(str(out), frame)
    return out


def test_look_json_lists_the_detections_of_an_empty_picture(tmp_path: Path) -> None:
    photo = tmp_path / "wall.png"
    Image.fromarray(np.full((360, 640, 3), 128, np.uint8)).save(photo)
    done = run("look", str(photo), "--backend", "detector", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["detections"] == [] and record["model"].startswith("detector:")
    assert record["text"].startswith("nothing detected")


def test_the_detector_cannot_converse_or_narrate_and_says_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "scenewatch.db")
    store.add(Observation(source="cam", ts=current_time() - 60, summary="1 person (track 1 at centre)"))
    store.close()
    asked = run("ask", "Who came by?", "--backend", "detector", home=tmp_path)
    assert asked.returncode == 1 and "Traceback" not in asked.stderr
    assert "detector backend cannot hold a conversation" in asked.stderr
    with pytest.raises(VisionError, match="cannot write text or hold a conversation"):
        from_settings(load_settings()).generate([VisionRequest.ask("Tell the story of the last hour.")])


@pytest.mark.media
@pytest.mark.parametrize(("seconds", "people"), [(5, 1), (30, 0)])
def test_look_finds_the_person_at_the_shop_door(
    media_dir: Path, tmp_path: Path, seconds: int, people: int
) -> None:
    frame = frame_at(media_dir / "shopfront_cctv.mp4", seconds, tmp_path / f"shop_{seconds}.png")
    done = run("look", str(frame), "--backend", "detector", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    found = [item for item in json.loads(done.stdout)["detections"] if item["label"] == "person"]
    assert len(found) == people
    for item in found:  # the woman at the door, right of centre, at a high score
        x1, y1, x2, y2 = item["box"]
        assert item["score"] >= 0.9 and 420 < x1 < x2 < 640 and 100 < y1 < y2 <= 360


def watched(media_dir: Path, tmp_path: Path, labels: PeopleLabels) -> tuple[list[dict], str]:
    jsonl = tmp_path / "rows.jsonl"
    clip = str(media_dir / labels.clip)
    done = run("watch", clip, "--backend", "detector", "--every", "1s", "--jsonl", str(jsonl), home=tmp_path)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in jsonl.read_text().splitlines()], done.stdout


@pytest.mark.media
def test_watch_with_the_detector_counts_one_runner_while_he_is_in_view(
    media_dir: Path, tmp_path: Path
) -> None:
    rows, output = watched(media_dir, tmp_path, RUNNER)
    assert len(rows) >= 15
    for row in rows:
        people = sum(item["label"] == "person" for item in row["detections"])
        assert RUNNER.right(round(row["video_t"]), people) in (True, None), (row["video_t"], people)
        assert row["people"] == people and row["model"].startswith("detector:")
    tracked = {item.get("track") for row in rows for item in row["detections"]} - {None}
    assert tracked == {1}  # one runner, one track
    assert any("left after" in row["changes"] for row in rows)
    assert "analysed: first 1, tracks" in output


@pytest.mark.media
def test_watch_with_the_detector_counts_the_shop_clip_within_its_labels(
    media_dir: Path, tmp_path: Path
) -> None:
    rows, _ = watched(media_dir, tmp_path, SHOP)
    counts = {
        round(row["video_t"]): sum(item["label"] == "person" for item in row["detections"]) for row in rows
    }
    assert not [(t, people) for t, people in counts.items() if SHOP.right(t, people) is False]
    assert any(row["people"] == 2 for row in rows) and rows[-1]["people"] == 0
