"""The naive loop and scenewatch's pipeline over the same clip, model and sampling interval.

The naive loop is the design scenewatch replaces: decode every frame with ``read()``, send
one frame per interval to the model at batch size 1 with a free-text prompt (up to 128 new
tokens), no change gate, no memory. scenewatch's side is :func:`agent.pipeline.watch.run_watch` with a
scratch store: ``grab()`` for unsampled frames, the change gate, the compact JSON prompt with
the recent window, and the engine's batching.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from PIL import Image

from agent.bench.looks import pct
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.pipeline.watch import run_watch
from memory.store import Store
from tools.vision.base import VisionBackend, VisionRequest, VisionResult
from tools.vision.engine import Engine
from tools.vision.images import fit_within

NAIVE_PROMPT = "Describe what you see in this frame."
NAIVE_MAX_NEW_TOKENS = 128
NAIVE_DESIGN = (
    "read() every frame; one frame per interval at batch size 1; free text up to 128 new tokens; "
    "no gate; no memory"
)
SCENEWATCH_DESIGN = (
    "run_watch: grab() skips, change gate, compact JSON with the recent window, engine batching"
)


class CountingBackend:
    """Passes requests through and counts calls, answers and new tokens."""

    def __init__(self, inner: VisionBackend) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.calls = 0
        self.answers = 0
        self.new_tokens = 0
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        results = self.inner.generate(requests)
        with self._lock:
            self.calls += 1
            self.answers += len(results)
            self.new_tokens += sum(result.output_tokens for result in results)
        return results

    @property
    def mean_new_tokens(self) -> float:
        return round(self.new_tokens / self.answers, 1) if self.answers else 0.0


@dataclass
class RunResult:
    """What one design did with the clip."""

    design: str
    sampled: int
    analysed: int
    model_calls: int
    wall_s: float
    video_s: float
    p50_ms: float
    p95_ms: float
    mean_new_tokens: float
    skipped: int = 0
    dropped: int = 0
    failed: int = 0
    frames_decoded: int | None = None
    analysed_at: list[float] = field(default_factory=list)

    @property
    def video_s_per_wall_s(self) -> float:
        return round(self.video_s / self.wall_s, 3) if self.wall_s else 0.0


def run_naive(source: Path, backend: VisionBackend, *, every_s: float, max_side: int) -> RunResult:
    """The naive loop: every frame decoded, one look per interval, one at a time, free text."""
    counter = CountingBackend(backend)
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ScenewatchError(f"cannot read video {source}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    decoded, next_t, t, latencies, analysed_at = 0, 0.0, 0.0, [], []
    started = time.perf_counter()
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            t = decoded / fps
            decoded += 1
            if t + 0.5 / fps < next_t:
                continue
            next_t += every_s
            image = fit_within(Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)), max_side)
            request = VisionRequest.ask(NAIVE_PROMPT, [image], max_new_tokens=NAIVE_MAX_NEW_TOKENS)
            asked = time.perf_counter()
            counter.generate([request])
            latencies.append((time.perf_counter() - asked) * 1000)
            analysed_at.append(round(t, 3))
    finally:
        capture.release()
    return RunResult(
        design=NAIVE_DESIGN,
        sampled=len(analysed_at),
        analysed=len(analysed_at),
        model_calls=counter.calls,
        wall_s=round(time.perf_counter() - started, 3),
        video_s=round(t, 3),
        p50_ms=pct(latencies, 50),
        p95_ms=pct(latencies, 95),
        mean_new_tokens=counter.mean_new_tokens,
        frames_decoded=decoded,
        analysed_at=analysed_at,
    )


def run_scenewatch(source: Path, backend: VisionBackend, settings: Settings) -> RunResult:
    """scenewatch's watch loop over the clip, into a scratch store that is thrown away afterwards."""
    counter = CountingBackend(backend)
    with tempfile.TemporaryDirectory(prefix="scenewatch-bench-") as scratch:
        scratch_settings = settings.model_copy(update={"home": Path(scratch), "db": None})
        store = Store(scratch_settings.db_path)
        try:
            with Engine(
                counter, batch_size=settings.batch_size, batch_wait_ms=settings.batch_wait_ms
            ) as engine:
                summary = run_watch([str(source)], scratch_settings, engine=engine, store=store)
            positions = sorted(obs.video_t for obs in store.between() if obs.video_t is not None)
        finally:
            store.close()
    if summary.errors:
        raise ScenewatchError(f"the watch stopped: {next(iter(summary.errors.values()))}")
    return RunResult(
        design=SCENEWATCH_DESIGN,
        sampled=summary.sampled,
        analysed=summary.analysed,
        model_calls=summary.model_calls,
        wall_s=round(summary.wall_s, 3),
        video_s=round(summary.video_s, 3),
        p50_ms=pct(summary.latencies_ms, 50),
        p95_ms=pct(summary.latencies_ms, 95),
        mean_new_tokens=counter.mean_new_tokens,
        skipped=summary.skipped,
        dropped=summary.dropped,
        failed=summary.failed,
        analysed_at=[round(video_t, 3) for video_t in positions],
    )
