"""Look latency per input size, and throughput per number of concurrent streams.

Every answer here is forced to exactly ``new_tokens`` tokens (``min_new_tokens`` =
``max_new_tokens``), so sizes, stream counts and machines compare at the same decode length.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PIL import Image

from agent.bench.peak_rss import PeakMemory
from prompts import load_prompt
from tools.vision.base import VisionBackend, VisionRequest
from tools.vision.engine import Engine

Progress = Callable[[str], None]


@dataclass
class SizeResult:
    """Batch-1 look latency at one square input size."""

    size: int
    image_tokens: int
    prompt_tokens: int
    new_tokens: int
    runs: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    fps: float  # one stream, one look after another
    first_token_p50_ms: float  # a look decoding one token: preparation, vision tower, prefill
    ms_per_token: float  # the rest of a look, per further token
    peak_memory_mib: float
    memory_kind: str


@dataclass
class StreamResult:
    """N streams submitting looks concurrently to one engine (batch size N)."""

    streams: int
    size: int
    frames: int
    batch_size: int
    mean_batch: float
    wall_s: float
    fps: float
    p50_ms: float
    p95_ms: float


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation), rounded to 0.1; 0 when empty."""
    return round(float(np.percentile(values, q)), 1) if len(values) else 0.0


def square_image(frame: np.ndarray, size: int) -> Image.Image:
    """The centre square of a BGR frame, resized to ``size``×``size``, as RGB."""
    height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = frame[top : top + side, left : left + side]
    resized = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return Image.fromarray(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB))


def look_request(image: Image.Image, new_tokens: int) -> VisionRequest:
    """The look prompt on one image, decoding exactly ``new_tokens`` tokens."""
    request = VisionRequest.ask(load_prompt("look"), [image], max_new_tokens=new_tokens)
    return replace(request, min_new_tokens=new_tokens)


def warm_batches(backend: VisionBackend, request: VisionRequest, largest: int) -> None:
    """Run batches of 1, 2, 4, ... up to ``largest`` once (first uses compile or capture graphs)."""
    batch = 1
    while True:
        backend.generate([request] * min(batch, largest))
        if batch >= largest:
            return
        batch *= 2


def decode_split(p50_ms: float, first_token_ms: float, new_tokens: int) -> float:
    """Milliseconds per token after the first: what a look adds over a one-token look, per token."""
    if new_tokens <= 1:
        return 0.0
    return round(max(p50_ms - first_token_ms, 0.0) / (new_tokens - 1), 2)


def bench_sizes(
    backend: VisionBackend,
    frames: Sequence[np.ndarray],
    sizes: Sequence[int],
    *,
    new_tokens: int,
    runs: int,
    device: str,
    progress: Progress,
) -> list[SizeResult]:
    """Batch-1 latency, image tokens and peak memory at each square input size.

    Each size also times ``runs`` looks that decode a single token, which splits a look into
    its time to the first token and a cost per further token.
    """
    results = []
    for size in sizes:
        images = [square_image(frame, size) for frame in frames]
        progress(f"size {size}: warm-up, then {runs} looks")
        backend.generate([look_request(images[0], new_tokens)])
        latencies, results_at_size = [], []
        with PeakMemory(device) as peak:
            for run in range(runs):
                started = time.perf_counter()
                results_at_size += backend.generate([look_request(images[run % len(images)], new_tokens)])
                latencies.append((time.perf_counter() - started) * 1000)
        first_token = []
        for run in range(runs):
            started = time.perf_counter()
            backend.generate([look_request(images[run % len(images)], 1)])
            first_token.append((time.perf_counter() - started) * 1000)
        last = results_at_size[-1]
        p50_ms, first_token_p50 = pct(latencies, 50), pct(first_token, 50)
        results.append(
            SizeResult(
                size=size,
                image_tokens=last.image_tokens,
                prompt_tokens=last.prompt_tokens,
                new_tokens=last.output_tokens,
                runs=runs,
                p50_ms=p50_ms,
                p95_ms=pct(latencies, 95),
                mean_ms=round(sum(latencies) / runs, 1),
                fps=round(runs * 1000 / sum(latencies), 2),
                first_token_p50_ms=first_token_p50,
                ms_per_token=decode_split(p50_ms, first_token_p50, last.output_tokens),
                peak_memory_mib=peak.mib,
                memory_kind=peak.kind,
            )
        )
    return results


def _concurrent_looks(
    engine: Engine, requests: Sequence[Sequence[VisionRequest]]
) -> tuple[list[float], float]:
    """One thread per stream, each submitting its requests one after another; latencies and wall time."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def stream(index: int) -> None:
        for request in requests[index]:
            started = time.perf_counter()
            try:
                engine.submit(request, tag=f"stream-{index}").result()
            except Exception as exc:  # re-raised in the caller's thread below
                errors.append(exc)
                return
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(len(requests))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return latencies, time.perf_counter() - started


def bench_streams(
    backend: VisionBackend,
    frames: Sequence[np.ndarray],
    counts: Sequence[int],
    *,
    size: int,
    new_tokens: int,
    rounds: int,
    batch_wait_ms: float,
    progress: Progress,
) -> list[StreamResult]:
    """Aggregate frames per second and latency when N streams share one batching engine."""
    images = [square_image(frame, size) for frame in frames]
    results = []
    for count in counts:
        progress(f"{count} stream(s): warm-up, then {rounds} looks each")
        with Engine(backend, batch_size=count, batch_wait_ms=batch_wait_ms) as warm:
            warm_batches(warm, look_request(images[0], new_tokens), count)
        requests = [
            [look_request(images[(index + turn) % len(images)], new_tokens) for turn in range(rounds)]
            for index in range(count)
        ]
        with Engine(backend, batch_size=count, batch_wait_ms=batch_wait_ms) as engine:
            latencies, wall_s = _concurrent_looks(engine, requests)
            mean_batch = engine.stats.mean_batch
        frames_done = count * rounds
        results.append(
            StreamResult(
                streams=count,
                size=size,
                frames=frames_done,
                batch_size=count,
                mean_batch=round(mean_batch, 2),
                wall_s=round(wall_s, 3),
                fps=round(frames_done / wall_s, 2),
                p50_ms=pct(latencies, 50),
                p95_ms=pct(latencies, 95),
            )
        )
    return results
