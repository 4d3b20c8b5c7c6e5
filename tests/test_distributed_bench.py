"""``scenewatch bench redis`` on a scratch redis-server: the report's sections agree with themselves
(no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]


def test_bench_redis_reports_rates_and_latency(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["bench", "redis", "--frames", "20", "--rate", "50", "--workers", "0", "--json", "--out", str(out)]
    done = subprocess.run(
        [*CLI, *args], capture_output=True, timeout=120, env={**os.environ, "SCENEWATCH_HOME": str(tmp_path)}
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    report = json.loads(done.stdout)
    assert json.loads(out.read_text()) == report
    assert (
        report["command"] == "scenewatch bench redis --frames 20 --rate 50 --workers 0 --worker-frames 64 "
        "--max-new-tokens 16 --json"
    )
    writes = report["writes"]
    assert writes["frames"] == 20 and writes["frame_jpeg_kb"] > 1
    for key in ("frame_add_per_s", "result_add_per_s", "recorder_stored_per_s", "sqlite_insert_per_s"):
        assert writes[key] > 0
    assert set(writes["encode_ms"]) == {"640x360", "1920x1080"}
    latency = report["latency"]
    assert latency["frames"] == 20 and 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["max_ms"]
    assert report["workers"] == [] and report["machine"]["redis"]
