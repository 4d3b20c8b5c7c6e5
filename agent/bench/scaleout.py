"""``scenewatch bench redis``: what the scale-out streams carry and cost, on a scratch redis-server.

- ``writes``: the capture side's cost per gated frame (JPEG encode of a 640x360 and a 1920x1080
  frame to ``max_side``, then the capped ``XADD``) and the rates Redis takes frames and results at;
  the rate the recorder stores results (SQLite row, thumbnail file, acknowledgement; no listeners),
  and the plain SQLite insert rate of :meth:`~memory.store.Store.add_once`.
- ``latency``: what the streams add: frames sent at a steady rate through a worker whose model
  answers at once (a scripted backend, in this process) to the recorder; capture's send to the
  stored row, p50 and p95. It includes the engine's wait to fill a batch (``batch_wait_ms``).
- ``workers``: frames per second through 1, 2 ... ``scenewatch worker`` processes running a real
  model (default: the tiny Qwen3-VL checkpoint, built here; or another backend), the frames all
  waiting in the stream when the workers are ready; their CPU seconds per frame. The machine's
  cores are shared out (``OMP_NUM_THREADS``: cores / workers, or ``threads``), so that the workers
  divide the cores rather than oversubscribe them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil

from agent.bench.capture import machine
from agent.bench.redis_server import ScratchRedis
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.distributed.messages import FrameMessage, ResultMessage
from agent.distributed.recorder import Recorder
from agent.distributed.redis_streams import WORKERS, Streams, connect
from agent.distributed.worker import FrameWorker
from agent.pipeline.session import open_recording
from agent.pipeline.stats import percentile
from agent.sources import Frame
from memory.observation import Observation
from memory.store import Store
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

Progress = Callable[[str], None]
PREFIX = "scenewatch-bench"
ANSWER = (
    '{"summary": "a person walks past the door", "people": 1, "objects": ["door"], "actions": ["walking"]}'
)
READY_TIMEOUT_S = 600.0
CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]


@dataclass(frozen=True)
class ScaleOptions:
    """What ``bench redis`` runs: frames per measurement, the worker counts, their model."""

    frames: int = 200
    rate: float = 20.0  # frames a second in the latency run
    workers: list[int] = field(default_factory=lambda: [1, 2])
    worker_frames: int = 64
    model: str | None = None  # None: the tiny checkpoint, built in a scratch folder
    backend: str = "local"  # the workers' backend (local: the model above; detector: no model)
    max_new_tokens: int = 16
    redis_url: str | None = None  # None: a scratch redis-server
    threads: int | None = None  # torch threads per worker; None: the cores shared out


def picture(width: int, height: int) -> np.ndarray:
    """A camera-like BGR frame: smooth gradients, a few shapes, sensor noise (JPEG sizes as a camera's)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xs / width * 200, ys / height * 180, (xs + ys) / (width + height) * 160], axis=-1)
    for index in range(6):
        x, y = (index * 0.15 + 0.1) * width, (0.3 + 0.1 * (index % 3)) * height
        cv2.rectangle(
            image, (int(x), int(y)), (int(x + width * 0.08), int(y + height * 0.2)), (40 * index, 90, 200), -1
        )
    noise = np.random.default_rng(0).normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def run_scale_bench(options: ScaleOptions, settings: Settings, progress: Progress) -> dict[str, Any]:
    """Every measurement on one Redis server (the given one, under its own prefix, or a scratch one)."""
    with tempfile.TemporaryDirectory(prefix="scenewatch-bench-redis-") as scratch:
        folder = Path(scratch)
        server = ScratchRedis(folder / "redis") if options.redis_url is None else None
        try:
            url = options.redis_url or server.url  # type: ignore[union-attr]
            frames_max = max(settings.redis_frames_max, options.frames * 2)
            update = {"redis_url": url, "redis_prefix": PREFIX, "home": folder / "home", "db": None}
            cfg = settings.model_copy(update={**update, "redis_frames_max": frames_max})
            streams = Streams(connect(url), cfg)
            version = streams.client.info("server").get("redis_version")
            progress("writes")
            writes = _writes(streams, cfg, options.frames)
            progress("latency")
            latency = _latency(streams, cfg, options)
            workers = []
            if options.workers:
                model = options.model or ("" if options.backend != "local" else _tiny(folder, progress))
                for count in options.workers:
                    progress(f"{count} worker process(es)")
                    workers.append(_workers(streams, cfg, options, model, count, folder))
        finally:
            if server is not None:
                server.stop()
            else:
                _clear(connect(options.redis_url or ""))
    return {
        "machine": {**machine(), "redis": version},
        "settings": {
            "batch_size": cfg.batch_size,
            "batch_wait_ms": cfg.batch_wait_ms,
            "max_side": cfg.max_side,
            "thumb_side": cfg.thumb_side,
            "max_new_tokens": options.max_new_tokens,
            "backend": options.backend,
            "model": options.model or "tiny Qwen3-VL (random weights, built by the bench)",
        },
        "writes": writes,
        "latency": latency,
        "workers": workers,
    }


def _clear(client: Any) -> None:
    for key in client.scan_iter(f"{PREFIX}:*"):
        client.delete(key)


def _fresh(streams: Streams) -> None:
    _clear(streams.client)
    streams.ensure_groups()


def _frames(count: int, source: str = "bench.mp4", side: int = 448) -> list[FrameMessage]:
    image = picture(640, 360)
    return [
        FrameMessage.of(
            source,
            Frame(image, 1000.0 + i, float(i)),
            live=False,
            reason="change",
            score=0.05,
            max_side=side,
            sent=0.0,
        )
        for i in range(count)
    ]


def _writes(streams: Streams, settings: Settings, count: int) -> dict[str, Any]:
    side = max(settings.max_side, settings.thumb_side)
    encode_ms = {}
    for width, height in ((640, 360), (1920, 1080)):
        frame = Frame(picture(width, height), 0.0, 0.0)
        started = time.process_time()
        for _ in range(20):
            FrameMessage.of("cam", frame, live=False, reason="change", score=0.1, max_side=side, sent=0.0)
        encode_ms[f"{width}x{height}"] = round((time.process_time() - started) / 20 * 1000, 2)
    _fresh(streams)
    frames = _frames(count, side=side)
    fields = [frame.fields() for frame in frames]
    started, cpu = time.perf_counter(), time.process_time()
    for item in fields:
        streams.add_frame(item)
    add_s, add_cpu = time.perf_counter() - started, time.process_time() - cpu
    thumb = frames[0].jpeg
    results = []
    for frame in frames:
        obs = Observation(
            source=frame.source, ts=frame.ts, video_t=frame.video_t, summary="a person walks past"
        )
        obs.frame_id = frame.frame_id
        results.append(ResultMessage(obs, thumb, time.time(), "bench").fields())
    started = time.perf_counter()
    for item in results:
        streams.client.xadd(streams.observations, item)
    result_s = time.perf_counter() - started
    with open_recording(settings, memory=False) as recording:
        recorder = Recorder(streams, recording)
        stop = threading.Event()
        recorder.start(stop)
        started = time.perf_counter()
        recorder.run(stop, until_idle=True)
        record_s = time.perf_counter() - started
        stored = recorder.stats.stored
    store = Store(settings.data_dir / "plain.db")
    started = time.perf_counter()
    for i in range(count):
        store.add_once(
            Observation(source="bench.mp4", ts=float(i), summary="a person walks past", frame_id=str(i))
        )
    insert_s = time.perf_counter() - started
    store.close()
    return {
        "frames": count,
        "frame_jpeg_kb": round(sum(len(f.jpeg) for f in frames) / count / 1024, 1),
        "encode_ms": encode_ms,
        "frame_add_per_s": round(count / add_s, 1),
        "frame_add_cpu_ms": round(add_cpu / count * 1000, 3),
        "result_add_per_s": round(count / result_s, 1),
        "recorder_stored_per_s": round(stored / record_s, 1),
        "sqlite_insert_per_s": round(count / insert_s, 1),
    }


def _latency(streams: Streams, settings: Settings, options: ScaleOptions) -> dict[str, Any]:
    """Frames at a steady rate through an instant model: capture's send to the stored row."""
    _fresh(streams)
    stop = threading.Event()
    engine = Engine(
        ScriptedBackend(default=ANSWER), batch_size=settings.batch_size, batch_wait_ms=settings.batch_wait_ms
    )
    worker = FrameWorker(streams, engine, settings, "bench-worker")
    with open_recording(
        settings.model_copy(update={"db": settings.data_dir / "latency.db"}), memory=False
    ) as rec:
        recorder = Recorder(streams, rec)
        threads = [
            threading.Thread(target=worker.run, args=(stop,)),
            threading.Thread(target=recorder.run, args=(stop,)),
        ]
        for thread in threads:
            thread.start()
        frames = _frames(options.frames, source="latency.mp4")
        started = time.monotonic()
        for index, frame in enumerate(frames):
            time.sleep(max(0.0, started + index / options.rate - time.monotonic()))
            streams.add_frame(replace(frame, sent=time.time()).fields())
        deadline = time.monotonic() + 60
        while recorder.stats.stored < options.frames and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join(30)
    engine.close()
    if recorder.stats.stored < options.frames:
        raise ScenewatchError(
            f"the latency run stored {recorder.stats.stored} of {options.frames} frames in time"
        )
    ms = list(recorder.stats.stream_ms)
    return {
        "frames": options.frames,
        "rate_per_s": options.rate,
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "max_ms": round(max(ms), 1),
    }


def _tiny(folder: Path, progress: Progress) -> str:
    from tools.vision.tiny import build_tiny_checkpoint

    progress("building the tiny checkpoint")
    return str(build_tiny_checkpoint(folder / "tiny"))


def _workers(
    streams: Streams, settings: Settings, options: ScaleOptions, model: str, count: int, folder: Path
) -> dict[str, Any]:
    """``count`` worker processes on a full stream: frames a second from the first send to the last stored."""
    _fresh(streams)
    threads = options.threads or threads_per_worker(count)  # the cores shared out, not oversubscribed
    env = {
        **os.environ,
        "SCENEWATCH_REDIS_URL": settings.redis_url or "",
        "SCENEWATCH_REDIS_PREFIX": PREFIX,
        "SCENEWATCH_MAX_NEW_TOKENS": str(options.max_new_tokens),
        "SCENEWATCH_HOME": str(settings.home),
        "OMP_NUM_THREADS": str(threads),
    }
    names = [f"bench-{count}-{index}" for index in range(count)]
    processes = []
    for name in names:
        log = (folder / f"{name}.log").open("wb")
        args = [
            "worker",
            "--backend",
            options.backend,
            "--name",
            name,
            *(["--model", model] if model else []),
        ]
        processes.append(subprocess.Popen([*CLI, *args], env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(streams.client.xinfo_consumers(streams.frames, WORKERS)) < count:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise ScenewatchError(f"the worker processes did not start: see {folder}")
            time.sleep(0.1)
        cpu_before = [_cpu(p) for p in processes]
        recording = settings.model_copy(update={"db": settings.data_dir / f"workers{count}.db"})
        with open_recording(recording, memory=False) as rec:
            recorder = Recorder(streams, rec)
            stop = threading.Event()
            thread = threading.Thread(target=recorder.run, args=(stop,))
            thread.start()
            started = time.monotonic()
            for frame in _frames(options.worker_frames, source=f"workers{count}.mp4"):
                streams.add_frame(frame.fields())
            while recorder.stats.stored < options.worker_frames:
                if time.monotonic() > deadline:
                    raise ScenewatchError(
                        f"{count} worker(s) answered {recorder.stats.stored} frames in time"
                    )
                time.sleep(0.02)
            wall = time.monotonic() - started
            stop.set()
            thread.join(30)
        cpu = sum(_cpu(p) - before for p, before in zip(processes, cpu_before, strict=True))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    return {
        "workers": count,
        "frames": options.worker_frames,
        "wall_s": round(wall, 2),
        "fps": round(options.worker_frames / wall, 2),
        "worker_cpu_s_per_frame": round(cpu / options.worker_frames, 3),
        "threads_per_worker": threads,
    }


def threads_per_worker(count: int) -> int:
    """Torch threads for each of ``count`` worker processes on this machine: the cores shared out."""
    return max(1, (os.cpu_count() or 1) // count)


def _cpu(process: subprocess.Popen[bytes]) -> float:
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system
