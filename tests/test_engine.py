"""The engine: one thread owns the backend, batches callers, drops late requests."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from helpers import SlowBackend, echo_upper

from tools.vision.base import VisionRequest, VisionResult
from tools.vision.engine import DeadlineExceeded, Engine, EngineClosed
from tools.vision.scripted import ScriptedBackend


def test_batches_requests_from_several_callers() -> None:
    backend = SlowBackend(0.05, echo_upper)
    with Engine(backend, batch_size=8, batch_wait_ms=500) as engine:
        futures = []
        barrier = threading.Barrier(4)

        def caller(name: str) -> None:
            barrier.wait()
            futures.append(engine.submit(VisionRequest.ask(name), tag=name))

        threads = [threading.Thread(target=caller, args=(f"cam{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        answers = sorted(f.result(timeout=5).text for f in futures)
    assert answers == ["CAM0", "CAM1", "CAM2", "CAM3"]
    assert max(len(batch) for batch in backend.batches) > 1
    assert engine.stats.requests == 4
    assert engine.stats.batches == len(backend.batches)


def test_batch_size_is_capped() -> None:
    backend = SlowBackend(0.0, echo_upper)
    with Engine(backend, batch_size=3, batch_wait_ms=50) as engine:
        futures = [engine.submit(VisionRequest.ask(str(i))) for i in range(7)]
        assert [f.result(timeout=5).text for f in futures] == [str(i) for i in range(7)]
    assert all(len(batch) <= 3 for batch in backend.batches)


def test_late_request_is_dropped_not_run() -> None:
    backend = SlowBackend(0.3, echo_upper)
    with Engine(backend, batch_size=1, batch_wait_ms=0) as engine:
        first = engine.submit(VisionRequest.ask("first"))
        late = engine.submit(VisionRequest.ask("late"), deadline_s=0.1)
        assert first.result(timeout=5).text == "FIRST"
        with pytest.raises(DeadlineExceeded):
            late.result(timeout=5)
    assert engine.stats.dropped == 1
    assert [r.messages[-1]["content"][-1]["text"] for r in backend.requests] == ["first"]


def test_backend_error_reaches_the_caller_and_engine_goes_on() -> None:
    calls = {"n": 0}

    def flaky(request: VisionRequest) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model fell over")
        return "ok"

    with Engine(ScriptedBackend(flaky), batch_size=1) as engine:
        with pytest.raises(RuntimeError, match="fell over"):
            engine.submit(VisionRequest.ask("a")).result(timeout=5)
        assert engine.submit(VisionRequest.ask("b")).result(timeout=5).text == "ok"
    assert engine.stats.failed == 1


def test_generate_matches_the_backend_protocol() -> None:
    with Engine(ScriptedBackend(["x", "y"]), batch_size=4) as engine:
        assert [r.text for r in engine.generate([VisionRequest.ask("1"), VisionRequest.ask("2")])] == [
            "x",
            "y",
        ]
        assert engine.model_name == "scripted"


def test_a_wrong_sized_answer_fails_the_batch_and_the_engine_goes_on() -> None:
    class Short(ScriptedBackend):
        def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
            return super().generate(requests)[:1] if len(requests) > 1 else super().generate(requests)

    with Engine(Short(default="x"), batch_size=2, batch_wait_ms=200) as engine:
        pair = [engine.submit(VisionRequest.ask("a")), engine.submit(VisionRequest.ask("b"))]
        for future in pair:
            with pytest.raises(RuntimeError, match="answered 1 of 2"):
                future.result(timeout=5)
        assert engine.submit(VisionRequest.ask("c")).result(timeout=5).text == "x"


def test_submit_after_close_fails_cleanly() -> None:
    engine = Engine(ScriptedBackend(default="x"))
    engine.close()
    with pytest.raises(EngineClosed):
        engine.submit(VisionRequest.ask("q")).result(timeout=1)
