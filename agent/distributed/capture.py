"""A capture process: each source sampled and gated on a thread of its own, the gated frames added
to the frames stream.

Per source, as in a watch: the reader (:func:`~agent.pipeline.watch.open_watched`), the detector
stage and the change gate (:class:`~agent.pipeline.perceive.Perceiver`: detector, tracks, zones when
the stage is on), then, instead of the engine, a
:class:`~agent.distributed.messages.FrameMessage` (the frame as a JPEG, its longest side
``max(max_side, thumb_side)``, with the stage's findings) added to the capped frames stream.
When the stream is full a live source's frame is dropped (counted, logged, and the gate reset so
that the next frame goes), while a file or folder waits for room: its frames never go stale, as in
a watch. While Redis is down every source waits for it
(:class:`~agent.distributed.redis_streams.Reconnecting`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agent.core.config import Settings
from agent.core.durations import current_time
from agent.distributed.messages import FrameMessage
from agent.distributed.redis_streams import Reconnecting, Streams
from agent.pipeline.perceive import Perceiver, Perception
from agent.pipeline.watch import POLL_S, open_watched, unique_names
from agent.sources import FrameSource

log = logging.getLogger(__name__)

FULL_LOG_EVERY_S = 10.0
"""A source whose frames the full stream turns away says so at most this often."""


@dataclass
class CaptureStats:
    """What capture did with one source: ``gated`` = ``sent`` + ``dropped`` + ``abandoned``."""

    source: str
    live: bool = False
    sampled: int = 0
    gated: int = 0
    sent: int = 0
    dropped: int = 0  # live frames turned away by a full stream
    abandoned: int = 0  # gated, then stopped before the stream took it
    reasons: Counter[str] = field(default_factory=Counter)
    video_s: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "sampled": self.sampled,
            "gated": self.gated,
            "sent": self.sent,
            "dropped": self.dropped,
            "abandoned": self.abandoned,
            "reasons": dict(self.reasons),
            "video_s": round(self.video_s, 3),
            "error": self.error,
        }


@dataclass
class CaptureSummary:
    """Every source's counts and how long the capture ran."""

    sources: dict[str, CaptureStats]
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        totals = {
            key: sum(getattr(stats, key) for stats in self.sources.values())
            for key in ("sampled", "gated", "sent", "dropped", "abandoned")
        }
        return {
            "sources": {name: stats.to_dict() for name, stats in self.sources.items()},
            **totals,
            "wall_s": round(self.wall_s, 3),
        }

    @property
    def errors(self) -> dict[str, str]:
        return {name: stats.error for name, stats in self.sources.items() if stats.error}


class SourceCapture:
    """Samples, gates and sends one source (run on a thread of its own)."""

    def __init__(
        self,
        source: FrameSource,
        streams: Streams,
        settings: Settings,
        stop: threading.Event,
        perception: Perception | None = None,
    ) -> None:
        self.source = source
        self.streams = streams
        self.settings = settings
        self.stop = stop
        self.stats = CaptureStats(source.name, live=source.live)
        self.perceiver = Perceiver(source.name, settings, perception)  # detect, track, zones, gate
        self.gate = self.perceiver.gate
        self.side = max(settings.max_side, settings.thumb_side)  # what the model and the thumbnail need
        self.redis = Reconnecting(stop, source.name)
        self._full_logged = 0.0

    def run(self) -> None:
        """Capture to the source's end (or ``stop``); an error ends this source only, logged."""
        try:
            for frame in self.source.frames(self.stop):
                self.stats.sampled += 1
                self.stats.video_s = self.source.video_s
                decision = self.perceiver.decide(frame)
                self.stats.reasons[decision.reason] += 1
                if not decision.analyse:
                    continue
                self.stats.gated += 1
                message = FrameMessage.of(
                    self.source.name,
                    frame,
                    live=self.source.live,
                    reason=decision.reason,
                    score=decision.score,
                    max_side=self.side,
                    sent=time.time(),
                    findings=decision.findings,
                )
                self._send(message)
        except Exception as exc:  # the source, the encoder or a Redis error: this source stops, logged
            self.stats.error = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
            log.error("%s: stopped: %s", self.source.name, self.stats.error)
        finally:
            self.stats.video_s = self.source.video_s
            self.source.close()

    def _send(self, message: FrameMessage) -> None:
        """Add the frame to the stream; a live frame is dropped when it is full, a file's waits for room."""
        fields = message.fields()
        while True:
            added = self.redis(partial(self.streams.add_frame, fields))
            if added is None:  # stopped while Redis was down
                self.stats.abandoned += 1
                return
            if added:
                self.stats.sent += 1
                return
            if self.source.live:
                self.stats.dropped += 1
                self.gate.reset()  # the next frame goes, change or not
                self._say_full("dropped a frame")
                return
            self._say_full("waiting for room")
            if self.stop.wait(POLL_S):
                self.stats.abandoned += 1
                return

    def _say_full(self, what: str) -> None:
        now = time.monotonic()
        if now - self._full_logged >= FULL_LOG_EVERY_S:
            self._full_logged = now
            log.warning(
                "%s: the frames stream holds %d frames, its cap (SCENEWATCH_REDIS_FRAMES_MAX): %s "
                "(dropped so far: %d); add workers",
                self.source.name,
                self.streams.frames_max,
                what,
                self.stats.dropped,
            )


def run_capture(
    sources: list[str],
    settings: Settings,
    streams: Streams,
    stop: threading.Event | None = None,
    perception: Perception | None = None,
) -> CaptureSummary:
    """Capture every source until the files end or ``stop`` is set (``perception``: the detector stage,
    :func:`~agent.pipeline.session.watch_perception`; None: the change gate alone).

    The sources are opened first: a missing file or a video that cannot be opened raises
    ScenewatchError before anything is sent.
    """
    stop = stop or threading.Event()
    names = unique_names(sources)
    started, start_ts = time.monotonic(), current_time()
    opened: list[FrameSource] = []
    try:
        for name in names:
            opened.append(open_watched(name, settings, start_ts, stop))
    except BaseException:
        for source in opened:
            source.close()
        raise
    captures = [SourceCapture(source, streams, settings, stop, perception) for source in opened]
    threads = [threading.Thread(target=c.run, name=f"capture-{c.source.name}", daemon=True) for c in captures]
    for thread in threads:
        thread.start()
    for thread in threads:  # in short steps, so that signal handlers run meanwhile
        while thread.is_alive():
            thread.join(POLL_S)
    return CaptureSummary({c.source.name: c.stats for c in captures}, time.monotonic() - started)
