"""``scenewatch serve`` as the issue checks it: a real clip with the detector backend, every endpoint
it names, the live stream during the watch, metrics against the database, an MQTT subscriber on a
real mosquitto, SIGTERM mid-watch, and no open address without a token."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_support import wait_until
from test_mqtt import MOSQUITTO, Broker, Subscriber

from agent.pipeline.watch import source_slug
from memory.events import Outbox
from memory.sources import list_sources
from memory.store import Store

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]
PATHS = ("/api/sources", "/api/observations", "/api/timeline", "/api/events", "/api/recall", "/api/ask")
RULES = """\
rules:
  person_seen:
    when: "count_person >= 1"
    severity: info
"""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.skipif(not Path(MOSQUITTO).is_file(), reason="mosquitto is not installed")
def test_the_issue_check_end_to_end(media_dir: Path, tmp_path: Path, scratch_home: Path) -> None:
    shop, runner = media_dir / "shopfront_cctv.mp4", media_dir / "runner.mp4"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    broker = Broker(tmp_path).start()
    events = Subscriber(broker.port, "scenewatch/events")
    command = [*CLI, "serve", str(shop), "--backend", "detector", "--port", "0", "--rules", str(rules)]
    env = {**os.environ, "SCENEWATCH_MQTT_HOST": "127.0.0.1", "SCENEWATCH_MQTT_PORT": str(broker.port)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline() if process.stdout else ""
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line + (process.stderr.read() if process.poll() is not None and process.stderr else "")
        api = httpx.Client(base_url=url[0], timeout=30)
        assert api.get("/healthz").json() == {"status": "ok"}
        paths = api.get("/openapi.json").json()["paths"]
        assert all(path in paths for path in PATHS) and "/api/stream" in paths
        wait_until(lambda: api.get("/readyz").status_code == 200, 120, "the detector to load")

        with api.stream("GET", "/api/stream") as stream:  # from now on: what the watch commits next
            data = next(line for line in stream.iter_lines() if line.startswith("data:"))
        assert json.loads(data.removeprefix("data:"))["source"] == str(shop)
        assert api.get("/api/sources/1").json()["state"] == "watching"  # the stream spoke during the watch

        wait_until(lambda: api.get("/api/sources/1").json()["state"] == "finished", 300, "the clip to end")
        name = (("source", str(shop)),)

        def all_delivered() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            samples = _samples(api.get("/metrics").text)
            return samples if samples.get(("scenewatch_events_pending", (("sink", "mqtt"),))) == 0 else None

        samples = wait_until(all_delivered, 60, "the events to reach the broker")
        store = Store(scratch_home / "scenewatch.db")
        try:
            stored = store.count(str(shop))
            raised = Outbox(store).events(limit=1000)
        finally:
            store.close()
        assert samples[("scenewatch_observations_stored", name)] == stored > 0
        assert samples[("scenewatch_frames_analysed_total", name)] == stored
        assert samples[("scenewatch_frames_sampled_total", name)] >= stored
        raised_metric = (("rule", "person_seen"), ("source", str(shop)))
        assert samples[("scenewatch_events_raised_total", raised_metric)] == len(raised) > 0
        assert samples[("scenewatch_events_delivered_total", (("sink", "mqtt"),))] == len(raised)

        received = wait_until(
            lambda: len(events.messages) >= len(raised) and events.messages, 30, "MQTT events"
        )
        published = [json.loads(payload) for _, payload, _ in received]
        assert sorted(event["id"] for event in published) == sorted(event["id"] for event in raised)
        assert {event["rule"] for event in published} == {"person_seen"}
        state = Subscriber(broker.port, f"scenewatch/{source_slug(str(shop))}/state")  # retained
        retained = wait_until(lambda: state.messages, 10, "the retained state")
        assert json.loads(retained[-1][1])["source"] == str(shop)
        state.close()

        assert api.post("/api/sources", json={"source": str(runner)}).status_code == 201
        wait_until(lambda: api.get("/api/sources/2").json()["analysed"] >= 1, 120, "the second clip to start")
        process.send_signal(signal.SIGTERM)  # mid-watch
        assert process.wait(timeout=120) == 0
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        events.close()
        broker.stop()
    store = Store(scratch_home / "scenewatch.db")
    try:
        assert store.execute("PRAGMA integrity_check")[0][0] == "ok"
        states = {record.name: record.state for record in list_sources(store)}
        assert states == {str(shop): "finished", str(runner): "watching"}  # back at the next start
        assert store.count(str(runner)) >= 1
    finally:
        store.close()

    refused = subprocess.run(
        [*CLI, "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "SCENEWATCH_API_TOKEN"},
    )
    assert refused.returncode == 1
    assert "refusing to listen on 0.0.0.0 without a token" in refused.stderr
    assert "Traceback" not in refused.stderr
