"""``scenewatch serve --redis``: the service is the scale-out's recorder (a real redis-server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import RULES, frame_counter, served, settings_for, sse_messages
from typer.testing import CliRunner

from agent.bench.redis_server import ScratchRedis, free_port
from agent.cli.app import app
from agent.core.errors import ScenewatchError
from agent.distributed.capture import run_capture
from agent.distributed.redis_streams import Streams, connect
from agent.distributed.worker import FrameWorker
from tools.vision.engine import Engine


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[ScratchRedis]:
    server = ScratchRedis(tmp_path / "redis")
    yield server
    server.stop()


def test_the_workers_results_reach_the_store_stream_and_rules(
    tmp_path: Path, redis_server: ScratchRedis, synthetic_clip: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = settings_for(tmp_path / "home", redis_url=redis_server.url, every_s=0.5, heartbeat_s=3.0)
    streams = Streams(connect(redis_server.url), settings)
    with served(settings, rules=rules) as api:
        published = api.wait_for(streams.questions, what="the questions published for the workers")
        assert published == {"box": "Is there a red box?"}
        with api.client.stream("GET", "/api/stream", params={"after": "0-0"}) as live:
            summary = run_capture([str(synthetic_clip)], settings, streams).to_dict()
            assert summary["gated"] >= 4 and summary["dropped"] == 0
            engine = Engine(frame_counter(), batch_size=2, batch_wait_ms=5)
            FrameWorker(streams, engine, settings, "w1").run(threading.Event(), until_idle=True)
            engine.close()
            messages = sse_messages(live, limit=summary["gated"], timeout=30)
        api.wait_for(lambda: api.service.reader.count() == summary["gated"], what="every result stored")
        stored = api.service.reader.between()
        assert len({obs.frame_id for obs in stored}) == len(stored) == summary["gated"]
        assert {m["data"]["id"] for m in messages if m["event"] == "observation"} <= {o.id for o in stored}
        assert any(m["event"] == "event" for m in messages)  # the rule on the red box fired
        events = api.client.get("/api/events").json()
        assert events and all(event["rule"] == "box_seen" for event in events)
        recorder = api.service.recorder
        assert recorder is not None
        api.wait_for(lambda: recorder.stats.stored == len(stored), what="the recorder's count")


def test_serve_with_an_unreachable_redis_stops_before_the_model(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(
        app, ["--home", str(tmp_path / "home"), "serve", "--redis", url, "--port", "0"]
    )
    assert isinstance(result.exception, ScenewatchError)  # main() prints it as one line
    assert f"cannot reach Redis at {url}" in str(result.exception)
