"""``scenewatch bench pipeline``: look latency, throughput and memory, and the naive loop side by side.

One run, one model, one clip: per input size the batch-1 look latency, image tokens, peak
memory and sustainable frames per second; per stream count the engine's aggregate frames per
second and latency; then the naive loop and scenewatch's pipeline over the same clip at the
same sampling interval, with their ratios and the change moments scenewatch must not miss.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import transformers

from agent.bench.changes import MIN_CHANGED, PIXEL_STEP, WIDTH, change_moments, mark_coverage
from agent.bench.clips import Appearance, write_clip
from agent.bench.compare import RunResult, run_naive, run_scenewatch
from agent.bench.looks import bench_sizes, bench_streams
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from tools.vision.base import VisionBackend
from tools.vision.engine import Engine

Progress = Callable[[str], None]
DECODERS = ("auto", "hf", "static")
FRAMES = 8  # distinct frames the size and stream measurements cycle through


@dataclass
class PipelineOptions:
    """What ``scenewatch bench pipeline`` measures, and with which model."""

    model: str | None = None
    arch: str | None = None  # a random-weight architecture (tools.vision.architectures)
    source: Path | None = None  # None: a synthetic clip with known changes
    sizes: list[int] = field(default_factory=lambda: [224, 336, 448])
    streams: list[int] = field(default_factory=lambda: [1, 4, 16])
    max_new_tokens: int = 64
    runs: int = 10
    rounds: int = 4
    decoder: str = "auto"


@dataclass
class LoadedBackend:
    """The backend under test and what the report says about it."""

    backend: VisionBackend
    name: str
    random_weights: bool
    device: str
    dtype: str
    decoder: str


def load_backend(options: PipelineOptions, settings: Settings, max_side: int) -> LoadedBackend:
    """The model under test: a checkpoint through LocalQwenBackend, or a random-weight architecture."""
    from tools.vision.architectures import FixedLengthBackend, random_weights_backend
    from tools.vision.local import LocalQwenBackend, pick_device

    device = pick_device(settings.device)
    if options.arch:
        backend: Any = random_weights_backend(
            options.arch,
            device=device,
            max_side=max_side,
            max_new_tokens=options.max_new_tokens,
            decoder=options.decoder,
        )
        local = backend.inner
    else:
        local = backend = LocalQwenBackend(
            options.model or settings.model,
            device=device,
            dtype=settings.dtype,
            attn=settings.attn,
            max_side=max_side,
            max_new_tokens=options.max_new_tokens,
            decoder=options.decoder,
        )
    return LoadedBackend(
        backend=backend,
        name=local.model_name,
        random_weights=isinstance(backend, FixedLengthBackend),
        device=device,
        dtype=str(local.dtype).removeprefix("torch."),
        decoder=local.decoder_name,
    )


def clip_frames(path: Path, count: int) -> list[np.ndarray]:
    """``count`` frames spread evenly over the clip (BGR)."""
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(np.linspace(0, max(0, total - 1), count).round().astype(int).tolist())
    frames, index = [], 0
    while wanted and capture.grab():
        if index in wanted:
            ok, frame = capture.retrieve()
            if ok:
                frames.append(frame)
            wanted.discard(index)
        index += 1
    capture.release()
    if not frames:
        raise ScenewatchError(f"cannot read frames from {path}")
    return frames


def synthetic_clip(folder: Path) -> Path:
    """A 30 s clip with two boxes coming and going (changes at 5, 12, 18 and 24 s)."""
    return write_clip(
        folder / "synthetic.mp4",
        duration_s=30.0,
        appearances=(
            Appearance(5.0, 12.0),
            Appearance(18.0, 24.0, color=(0, 200, 0), box=(0.05, 0.5, 0.25, 0.35)),
        ),
    )


def hardware(device: str) -> str:
    """The GPU's name, or the CPU's model and core count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line)
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {torch.get_num_threads()} threads"


def _side(run: RunResult) -> dict[str, Any]:
    return {**asdict(run), "video_s_per_wall_s": run.video_s_per_wall_s}


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0


def serial(backend: VisionBackend) -> Engine:
    """An engine of batch size 1: requests one at a time, on a model thread of their own.

    Every measurement runs the model on a thread that ends with it, never on the main thread:
    on a CPU, a thread that has run torch's parallel work slows later model work on other
    threads (on the 2-core development machine, scenewatch's side took 4.3 s instead of 2.9 s
    after the naive loop had run on the main thread), which would favour whichever side ran first.
    """
    return Engine(backend, batch_size=1, batch_wait_ms=0)


def run_pipeline_bench(options: PipelineOptions, settings: Settings, progress: Progress) -> dict[str, Any]:
    """Run every measurement and return the report (JSON-ready)."""
    with ExitStack() as stack:
        source = options.source
        if source is None:
            source = synthetic_clip(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        elif not source.is_file():
            raise ScenewatchError(f"clip not found: {source}")
        progress("loading the model")
        max_side = max([*options.sizes, settings.max_side])
        loaded = load_backend(options, settings, max_side)
        frames = clip_frames(source, FRAMES)
        with serial(loaded.backend) as backend:
            sizes = bench_sizes(
                backend,
                frames,
                options.sizes,
                new_tokens=options.max_new_tokens,
                runs=options.runs,
                device=loaded.device,
                progress=progress,
            )
        streams = bench_streams(
            loaded.backend,
            frames,
            options.streams,
            size=max(options.sizes),
            new_tokens=options.max_new_tokens,
            rounds=options.rounds,
            batch_wait_ms=settings.batch_wait_ms,
            progress=progress,
        )
        progress(f"naive loop over {source.name}")
        with serial(loaded.backend) as backend:
            naive = run_naive(source, backend, every_s=settings.every_s, max_side=settings.max_side)
        progress(f"scenewatch over {source.name}")
        watched = run_scenewatch(source, loaded.backend, settings)
        progress("finding change moments")
        moments = change_moments(source, settings.every_s)
        missed = mark_coverage(moments, watched.analysed_at, settings.every_s)
    batch1 = next((s.fps for s in sizes if s.size == max(options.sizes)), 0.0)
    speedup = _ratio(naive.wall_s, watched.wall_s)
    return {
        "model": loaded.name,
        "random_weights": loaded.random_weights,
        "device": loaded.device,
        "hardware": hardware(loaded.device),
        "dtype": loaded.dtype,
        "decoder": loaded.decoder,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "source": str(options.source) if options.source else "synthetic clip (changes at 5, 12, 18, 24 s)",
        "every_s": settings.every_s,
        "max_new_tokens": options.max_new_tokens,
        "sizes": [asdict(s) for s in sizes],
        "streams": [{**asdict(s), "x_batch1": _ratio(s.fps, batch1)} for s in streams],
        "baseline": _side(naive),
        "scenewatch": _side(watched),
        "ratios": {
            "speedup_wall": speedup,
            "model_calls": _ratio(naive.model_calls, watched.model_calls),
            "video_s_per_wall_s": _ratio(watched.video_s_per_wall_s, naive.video_s_per_wall_s),
        },
        "speedup_wall": speedup,
        "changes": {
            "method": (
                f"sampled frames whose blurred {WIDTH}-px grey copy has >= {MIN_CHANGED:.0%} of pixels "
                f"moved by > {PIXEL_STEP} levels against the previous sample; covered when scenewatch "
                f"analysed a frame within one interval ({settings.every_s:g} s)"
            ),
            "moments": [{**asdict(m), "covered": m.covered} for m in moments],
            "missed_changes": missed,
        },
        "missed_changes": missed,
    }
