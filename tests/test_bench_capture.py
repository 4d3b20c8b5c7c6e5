"""``scenewatch bench capture``: tiny clips, one run each, the JSON report's shape and its sense."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from agent.bench.capture import READERS
from agent.cli.app import app


def test_bench_capture_reports_streams_per_core_for_every_reader(tmp_path: Path) -> None:
    args = ["bench", "capture", "--sizes", "160x90", "--key-every", "1,2", "--seconds", "4", "--repeats", "1"]
    result = CliRunner().invoke(app, [*args, "--clips", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["command"] == (
        "scenewatch bench capture --sizes 160x90 --key-every 1,2 --every 1s --seconds 4 --repeats 1 --json"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "moving_160x90_key1s_4s.mp4",
        "moving_160x90_key2s_4s.mp4",
    ]
    rows = {(row["clip"], row["reader"]): row for row in report["rows"]}
    assert len(rows) == 2 * len(READERS)
    for row in rows.values():
        assert row["streams_per_core"] > 0 and row["cpu_per_video_s"] > 0
        assert row["samples"] == 4  # one a second, at 0..3 s
    baseline = rows["moving_160x90_key1s_4s.mp4", "opencv_read_all"]
    assert baseline["x_read_all"] == 1.0
    exact = rows["moving_160x90_key1s_4s.mp4", "scenewatch"]
    assert exact["decoded_packets"] == 4 and exact["offset_max_s"] == 0.0  # key frames on the seconds
    between = rows["moving_160x90_key2s_4s.mp4", "scenewatch"]
    # Key frames every 2 s: 1 s and 3 s are decoded from their key frame on (25 frames each).
    assert between["decoded_packets"] == 1 + 25 + 1 + 25 and between["offset_max_s"] == 0.0
    assert [verdict["clip"] for verdict in report["target"]] == ["moving_160x90_key1s_4s.mp4"] * 2


def test_bench_capture_refuses_bad_sizes_in_one_line() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from agent.cli.app import main; main()",
            "bench",
            "capture",
            "--sizes",
            "640by360",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --sizes takes WIDTHxHEIGHT, even numbers from 16, comma-separated (got '640by360')"
    ]
