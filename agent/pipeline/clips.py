"""Event clips: each source's recent sampled frames in a ring buffer, written as an MP4 around an event.

A rule with ``clip: 10s`` gets, for each of its events, the frames sampled in the 10 s before the
event and in the ``SCENEWATCH_CLIP_AFTER_S`` after it, as an H.264 MP4 (yuv420p, ``faststart``: what
browsers play) under ``settings.clips_dir/<source-slug>/``. The event's payload names the file
relative to the data folder (``clip``) before it is written; the service serves it at
``/api/events/<id>/clip`` (:func:`clip_file` finds it safely) and sinks get that URL.

Wiring (``scenewatch serve``): ``recorder = ClipRecorder(settings, seconds=longest clip of the
rules)``, ``RuleEngine(..., clips=recorder)``, ``run_watch(..., on_frame=recorder.on_frame)``, and
``recorder.close()`` after the watch. Frames are kept shrunk to ``clip_side``; encoding runs on the
recorder's own thread, so neither the watch loop nor the rules engine waits for it. A clip is
written once a frame from after its end has been sampled, once its source has sent nothing for a
while (a file that ended, a stalled stream: the clip is then shorter), or at ``close``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from agent.core.config import Settings
from agent.pipeline.watch import source_slug
from agent.sources import Frame
from memory.observation import Observation

log = logging.getLogger(__name__)

_TIME_BASE = Fraction(1, 1000)  # clip timestamps in milliseconds: frames keep their sampled spacing
_QUIET_S = 5.0  # a source silent this long (wall time) past a clip's end gets its clip written as is
_LAG_SAMPLES = 4  # margin, in samples, for frames sampled but not yet committed
_MOST_FRAMES = 900  # frames kept per source at most, whatever the settings (about 0.6 GB at 640x360)
_SLACK_S = 0.001  # frames this close to a clip's ends are in it (times are sums of floats)


def clip_file(settings: Settings, relative: str | None) -> Path | None:
    """The MP4 an event's ``payload["clip"]`` names, when it exists under ``settings.clips_dir``; None
    for a missing clip and for any path that leads elsewhere (``..``, absolute, a link out)."""
    if not relative:
        return None
    root = settings.clips_dir.resolve()
    path = (settings.data_dir / relative).resolve()
    if not path.is_relative_to(root) or path.suffix != ".mp4" or not path.is_file():
        return None
    return path


def write_mp4(path: Path, frames: list[tuple[float, np.ndarray]], *, crf: int = 26) -> None:
    """Write BGR ``frames`` (epoch seconds, pixels) as an H.264 MP4 that plays in browsers, each frame
    at its own time; through a temporary file, so a reader never sees half a clip."""
    height, width = (side - side % 2 for side in frames[0][1].shape[:2])
    part = path.with_name(f".{path.name}.part")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream(
            "libx264", rate=max(1, round(len(frames) / max(frames[-1][0] - frames[0][0], 1)))
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = _TIME_BASE
        stream.options = {"preset": "veryfast", "crf": str(crf)}
        start, last = frames[0][0], -1
        for ts, image in frames:
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            frame.pts = last = max(last + 1, round((ts - start) * 1000))
            frame.time_base = _TIME_BASE
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    os.replace(part, path)


@dataclass
class _Job:
    source: str
    start: float  # epoch seconds of the first and last frames wanted
    end: float
    path: str  # relative to the data folder
    asked: float  # monotonic time it was asked for


class ClipRecorder:
    """Keeps each source's last ``seconds`` (+ the after time) of sampled frames; writes clips of events.

    Implements :class:`agent.events.rule_engine.ClipMaker`; ``on_frame`` is ``run_watch``'s callback.
    It is also an observation listener: a frame is kept until it is ``seconds`` older than the
    source's latest committed observation as well as the latest frame, so a file read far ahead of
    the model's answers (through a still stretch) keeps the frames before its next event.
    """

    def __init__(self, settings: Settings, *, seconds: float) -> None:
        self.settings = settings
        self.after_s = settings.clip_after_s
        lag = settings.pipeline_depth * settings.every_s + _LAG_SAMPLES * settings.every_s
        self.keep_s = seconds + self.after_s + lag
        self.before_s = seconds
        self._rings: dict[str, deque[tuple[float, np.ndarray]]] = {}
        self._committed: dict[str, float] = {}  # each source's latest committed observation time
        self._heard: dict[str, float] = {}  # monotonic time of each source's latest frame
        self._jobs: list[_Job] = []
        self._changed = threading.Condition()
        self._closing = False
        self.written: list[Path] = []
        self._thread = threading.Thread(target=self._run, name="scenewatch-clips", daemon=True)
        self._thread.start()

    def on_frame(self, source: str, frame: Frame) -> None:
        """Keep a sampled frame (shrunk to ``clip_side``); wake the writer when a clip is complete."""
        image = _shrink(frame.image, self.settings.clip_side)
        with self._changed:
            ring = self._rings.setdefault(source, deque(maxlen=_MOST_FRAMES))
            ring.append((frame.ts, image))
            committed = self._committed.get(source, float("-inf"))
            floor = min(frame.ts - self.keep_s, committed - self.before_s - _SLACK_S)
            while ring and ring[0][0] < floor:
                ring.popleft()
            self._heard[source] = time.monotonic()
            if any(job.source == source and frame.ts >= job.end for job in self._jobs):
                self._changed.notify()

    def on_observation(self, obs: Observation) -> None:
        """Note how far the source's observations are committed (an event can need ``seconds`` before)."""
        with self._changed:
            self._committed[obs.source] = max(obs.ts, self._committed.get(obs.source, obs.ts))

    def clip_path(self, source: str, ts: float, rule: str) -> str:
        """``clips/<source-slug>/<ms>-<rule>.mp4``: where the clip of ``rule``'s event at ``ts`` goes."""
        folder = self.settings.clips_dir.relative_to(self.settings.data_dir)
        return str(folder / source_slug(source) / f"{round(ts * 1000)}-{rule}.mp4")

    def make_clip(self, source: str, ts: float, before_s: float, path: str) -> None:
        """Write the clip of an event at ``ts`` once the frames after it are in (on the writer thread)."""
        with self._changed:
            if self._closing:
                log.warning("clip %s not made: the recorder is closed", path)
                return
            self._jobs.append(_Job(source, ts - before_s, ts + self.after_s, path, time.monotonic()))
            self._changed.notify()

    def close(self) -> None:
        """Write the clips still waiting (with the frames there are) and stop the writer thread (once;
        again does nothing more)."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    def _ready(self) -> list[tuple[_Job, list[tuple[float, np.ndarray]]]]:
        """The jobs that can be written now, with their frames (called holding the lock)."""
        now, ready, waiting = time.monotonic(), [], []
        for job in self._jobs:
            ring = self._rings.get(job.source, deque())
            latest = ring[-1][0] if ring else float("-inf")
            quiet = now - max(self._heard.get(job.source, job.asked), job.asked) > self.after_s + _QUIET_S
            if latest >= job.end or quiet or self._closing:
                frames = [item for item in ring if job.start - _SLACK_S <= item[0] <= job.end + _SLACK_S]
                ready.append((job, frames))
            else:
                waiting.append(job)
        self._jobs = waiting
        return ready

    def _run(self) -> None:
        while True:
            with self._changed:
                ready = self._ready()
                if not ready:
                    if self._closing:
                        return
                    self._changed.wait(timeout=1.0)
                    continue
            for job, frames in ready:
                self._write(job, frames)

    def _write(self, job: _Job, frames: list[tuple[float, np.ndarray]]) -> None:
        path = self.settings.data_dir / job.path
        if not frames:
            log.warning("clip %s not written: no frames of %s kept for that time", job.path, job.source)
            return
        try:
            write_mp4(path, frames)
        except (OSError, av.FFmpegError, ValueError) as exc:
            log.error("cannot write clip %s: %s", path, exc)
            return
        self.written.append(path)
        log.info("clip %s: %d frames of %s", job.path, len(frames), job.source)


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image.copy()
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
