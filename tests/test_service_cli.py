"""``scenewatch serve`` as a user runs it: the tiny checkpoint, a real clip, SIGTERM at the end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agent.bench.clips import write_clip
from memory.sources import list_sources
from memory.store import Store

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]


def _wait(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_serve_a_clip_then_sigterm_exits_cleanly(
    synthetic_clip: Path, tiny_checkpoint: Path, tmp_path: Path, scratch_home: Path
) -> None:
    longer = write_clip(tmp_path / "longer.mp4", duration_s=120.0)
    process = subprocess.Popen(
        [
            *CLI,
            "serve",
            str(synthetic_clip),
            "--model",
            str(tiny_checkpoint),
            "--device",
            "cpu",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SCENEWATCH_EVERY_S": "2"},
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line + (process.stderr.read() if process.poll() is not None and process.stderr else "")
        api = httpx.Client(base_url=url[0], timeout=30)
        assert api.get("/healthz").json() == {"status": "ok"}
        assert "/api/stream" in api.get("/openapi.json").json()["paths"]
        _wait(lambda: api.get("/readyz").status_code == 200, 180, "the tiny model to load")
        with api.stream("GET", "/api/stream", params={"after": "0-0"}) as stream:
            data = next(line for line in stream.iter_lines() if line.startswith("data:"))
        assert '"source"' in data
        _wait(lambda: api.get("/api/sources/1").json()["state"] == "finished", 180, "the clip to end")
        samples = _samples(api.get("/metrics").text)
        name = (("source", str(synthetic_clip)),)
        stored = samples[("scenewatch_observations_stored", name)]
        assert samples[("scenewatch_frames_analysed_total", name)] == stored > 0
        added = api.post("/api/sources", json={"source": str(longer)})
        assert added.status_code == 201
        _wait(lambda: api.get("/api/sources/2").json()["analysed"] >= 1, 120, "the second clip to start")
        process.send_signal(signal.SIGTERM)  # mid-watch
        assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    store = Store(scratch_home / "scenewatch.db")
    try:
        assert store.execute("PRAGMA integrity_check")[0][0] == "ok"
        states = {record.name: record.state for record in list_sources(store)}
        assert states == {str(synthetic_clip): "finished", str(longer): "watching"}  # back at the next start
        assert store.count(str(longer)) >= 1
    finally:
        store.close()


def test_serve_refuses_an_open_address_without_a_token(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "SCENEWATCH_API_TOKEN"},
    )
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0 without a token" in done.stderr and "Traceback" not in done.stderr
