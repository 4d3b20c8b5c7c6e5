"""``scenewatch bench pipeline`` on a short synthetic clip with the tiny checkpoint: structure, consistency.

No timing is asserted: only that the report has every section and that its numbers agree
with one another.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.bench.changes import ChangeMoment, change_moments, mark_coverage
from agent.bench.clips import Appearance, write_clip

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s at 10 fps: a red box from 2 s to 4 s."""
    return write_clip(
        tmp_path_factory.mktemp("bench") / "short.mp4", duration_s=6.0, appearances=(Appearance(2.0, 4.0),)
    )


@pytest.fixture(scope="module")
def report(tiny_checkpoint: Path, short_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("home")
    out = home / "report.json"
    args = ["bench", "pipeline", "--model", str(tiny_checkpoint), "--source", str(short_clip)]
    args += ["--sizes", "64,96", "--streams", "1,2", "--runs", "2", "--rounds", "2", "--max-new-tokens", "4"]
    done = subprocess.run(
        [*CLI, "--home", str(home), *args, "--json", "--out", str(out)],
        capture_output=True,
        timeout=280,
        env={**_env(), "SCENEWATCH_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    printed = json.loads(done.stdout)
    assert json.loads(out.read_text()) == printed
    return printed


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_sections_and_headline_figures(report: dict) -> None:
    assert {"sizes", "streams", "baseline", "scenewatch", "speedup_wall", "missed_changes"} <= report.keys()
    assert report["command"].startswith("scenewatch bench pipeline --model ")
    assert report["random_weights"] is False
    assert report["device"] == "cpu" and report["decoder"] == "hf"
    assert report["speedup_wall"] == report["ratios"]["speedup_wall"] > 0
    assert report["missed_changes"] == report["changes"]["missed_changes"]


def test_sizes_are_consistent(report: dict) -> None:
    assert [s["size"] for s in report["sizes"]] == [64, 96]
    for size in report["sizes"]:
        assert size["image_tokens"] == (size["size"] // 32) ** 2
        assert size["new_tokens"] == 4  # forced
        assert size["p95_ms"] >= size["p50_ms"] > 0
        assert size["fps"] == pytest.approx(1000 / size["mean_ms"], rel=0.02)
        assert size["first_token_p50_ms"] > 0
        split = max(size["p50_ms"] - size["first_token_p50_ms"], 0) / (size["new_tokens"] - 1)
        assert size["ms_per_token"] == pytest.approx(split, abs=0.01)
        assert size["peak_memory_mib"] > 0 and size["memory_kind"] == "peak_rss"
    assert report["sizes"][0]["image_tokens"] < report["sizes"][1]["image_tokens"]


def test_streams_are_consistent(report: dict) -> None:
    assert [s["streams"] for s in report["streams"]] == [1, 2]
    for row in report["streams"]:
        assert row["frames"] == row["streams"] * 2
        assert row["batch_size"] >= row["streams"]
        assert 1 <= row["mean_batch"] <= row["streams"]
        assert row["p95_ms"] >= row["p50_ms"] > 0
        assert row["fps"] == pytest.approx(row["frames"] / row["wall_s"], rel=0.02)


def test_baseline_and_scenewatch_are_consistent(report: dict) -> None:
    naive, ours = report["baseline"], report["scenewatch"]
    assert naive["frames_decoded"] == 60  # read() decodes every frame
    assert naive["model_calls"] == naive["analysed"] == naive["sampled"] == 6
    assert ours["analysed"] <= ours["sampled"] == naive["sampled"]
    assert ours["analysed"] + ours["skipped"] + ours["dropped"] + ours["failed"] == ours["sampled"]
    assert 1 <= ours["model_calls"] <= ours["analysed"] == len(ours["analysed_at"])
    for side in (naive, ours):
        assert side["p95_ms"] >= side["p50_ms"] > 0
        assert side["video_s"] == pytest.approx(5.9, abs=0.11)
        assert side["video_s_per_wall_s"] == pytest.approx(side["video_s"] / side["wall_s"], rel=0.01)
    assert naive["mean_new_tokens"] <= 128
    assert report["ratios"]["model_calls"] == pytest.approx(
        naive["model_calls"] / ours["model_calls"], abs=0.01
    )


def test_change_moments_are_the_box_coming_and_going(report: dict) -> None:
    moments = report["changes"]["moments"]
    assert [round(m["t"]) for m in moments] == [2, 4]
    assert report["missed_changes"] == sum(not m["covered"] for m in moments) == 0


def test_coverage_counts_misses(short_clip: Path) -> None:
    moments = change_moments(short_clip, 1.0)
    assert mark_coverage(moments, [0.0, 5.5], 1.0) == 2
    assert mark_coverage(moments, [3.0], 1.0) == 0  # within one interval of both
    lone = [ChangeMoment(10.0, 0.5)]
    assert mark_coverage(lone, [11.0], 1.0) == 0 and lone[0].analysed_at == 11.0
    assert mark_coverage(lone, [11.5], 1.0) == 1 and not lone[0].covered
