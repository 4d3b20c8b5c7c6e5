"""Live sources (webcams, RTSP/HTTP/HLS streams): a reader thread keeps the newest frame and reconnects.

Streams are read with PyAV (:class:`~agent.sources.decoding.VideoReader`): each frame is decoded
and kept unconverted; only the frames the watch takes are converted to BGR. With ``jitter_s`` at
least the stream's key-frame interval only key frames are decoded, so the newest frame is up to
that old. Webcams are read with OpenCV.

The reader thread owns its connection and closes it itself: :meth:`LiveSource.close` never waits
for a read that hangs (a stalled server holds one for up to the stream timeout).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import av
import cv2
import numpy as np

from agent.core.errors import ScenewatchError
from agent.sources.decoding import VideoReader, open_url, to_bgr
from agent.sources.frame import Frame
from agent.sources.reachability import StreamError

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
CLOSE_WAIT_S = 0.5
"""The longest :meth:`LiveSource.close` waits for the reader thread to let go of its connection."""


_live_sources: weakref.WeakValueDictionary[str, LiveSource] = weakref.WeakValueDictionary()


@dataclass
class _Newest:
    """The newest frame: decoded, converted to BGR the first time someone takes it."""

    frame: av.VideoFrame | None
    image: np.ndarray | None
    ts: float
    sequence: int

    def pixels(self) -> np.ndarray:
        if self.image is None and self.frame is not None:
            self.image, self.frame = to_bgr(self.frame), None
        assert self.image is not None
        return self.image


class LiveSource:
    """A webcam or stream read by a thread that keeps only the newest frame and reconnects."""

    live = True

    def __init__(
        self,
        spec: str,
        *,
        name: str,
        every_s: float,
        reconnect_max_s: float,
        timeout_s: float,
        give_up_s: float,
        jitter_s: float = 0.0,
        first: VideoReader | StreamError | None = None,
    ) -> None:
        """``first``: the first attempt to open the stream, if made (its reader, or why it failed);
        ``jitter_s``: see the module."""
        self.name, self.spec, self.every_s = name, spec.strip(), every_s
        self.reconnect_max_s, self.timeout_s, self.give_up_s = reconnect_max_s, timeout_s, give_up_s
        self.jitter_s = jitter_s
        self.unreadable = 0
        self.video_s = 0.0
        self.reconnects = 0
        self.problem = first if isinstance(first, StreamError) else None  # why the last attempt failed
        self._opened = first if isinstance(first, VideoReader) else None
        self._latest: _Newest | None = None
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None
        self._started = 0.0  # time.monotonic() when the reader started
        self._halt = threading.Event()  # this source only: the watch's stop event is not touched
        _live_sources[name] = self

    def _read_loop(self) -> None:
        failures = 0
        while not self._halt.is_set():
            read_any = self._read_webcam() if self.spec.isdigit() else self._read_stream()
            if self._halt.is_set():
                return
            failures = 1 if read_any else failures + 1
            delay = min(self.reconnect_max_s, FIRST_BACKOFF_S * 2 ** (failures - 1))
            self.reconnects += 1
            log.warning(
                "%s: %s; reconnect attempt %d in %.1f s",
                self.name,
                self._what_failed(read_any),
                failures,
                delay,
            )
            self._halt.wait(delay)

    def _what_failed(self, read_any: bool) -> str:
        if read_any:
            return "lost the stream"
        if self.problem is None:
            return "no frames"
        return "connected, but no video came" if self.problem.connected else "cannot connect"

    def _read_stream(self) -> bool:
        """One connection to a stream URL: its frames published until it ends; whether any came."""
        reader, self._opened = self._opened, None
        if reader is None:
            try:
                reader = VideoReader(self.spec, timeout_s=self.timeout_s)
            except StreamError as exc:
                self.problem = exc
                return False
        read_any = False
        try:
            for frame in reader.frames(jitter_s=self.jitter_s):
                if self._halt.is_set():
                    break
                read_any = True
                self._publish(frame, None)
        finally:
            reader.close()
        if read_any:
            self.problem = None
        elif not self._halt.is_set():
            why = reader.read_error or "the stream ended"
            self.problem = StreamError(f"connected to {self.spec}, but no frame came ({why})", connected=True)
        return read_any

    def _read_webcam(self) -> bool:
        """One opening of a webcam: its frames published until a read fails; whether any came."""
        cap = cv2.VideoCapture(int(self.spec))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        read_any = False
        try:
            if not cap.isOpened():
                self.problem = StreamError(f"cannot open webcam {self.spec}", connected=False)
                return False
            while not self._halt.is_set():
                ok, image = cap.read()
                if not ok or image is None:
                    break
                read_any = True
                self._publish(None, image)
        finally:
            cap.release()
        self.problem = None if read_any else StreamError(f"webcam {self.spec} gave no frame", connected=False)
        return read_any

    def _publish(self, frame: av.VideoFrame | None, image: np.ndarray | None) -> None:
        with self._changed:
            sequence = self._latest.sequence + 1 if self._latest else 1
            self._latest = _Newest(frame, image, time.time(), sequence)
            self._changed.notify_all()

    def start(self) -> None:
        """Start the reader thread (``frames`` does it on first use)."""
        if self._reader is None:
            self._started = time.monotonic()
            self._reader = threading.Thread(target=self._read_loop, name=f"reader-{self.name}", daemon=True)
            self._reader.start()

    def newest(self, wait_s: float = 0.0, after: int = 0) -> tuple[np.ndarray, float, int] | None:
        """The newest frame (pixels, capture time, sequence number) newer than ``after``, if any."""
        until = time.monotonic() + wait_s
        with self._changed:
            while (self._latest is None or self._latest.sequence <= after) and not self._halt.is_set():
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, 0.2))
            latest = self._latest
            if latest is None or latest.sequence <= after:
                return None
            return latest.pixels(), latest.ts, latest.sequence

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        if stop.is_set():
            return
        self.start()
        seen = 0
        next_tick = time.monotonic()
        try:
            while not stop.wait(max(0.0, next_tick - time.monotonic())):
                latest = self.newest(wait_s=1.0, after=seen)
                if latest is None:
                    self._give_up_if_silent()
                    continue
                image, ts, seen = latest
                yield Frame(image, ts)
                next_tick = max(next_tick + self.every_s, time.monotonic())
        finally:
            self._halt.set()

    def _give_up_if_silent(self) -> None:
        """ScenewatchError when not one frame came within ``give_up_s`` of the start (0: never)."""
        if self._latest is not None or not self.give_up_s:
            return
        if time.monotonic() - self._started < self.give_up_s:
            return
        keep_trying = "or set SCENEWATCH_STREAM_GIVE_UP_S=0 to keep trying"
        if self.problem is not None and self.problem.connected:
            raise ScenewatchError(
                f"{self.problem}; no frame in {self.give_up_s:g} s: check that the address is a video "
                f"stream, {keep_trying}"
            )
        what, check = (f"webcam {self.spec}", "index") if self.spec.isdigit() else (self.spec, "address")
        raise ScenewatchError(
            f"cannot connect to {what}: no frame in {self.give_up_s:g} s; check the {check}, {keep_trying}"
        )

    def close(self) -> None:
        """Stop the reader; it closes its connection itself, when a read in progress returns."""
        self._halt.set()
        with self._changed:
            self._changed.notify_all()
        if self._reader is not None:
            self._reader.join(timeout=CLOSE_WAIT_S)
        elif self._opened is not None:
            self._opened.close()
            self._opened = None


def grab_live(source: str, timeout_s: float) -> np.ndarray:
    """The newest frame of a live source: its reader's when it is being watched in this process,
    else the first frame of a new connection. ScenewatchError with the reason when none comes."""
    watched = _live_sources.get(source)
    if watched is not None:
        latest = watched.newest(wait_s=timeout_s)
        if latest is not None:
            return latest[0]
    if source.isdigit():
        cap = cv2.VideoCapture(int(source))
        try:
            if not cap.isOpened():
                raise ScenewatchError(f"cannot open webcam {source}")
            ok, image = cap.read()
        finally:
            cap.release()
        if not ok or image is None:
            raise ScenewatchError(f"webcam {source} gave no frame")
        return image
    opened = open_url(source, timeout_s)  # waited for in steps: Ctrl-C is not kept waiting
    if isinstance(opened, StreamError):
        raise opened
    assert opened is not None
    with opened as reader:
        for frame in reader.frames():
            return reader.convert(frame)
    raise ScenewatchError(f"{source} sent no frame within {timeout_s:g} s")
