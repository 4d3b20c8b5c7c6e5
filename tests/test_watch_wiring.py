"""``scenewatch watch`` as a process: every listener wired, and the bad input that stops it early."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]

RULES = """\
questions:
  door_open: "Is the door open?"
sinks:
  log: {type: jsonl, path: EVENTS}
state_changes: {episodes: true, sinks: [log]}
rules:
  anyone:
    when: "people > 0"
    for: 2 observations
    sinks: [log]
"""


def _watch(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCENEWATCH_HOME": str(home), "SCENEWATCH_MAX_NEW_TOKENS": "8"}
    return subprocess.run([*CLI, "watch", *args], capture_output=True, text=True, timeout=300, env=env)


def test_watch_runs_episode_tracker_indexer_and_rules(
    tmp_path: Path, tiny_checkpoint: Path, synthetic_clip: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("EVENTS", str(tmp_path / "events.jsonl")))
    done = _watch(
        tmp_path / "home", str(synthetic_clip), "--model", str(tiny_checkpoint), "--rules", str(rules)
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "home" / "scenewatch.db") as db:
        total, with_episode, indexed = db.execute(
            "SELECT COUNT(*), COUNT(episode_id), SUM(indexed) FROM observations"
        ).fetchone()
        assert total > 0
        assert with_episode == total  # the episode tracker saw every observation
        assert indexed == total  # the indexer flushed before the watch ended
        assert db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] >= 1
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"events", "outbox"} <= tables  # the rules engine was running


def test_watch_with_bad_rules_does_not_start(tmp_path: Path, synthetic_clip: Path) -> None:
    rules = tmp_path / "bad.yaml"
    rules.write_text("rules:\n  r:\n    when: \"__import__('os').system('x')\"\n")
    done = _watch(tmp_path / "home", str(synthetic_clip), "--model", "no/such-model", "--rules", str(rules))
    assert done.returncode == 1
    assert "line 3" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "scenewatch.db").exists()  # stopped before opening anything


def _text_as_jpeg(folder: Path, clip: Path) -> Path:
    path = folder / "fake.jpg"
    path.write_text("not a picture, just text")
    return path


def _unreadable_images(folder: Path, clip: Path) -> Path:
    (folder / "shots").mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / "shots" / name).write_bytes(b"not an image")
    return folder / "shots"


def _truncated_clip(folder: Path, clip: Path) -> Path:
    path = folder / "truncated.mp4"
    path.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_text_as_jpeg, r"no frame could be read from .*fake\.jpg: not a video, or corrupt"),
        (_unreadable_images, "no image could be read from folder"),
        (_truncated_clip, "cannot read video .*truncated"),
    ],
    ids=["text-as-jpeg", "unreadable-folder", "truncated-mp4"],
)
def test_unreadable_input_fails_before_the_model_loads(
    tmp_path: Path, synthetic_clip: Path, make: Callable[[Path, Path], Path], message: str
) -> None:
    source = make(tmp_path, synthetic_clip)
    done = _watch(tmp_path / "home", str(source), "--model", "no/such-model")
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert re.search(message, done.stderr) and "no/such-model" not in done.stderr  # the source came first
    assert not (tmp_path / "home" / "scenewatch.db").exists()


def test_a_real_jpeg_opened_as_a_video_passes_the_source_check(tmp_path: Path) -> None:
    """OpenCV reads one frame from a JPEG: a one-frame video, so the next failure is the model's."""
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), np.full((48, 64, 3), 128, np.uint8))
    done = _watch(tmp_path / "home", str(photo), "--model", "no/such-model")
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "no/such-model" in done.stderr and "could be read" not in done.stderr
