"""``scenewatch bench detector``: the detector stage's speed, the model calls it saves or costs, and how
well it counts people.

- **Speed**: milliseconds per frame (wall p50 and process CPU time, which other jobs on a shared
  machine disturb less) and frames per second, with tiling off and on (auto), on a 640×360 CCTV
  frame of the shop clip and on the same frame at 1920×1080.
- **Gate**: the shop clip sampled as ``watch --every 1s`` samples it, gated three ways: by pixels
  alone (the detector off), by the detector-aware gate (tracks, pixels, heartbeat), and by
  detector-only gating (``only_while: [person]``). Model calls, reasons, and the change moments
  of :mod:`agent.bench.changes` (measured independently of any gate) each missed.
- **People**: the persons the detector finds per second of each clip, against the labels of
  :mod:`agent.bench.labels`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.bench.changes import change_moments, mark_coverage
from agent.bench.labels import CLIPS, PeopleLabels
from agent.bench.pipeline import hardware
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.events.ruleset import SourceRules
from agent.pipeline.perceive import Perceiver, Perception
from agent.sources import Frame, VideoFileSource
from tools.perception.backend import detector_options
from tools.perception.detector import Detector, load_model

Progress = Callable[[str], None]
SHOP = "shopfront_cctv.mp4"
SPEED_FRAME_S = 5.0
"""The shop frame timed for speed: the woman at the door (one person, several smaller ones)."""


def frames(path: Path, every_s: float) -> Iterator[Frame]:
    """The frames ``watch --every`` samples from a file (video time from 0)."""
    source = VideoFileSource(path, name=str(path), every_s=every_s, start_ts=0.0)
    try:
        yield from source.frames(threading.Event())
    finally:
        source.close()


def time_detector(detector: Detector, frame: np.ndarray, runs: int) -> dict[str, Any]:
    """Wall p50/p95 and CPU milliseconds per detect() (after one warm-up), frames per second, passes."""
    detector.detect(frame)
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        detector.detect(frame)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    p50 = statistics.median(wall)
    return {
        "passes": detector.passes,
        "p50_ms": round(p50, 1),
        "p95_ms": round(sorted(wall)[max(0, round(0.95 * len(wall)) - 1)], 1),
        "cpu_ms": round(statistics.median(cpu), 1),
        "fps": round(1000 / p50, 1) if p50 else 0.0,
    }


def speed(settings: Settings, clip: Path, runs: int, progress: Progress) -> list[dict[str, Any]]:
    """Detector timings per frame size, tiling off and auto."""
    frame = next(f.image for f in frames(clip, SPEED_FRAME_S) if (f.video_t or 0) >= SPEED_FRAME_S)
    large = cv2.resize(frame, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    sizes = {"640x360": frame, "1920x1080": large}
    model, rows = load_model(), []
    for size, image in sizes.items():
        for tiling in ("off", "auto"):
            progress(f"timing the detector on {size}, tiling {tiling}")
            detector = Detector(replace(detector_options(settings), tiling=tiling), model=model)
            rows.append({"frame": size, "tiling": tiling, **time_detector(detector, image, runs)})
    return rows


def gate_run(
    clip: Path, settings: Settings, perception: Perception | None
) -> tuple[list[float], Counter[str]]:
    """The video times a perceiver sends to the model over the clip, and its reasons."""
    perceiver = Perceiver(str(clip), settings, perception)
    analysed, reasons = [], Counter[str]()
    for frame in frames(clip, settings.every_s):
        decision = perceiver.decide(frame)
        reasons[decision.reason] += 1
        if decision.analyse:
            analysed.append(frame.video_t or 0.0)
    return analysed, reasons


def gate(settings: Settings, clip: Path, progress: Progress) -> dict[str, Any]:
    """Model calls and missed change moments: pixels alone, detector-aware, detector-only."""
    every = settings.every_s
    moments = change_moments(clip, every)
    runs = {
        "pixels_only": None,
        "detector_aware": Perception(settings),
        "only_while_person": Perception(settings, {str(clip): SourceRules(only_while=("person",))}),
    }
    report: dict[str, Any] = {"source": clip.name, "every_s": every, "change_moments": len(moments)}
    for name, perception in runs.items():
        progress(f"gating {clip.name}: {name.replace('_', ' ')}")
        analysed, reasons = gate_run(clip, settings, perception)
        missed = mark_coverage(moments, analysed, every)
        report[name] = {
            "model_calls": len(analysed),
            "sampled": sum(reasons.values()),
            "reasons": dict(reasons),
            "missed_changes": missed,
            "missed_at_s": [m.t for m in moments if not m.covered],
        }
    return report


def people(settings: Settings, media: Path, progress: Progress) -> dict[str, Any]:
    """Persons found per whole second of each clip against the labels, with the settings' tiling and
    with tiling off."""
    report: dict[str, Any] = {}
    for tiling in dict.fromkeys((settings.detector_tiling, "off")):
        detector = Detector(replace(detector_options(settings), tiling=tiling))
        for labels in CLIPS:
            progress(f"counting people in {labels.clip}, tiling {tiling}")
            counts = {
                round(frame.video_t or 0.0): sum(
                    name == "person" for name in detector.detect(frame.image).data["class_name"]
                )
                for frame in frames(media / labels.clip, 1.0)
            }
            report.setdefault(f"tiling_{tiling}", {})[labels.clip] = accuracy(labels, counts)
    return report


def accuracy(labels: PeopleLabels, counts: dict[int, int]) -> dict[str, Any]:
    """Right, exact and absolute error over the judged seconds, and the seconds that were wrong."""
    judged = {t: count for t, count in counts.items() if labels.right(t, count) is not None}
    wrong = {t: count for t, count in judged.items() if not labels.right(t, count)}
    exact = sum(count == labels.clear[t] for t, count in judged.items())
    error = sum(abs(count - (labels.clear[t] or 0)) for t, count in judged.items())
    return {
        "seconds": len(judged),
        "right": len(judged) - len(wrong),
        "right_share": round((len(judged) - len(wrong)) / len(judged), 3) if judged else 0.0,
        "exact_share": round(exact / len(judged), 3) if judged else 0.0,
        "mean_abs_error": round(error / len(judged), 3) if judged else 0.0,
        "slack": labels.slack,
        "wrong": {
            str(t): {"counted": count, "clear": labels.clear[t], "upper": labels.upper[t]}
            for t, count in wrong.items()
        },
    }


def run_detector_bench(settings: Settings, media: Path, runs: int, progress: Progress) -> dict[str, Any]:
    """The whole report (see the module docstring); ScenewatchError when a clip is missing."""
    missing = [labels.clip for labels in CLIPS if not (media / labels.clip).is_file()]
    if missing:
        raise ScenewatchError(f"bench detector needs {', '.join(missing)} in {media} (--media DIR)")
    options = detector_options(settings)
    return {
        "hardware": hardware("cpu"),
        "detector": {
            "threshold": options.threshold,
            "classes": list(options.classes) or "all",
            "tiling": options.tiling,
            "threads": 1,
        },
        "speed": speed(settings, media / SHOP, runs, progress),
        "gate": gate(settings, media / SHOP, progress),
        "people": people(settings, media, progress),
    }
