"""Live sources (webcams, RTSP/HTTP/HLS streams): a reader thread keeps the newest frame and reconnects."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator

import cv2
import numpy as np

from agent.core.errors import ScenewatchError
from agent.sources.frame import Frame
from agent.sources.video import capture_timeouts

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5


_live_sources: weakref.WeakValueDictionary[str, LiveSource] = weakref.WeakValueDictionary()


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
    ) -> None:
        self.name, self.spec, self.every_s = name, spec.strip(), every_s
        self.reconnect_max_s, self.timeout_s, self.give_up_s = reconnect_max_s, timeout_s, give_up_s
        self.unreadable = 0
        self.video_s = 0.0
        self.reconnects = 0
        self._latest: tuple[np.ndarray, float, int] | None = None
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None
        self._started = 0.0  # time.monotonic() when the reader started
        self._halt = threading.Event()  # this source only: the watch's stop event is not touched
        _live_sources[name] = self

    def _open(self) -> cv2.VideoCapture | None:
        cap = open_capture(self.spec, self.timeout_s)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _read_loop(self) -> None:
        failures = 0
        while not self._halt.is_set():
            cap = self._open()
            read_any = False
            if cap is not None:
                while not self._halt.is_set():
                    ok, image = cap.read()
                    if not ok or image is None:
                        break
                    read_any = True
                    self._publish(image)
                cap.release()
            if self._halt.is_set():
                return
            failures = 1 if read_any else failures + 1
            delay = min(self.reconnect_max_s, FIRST_BACKOFF_S * 2 ** (failures - 1))
            self.reconnects += 1
            what = "lost the stream" if read_any else "cannot connect" if cap is None else "no frames"
            log.warning("%s: %s; reconnect attempt %d in %.1f s", self.name, what, failures, delay)
            self._halt.wait(delay)

    def _publish(self, image: np.ndarray) -> None:
        with self._changed:
            sequence = self._latest[2] + 1 if self._latest else 1
            self._latest = (image, time.time(), sequence)
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
            while (self._latest is None or self._latest[2] <= after) and not self._halt.is_set():
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, 0.2))
            if self._latest is None or self._latest[2] <= after:
                return None
            return self._latest

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
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
        if time.monotonic() - self._started >= self.give_up_s:
            what, check = (f"webcam {self.spec}", "index") if self.spec.isdigit() else (self.spec, "address")
            raise ScenewatchError(
                f"cannot connect to {what}: no frame in {self.give_up_s:g} s; check the {check}, "
                "or set SCENEWATCH_STREAM_GIVE_UP_S=0 to keep trying"
            )

    def close(self) -> None:
        self._halt.set()
        if self._reader is not None:
            self._reader.join(timeout=self.timeout_s + 1)


def open_capture(spec: str, timeout_s: float) -> cv2.VideoCapture:
    """A capture for a webcam index or a URL (FFmpeg, with open and read timeouts)."""
    if spec.isdigit():
        cap = cv2.VideoCapture(int(spec))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap
    return cv2.VideoCapture(spec, cv2.CAP_FFMPEG, capture_timeouts(timeout_s))


def grab_live(source: str, timeout_s: float) -> np.ndarray:
    watched = _live_sources.get(source)
    if watched is not None:
        latest = watched.newest(wait_s=timeout_s)
        if latest is not None:
            return latest[0]
    cap = open_capture(source, timeout_s)
    try:
        if not cap.isOpened():
            raise ScenewatchError(f"cannot connect to {source} (no answer within {timeout_s:g} s)")
        ok, image = cap.read()
    finally:
        cap.release()
    if not ok or image is None:
        raise ScenewatchError(f"{source} sent no frame within {timeout_s:g} s")
    return image
