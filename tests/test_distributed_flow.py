"""The scale-out roles in one process against a real redis-server: capture, workers, recorder, the
capped stream, dead letters, a worker that dies, a result delivered twice, the recorder away, and
Redis restarted mid-run."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import BrokenBackend, SlowBackend

from agent.bench.redis_server import ScratchRedis as RedisServer
from agent.core.config import Settings, load_settings
from agent.distributed.capture import SourceCapture, run_capture
from agent.distributed.messages import FrameMessage, ResultMessage
from agent.distributed.recorder import Recorder
from agent.distributed.redis_streams import Streams, connect
from agent.distributed.worker import FrameWorker
from agent.pipeline.session import open_recording
from agent.sources import Frame
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

ANSWER = '{"summary": "a box on the floor", "people": 0, "objects": ["box"], "answers": {"q1": true}}'


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    redis_server = RedisServer(tmp_path / "redis", appendonly=True)
    yield redis_server
    redis_server.stop()


def _settings(tmp_path: Path, server: RedisServer, **overrides: object) -> Settings:
    values = {"home": tmp_path / "home", "redis_url": server.url, "every_s": 0.5, "heartbeat_s": 3.0}
    return load_settings(**{**values, **overrides})


def _work(streams: Streams, settings: Settings, backend: object, name: str = "w1") -> FrameWorker:
    engine = Engine(backend, batch_size=settings.batch_size, batch_wait_ms=5)
    worker = FrameWorker(streams, engine, settings, name)
    worker.run(threading.Event(), until_idle=True)
    engine.close()
    return worker


def _record(settings: Settings, streams: Streams, **options: object) -> tuple[int, list[str], Recorder]:
    with open_recording(settings, memory=False, **options) as recording:
        recorder = Recorder(streams, recording)
        recorder.run(threading.Event(), until_idle=True)
        frame_ids = [obs.frame_id for obs in recording.store.between()]
        return recording.store.count(), frame_ids, recorder


def test_gated_frames_become_observations_once_with_window_and_questions(
    tmp_path: Path, server: RedisServer, synthetic_clip: Path
) -> None:
    settings = _settings(tmp_path, server, batch_size=1)
    streams = Streams(connect(server.url), settings)
    with open_recording(settings, memory=False, questions={"q1": "Is there a red box?"}) as recording:
        recorder = Recorder(streams, recording)
        recorder.start(threading.Event())
        summary = run_capture([str(synthetic_clip)], settings, streams).to_dict()
        assert summary["gated"] == summary["sent"] >= 4 and summary["dropped"] == 0
        assert summary["sampled"] == 40
        backend = ScriptedBackend(default=ANSWER)
        engine = Engine(backend, batch_size=1, batch_wait_ms=0)
        worker = FrameWorker(streams, engine, settings, "w1")
        for _ in range(summary["gated"]):  # one frame, then its result stored, then the next
            worker.step()
            recorder.step()
        engine.close()
        stored = recording.store.between()
    assert len(stored) == summary["gated"]
    assert len({obs.frame_id for obs in stored}) == len(stored)
    assert all(obs.answers == {"q1": True} and obs.summary == "a box on the floor" for obs in stored)
    assert all(Path(obs.thumb_path).is_file() for obs in stored)
    prompts = [request.messages[-1]["content"][-1]["text"] for request in backend.requests]
    assert "q1: Is there a red box?" in prompts[0]
    assert (
        "a box on the floor" not in prompts[0] and "a box on the floor" in prompts[1]
    )  # the window the recorder keeps
    assert [obs.video_t for obs in stored] == sorted(obs.video_t for obs in stored)


class _Still:
    """A live source of identical frames, one per call, as fast as they are read."""

    name, live, unreadable, video_s = "rtsp://camera/1", True, 0, 0.0

    def __init__(self, count: int) -> None:
        self.count = count

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for index in range(self.count):
            yield Frame(np.full((36, 64, 3), 40, np.uint8), 1000.0 + index)

    def close(self) -> None:
        pass


def test_a_full_stream_drops_live_frames_and_counts_them(tmp_path: Path, server: RedisServer) -> None:
    settings = _settings(tmp_path, server, redis_frames_max=2, heartbeat_s=0.5)
    streams = Streams(connect(server.url), settings)
    capture = SourceCapture(_Still(10), streams, settings, threading.Event())
    capture.run()
    stats = capture.stats
    assert stats.sampled == 10 and stats.sent == 2 == streams.backlog()
    assert stats.dropped == stats.gated - 2 > 0
    assert stats.gated == stats.sent + stats.dropped


def test_a_file_waits_for_room_instead(tmp_path: Path, server: RedisServer, synthetic_clip: Path) -> None:
    settings = _settings(tmp_path, server, redis_frames_max=1)
    streams = Streams(connect(server.url), settings)
    stop = threading.Event()
    done: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: done.update(run_capture([str(synthetic_clip)], settings, streams, stop).to_dict())
    )
    thread.start()
    _work(streams, settings, ScriptedBackend(default=ANSWER))  # takes the first while capture waits
    deadline = time.monotonic() + 30
    while thread.is_alive() and time.monotonic() < deadline:
        _work(streams, settings, ScriptedBackend(default=ANSWER))
    thread.join(5)
    assert done["dropped"] == 0 and done["sent"] == done["gated"]
    assert _record(settings, streams)[0] == done["gated"]


def test_a_frame_that_keeps_failing_goes_to_the_dead_letters(
    tmp_path: Path, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, server, redis_max_deliveries=2, redis_claim_idle_s=0.05)
    streams = Streams(connect(server.url), settings)
    streams.ensure_groups()
    capture = SourceCapture(_Still(1), streams, settings, threading.Event())
    capture.run()
    backend = BrokenBackend()
    engine = Engine(backend, batch_size=4, batch_wait_ms=0)
    worker = FrameWorker(streams, engine, settings, "w1")
    streams.ensure_groups()
    worker.step()  # first delivery: fails, stays pending
    assert streams.backlog() == 1 and worker.stats.failed == 1
    time.sleep(0.1)
    worker.step()  # taken again after the idle time: fails its last time
    engine.close()
    assert worker.stats.failed == 2 and worker.stats.dead == 1 and worker.stats.claimed == 1
    assert streams.backlog() == 0
    [(_, fields)] = streams.client.xrange(streams.dead)
    assert b"CUDA error" in fields[b"error"] and fields[b"deliveries"] == b"2"
    assert FrameMessage.from_fields(fields).source == "rtsp://camera/1"
    assert "moved to the dead letters" in caplog.text


def test_a_dead_workers_frames_are_taken_over_and_stored_once(
    tmp_path: Path, server: RedisServer, synthetic_clip: Path
) -> None:
    settings = _settings(tmp_path, server, redis_claim_idle_s=0.2, batch_size=4)
    streams = Streams(connect(server.url), settings)
    gated = run_capture([str(synthetic_clip)], settings, streams).to_dict()["gated"]
    dead = FrameWorker(streams, Engine(ScriptedBackend()), settings, "dies")
    streams.ensure_groups()
    held = dead._take()  # read a batch, then never answer it (a worker killed mid-batch)
    assert len(held) == 4
    time.sleep(0.3)
    alive = _work(streams, settings, ScriptedBackend(default=ANSWER), "lives")
    assert alive.stats.claimed == 4 and alive.stats.answered == gated
    count, frame_ids, _ = _record(settings, streams)
    assert count == gated == len(set(frame_ids))


def test_a_result_delivered_twice_is_stored_once(
    tmp_path: Path, server: RedisServer, synthetic_clip: Path
) -> None:
    settings = _settings(tmp_path, server)
    streams = Streams(connect(server.url), settings)
    gated = run_capture([str(synthetic_clip)], settings, streams).to_dict()["gated"]
    _work(streams, settings, ScriptedBackend(default=ANSWER))
    [(_, first)] = streams.client.xrange(streams.observations, count=1)
    streams.client.xadd(streams.observations, first)  # the same result again (a worker's retried write)
    count, frame_ids, recorder = _record(settings, streams)
    assert count == gated == len(set(frame_ids))
    assert recorder.stats.repeated == 1 and recorder.stats.stored == gated
    assert ResultMessage.from_fields(first).observation.frame_id in frame_ids


def test_results_wait_in_the_stream_while_the_recorder_is_down(
    tmp_path: Path, server: RedisServer, synthetic_clip: Path
) -> None:
    settings = _settings(tmp_path, server)
    streams = Streams(connect(server.url), settings)
    gated = run_capture([str(synthetic_clip)], settings, streams).to_dict()["gated"]
    _work(streams, settings, ScriptedBackend(default=ANSWER))
    assert streams.client.xlen(streams.observations) == gated and streams.backlog() == 0
    count, frame_ids, _ = _record(settings, streams)  # the recorder comes back
    assert count == gated == len(set(frame_ids))
    assert streams.client.xlen(streams.observations) == 0


def test_nothing_is_lost_when_redis_restarts_mid_run(
    tmp_path: Path, server: RedisServer, synthetic_clip: Path
) -> None:
    settings = _settings(tmp_path, server, batch_size=2)
    streams = Streams(connect(server.url), settings)
    stop = threading.Event()
    engine = Engine(SlowBackend(0.2, default=ANSWER), batch_size=2, batch_wait_ms=0)
    worker = FrameWorker(streams, engine, settings, "w1")
    with open_recording(settings, memory=False) as recording:
        recorder = Recorder(streams, recording)
        threads = [
            threading.Thread(target=worker.run, args=(stop,)),
            threading.Thread(target=recorder.run, args=(stop,)),
        ]
        for thread in threads:
            thread.start()
        gated = run_capture([str(synthetic_clip)], settings, streams).to_dict()["gated"]
        _wait(lambda: recording.store.count() >= 1)
        assert recording.store.count() < gated  # mid-run
        server.restart(down_s=0.5)
        _wait(lambda: recording.store.count() >= gated)
        stop.set()
        for thread in threads:
            thread.join(10)
        stored = recording.store.between()
    engine.close()
    assert len(stored) == gated == len({obs.frame_id for obs in stored})
    assert not any(thread.is_alive() for thread in threads)


def _wait(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_frame_ids_come_from_the_source_and_its_time() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    file_frame = FrameMessage.of(
        "/a.mp4", Frame(image, 1000.0, 2.5), live=False, reason="first", score=None, max_side=8, sent=0
    )
    again = FrameMessage.of(
        "/a.mp4", Frame(image, 2000.0, 2.5), live=False, reason="change", score=0.1, max_side=8, sent=0
    )
    live = FrameMessage.of(
        "rtsp://x", Frame(image, 1000.25), live=True, reason="first", score=None, max_side=8, sent=0
    )
    assert file_frame.frame_id == again.frame_id and re.fullmatch(r"[0-9a-f]{16}:v2500", file_frame.frame_id)
    assert live.frame_id.endswith(":c1000250")
    assert FrameMessage.from_fields(live.fields()) == live


def test_the_detector_stage_runs_in_capture_and_its_findings_reach_the_store(
    tmp_path: Path, server: RedisServer, synthetic_clip: Path
) -> None:
    from agent.pipeline.session import watch_perception
    from tools.perception.backend import MODEL_NAME
    from tools.vision.registry import make_backend

    settings = _settings(tmp_path, server, backend="detector")
    streams = Streams(connect(server.url), settings)
    summary = run_capture([str(synthetic_clip)], settings, streams, perception=watch_perception(settings))
    [(_, fields)] = streams.client.xrange(streams.frames, count=1)
    sent = FrameMessage.from_fields(fields)
    assert sent.findings is not None and sent.findings.width == 320  # the clip's frame size
    _work(streams, settings, make_backend(settings))
    count, _, _ = _record(settings, streams)
    assert count == summary.to_dict()["gated"]
    with open_recording(settings, memory=False) as recording:
        stored = recording.store.between()
    assert all(
        obs.model == MODEL_NAME and obs.detections is not None and obs.tracks is not None for obs in stored
    )
    assert all(obs.parsed for obs in stored)  # answered from the findings, as JSON
