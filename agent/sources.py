"""Frame sources: a video file, an image folder, a webcam, an RTSP or HTTP(S) stream.

Every source yields :class:`Frame`s (BGR arrays with their time) from ``frames(stop)``:

- **Files and folders** are sampled by timestamp: every ``every_s`` seconds of video the
  frame nearest the sampling time is decoded; the others are skipped with ``grab()`` and
  never decoded (images in a folder that are not sampled are never read). ``ts`` is the
  watch start plus the position in the file (``video_t``).
- **Recordings at an ``http(s)://`` URL** (a video file, an HLS playlist with an end) are
  watched like files, in video time, once: a URL is a recording when FFmpeg reports a finite
  duration for it (:func:`open_recording`).
- **Live sources** (webcam index, ``rtsp://``, ``http(s)://`` MJPEG or live HLS, ...) have a reader
  thread that reads continuously and keeps only the newest frame, so analysis never works
  on stale buffered frames. A failed read or connection is retried with exponential backoff
  (capped at ``reconnect_max_s``), each attempt logged; the source ends when ``stop`` is set,
  or with a ScenewatchError when not one frame has come within ``give_up_s`` of its start
  (once one has, outages are retried for ever). ``ts`` is the capture time, ``video_t`` is None.

A file or folder from which no frame at all can be read is an error (ScenewatchError), both
when :func:`probe_source` checks it up front and when its ``frames`` end with nothing read.

:func:`grab_frame` takes one frame for the agent's ``look`` tool.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from agent.errors import ScenewatchError

if TYPE_CHECKING:
    from memory.store import Store

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
URL_SCHEME = re.compile(r"^(rtsps?|rtmps?|https?|udp|tcp|srt)://", re.IGNORECASE)
HTTP_SCHEME = re.compile(r"^https?://", re.IGNORECASE)
FIRST_BACKOFF_S = 0.5

OpenVideo = tuple[cv2.VideoCapture, float | None, float | None]
"""An open capture, its frame rate and its duration in seconds (None when unknown)."""


@dataclass(frozen=True)
class Frame:
    """One sampled frame: BGR pixels, epoch time and (files, folders) position in seconds."""

    image: np.ndarray
    ts: float
    video_t: float | None = None


class FrameSource(Protocol):
    """What the watch loop reads frames from."""

    name: str
    live: bool
    unreadable: int  # frames or images that could not be decoded (logged and skipped)
    video_s: float  # seconds of video covered so far (0 for live sources)

    def frames(self, stop: threading.Event) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def quiet_video_logs() -> None:
    """Silence OpenCV's and FFmpeg's own stderr chatter (each reconnect attempt prints several lines).

    Failures are logged by this module instead. Call before the first capture is opened.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def is_live(spec: str) -> bool:
    """A webcam index or a stream URL (as opposed to a file or a folder)."""
    return spec.strip().isdigit() or bool(URL_SCHEME.match(spec.strip()))


def source_name(spec: str) -> str:
    """The name a source is watched and stored under: a URL or webcam index as given, a file's
    or folder's absolute, resolved path (so that it can be found from any directory)."""
    return spec if is_live(spec) else str(Path(spec).expanduser().resolve())


def resolve_source(store: Store, given: str | None, *, also: Iterable[str] = ()) -> str | None:
    """The stored source that ``--source given`` means (None: every source).

    An exact stored name wins, then ``given`` as an absolute path, then the one stored file or folder
    whose path ends with ``given`` (its base name, say). None or several: a ScenewatchError.
    ``also``: names known besides those of the observations (the sources of events).
    """
    if not given:
        return None
    known = sorted({*store.sources(), *also})
    absolute = str(Path(given).expanduser().resolve())
    for name in (given, absolute):
        if name in known:
            return name
    matches = [name for name in known if _same_path(given, absolute, name)]
    if len(matches) > 1:
        raise ScenewatchError(f"--source {given} could be any of: {', '.join(matches)} (name one in full)")
    if not matches:
        raise ScenewatchError(f"no source {given} in {store.path} (sources: {', '.join(known) or 'none'})")
    return matches[0]


def _same_path(given: str, absolute: str, stored: str) -> bool:
    """``stored`` ends with ``given``, or (a relative path of an older database) ``absolute`` ends
    with ``stored``. URLs and webcam indexes only ever match exactly."""
    if is_live(given) or is_live(stored):
        return False
    stored_parts = _parts(stored)
    if _ends_with(stored_parts, _parts(given)):
        return True
    return not PurePath(stored).is_absolute() and _ends_with(_parts(absolute), stored_parts)


def _parts(path: str) -> tuple[str, ...]:
    return PurePath(os.path.normpath(os.path.expanduser(path))).parts


def _ends_with(parts: tuple[str, ...], tail: tuple[str, ...]) -> bool:
    return 0 < len(tail) <= len(parts) and parts[-len(tail) :] == tail


def readable_source(store: Store | None, given: str) -> str:
    """What ``given`` names for reading frames: the stored source it means (:func:`resolve_source`),
    else a stream URL or webcam index as given, or an existing file or folder by absolute path.

    ScenewatchError when it is none of these (listing the stored sources when there is a store).
    """
    path = Path(given).expanduser()
    readable = given if is_live(given) else str(path.resolve()) if path.exists() else None
    if store is None:
        if readable is None:
            raise ScenewatchError(f"no source {given}: not a stream URL, webcam index, file or folder")
        return readable
    try:
        return resolve_source(store, given) or given
    except ScenewatchError:
        if readable is None:
            raise
        return readable


class _Sampler:
    """Picks, from frames at increasing times, the one nearest each multiple of ``every_s``."""

    def __init__(self, every_s: float, frame_s: float) -> None:
        self.every_s = every_s
        self.tolerance = frame_s / 2
        self.next_t = 0.0

    def due(self, t: float) -> bool:
        if t + self.tolerance < self.next_t:
            return False
        self.next_t = (math.floor((t + self.tolerance) / self.every_s) + 1) * self.every_s
        return True


class VideoFileSource:
    """A video file (or a recording at a URL), sampled every ``every_s`` seconds of video;
    unsampled frames are only grabbed."""

    live = False

    def __init__(
        self,
        path: Path | str,
        *,
        name: str,
        every_s: float,
        start_ts: float,
        opened: OpenVideo | None = None,
    ) -> None:
        """``opened``: the capture :func:`open_video` already opened for ``path`` (else opened here)."""
        self.name, self.path, self.every_s, self.start_ts = name, path, every_s, start_ts
        self.unreadable = 0
        self.video_s = 0.0
        self._cap, self.fps, self.duration_s = opened or open_video(path)

    def _position(self, index: int) -> float:
        if self.fps:
            return index / self.fps
        return max(0.0, self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """The sampled frames; ScenewatchError at the end when not one could be read."""
        sampler = _Sampler(self.every_s, 1 / self.fps if self.fps else 0.0)
        index = read = 0
        while not stop.is_set() and self._cap.grab():
            t = self._position(index)
            index += 1
            self.video_s = t
            if not sampler.due(t):
                continue
            ok, image = self._cap.retrieve()
            if not ok or image is None:
                self.unreadable += 1
                log.warning("%s: cannot decode the frame at %.2f s; skipped", self.name, t)
                continue
            read += 1
            yield Frame(image, self.start_ts + t, t)
        if not read and not stop.is_set():
            raise no_frame_error(self.name)
        if not stop.is_set() and self.duration_s and self.video_s < self.duration_s - 1.0:
            log.warning(
                "%s: the video ended at %.1f s of its stated %.1f s (truncated or corrupt?)",
                self.name,
                self.video_s,
                self.duration_s,
            )

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource:
    """Images in a folder, sorted by name, one every ``interval_s`` seconds, sampled like a video."""

    live = False

    def __init__(self, path: Path, *, name: str, every_s: float, interval_s: float, start_ts: float) -> None:
        self.name, self.every_s, self.interval_s, self.start_ts = name, every_s, interval_s, start_ts
        self.unreadable = 0
        self.video_s = 0.0
        self.files = folder_images(path)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """The sampled images; ScenewatchError at the end when not one could be read."""
        sampler = _Sampler(self.every_s, self.interval_s)
        read = 0
        for index, file in enumerate(self.files):
            if stop.is_set():
                return
            t = index * self.interval_s
            self.video_s = t
            if not sampler.due(t):
                continue
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                self.unreadable += 1
                log.warning("%s: cannot read image %s; skipped", self.name, file.name)
                continue
            read += 1
            yield Frame(image, self.start_ts + t, t)
        if not read:
            raise no_image_error(self.name)

    def close(self) -> None:
        """Nothing to release."""


def folder_images(path: Path) -> list[Path]:
    """The image files in ``path``, sorted by name (ScenewatchError when there are none)."""
    try:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise ScenewatchError(f"cannot list folder {path}: {exc}") from exc
    if not files:
        raise ScenewatchError(f"no images in folder {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def no_frame_error(spec: str) -> ScenewatchError:
    """The error for a video file from which not one frame could be read."""
    return ScenewatchError(f"no frame could be read from {spec}: not a video, or corrupt")


def no_image_error(spec: str) -> ScenewatchError:
    """The error for an image folder in which not one image could be read."""
    return ScenewatchError(f"no image could be read from folder {spec}: not images, or corrupt")


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
    return cv2.VideoCapture(spec, cv2.CAP_FFMPEG, _timeouts(timeout_s))


def _timeouts(timeout_s: float) -> list[int]:
    """OpenCV capture parameters that bound opening and each read to ``timeout_s``."""
    timeout_ms = int(timeout_s * 1000)
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]


def open_source(
    spec: str,
    *,
    every_s: float,
    start_ts: float,
    frame_interval_s: float | None = None,
    reconnect_max_s: float = 30.0,
    timeout_s: float = 10.0,
    give_up_s: float = 60.0,
) -> FrameSource:
    """The source that ``spec`` names: a webcam index, a stream URL, an image folder or a video file.

    For streams, ``reconnect_max_s``, ``timeout_s`` and ``give_up_s`` are the settings
    ``reconnect_max_s``, ``stream_timeout_s`` and ``stream_give_up_s`` (see :class:`LiveSource`).
    """
    recording = open_recording(spec, timeout_s)
    if recording is not None:
        log.info("%s is a recording: watched in video time, once", spec)
        return VideoFileSource(spec.strip(), name=spec, every_s=every_s, start_ts=start_ts, opened=recording)
    if is_live(spec):
        return LiveSource(
            spec,
            name=spec,
            every_s=every_s,
            reconnect_max_s=reconnect_max_s,
            timeout_s=timeout_s,
            give_up_s=give_up_s,
        )
    path = local_path(spec)
    if path.is_dir():
        interval = frame_interval_s or every_s
        return ImageFolderSource(path, name=spec, every_s=every_s, interval_s=interval, start_ts=start_ts)
    return VideoFileSource(path, name=spec, every_s=every_s, start_ts=start_ts)


def open_recording(spec: str, timeout_s: float = 10.0) -> OpenVideo | None:
    """The open capture of an http(s) URL of a recording (it has a finite duration), else None.

    A video file or an HLS playlist with an end has a duration; MJPEG and live HLS do not, and
    a URL that does not answer is no recording either (it is watched as a live source, which
    retries).
    """
    if not HTTP_SCHEME.match(spec.strip()):
        return None
    try:
        opened = open_video(spec.strip(), timeout_s)
    except ScenewatchError:
        return None
    if opened[2] is None:
        opened[0].release()
        return None
    return opened


def local_path(spec: str) -> Path:
    """The existing file or folder that ``spec`` names (ScenewatchError when there is none)."""
    path = Path(spec).expanduser()
    if path.is_dir() or path.is_file():
        return path
    raise ScenewatchError(
        f"source not found: {spec} (give a video file, an image folder, a webcam index such as 0, "
        "or an rtsp:// or http(s):// URL)"
    )


def probe_source(spec: str) -> None:
    """Check that a file or folder source gives a frame, cheaply, before anything loads.

    A video file must open and decode its first frame; a folder must hold an image that reads
    (the first readable one ends the check). Live sources are not probed: they retry. Raises
    ScenewatchError with the reason.
    """
    if is_live(spec):
        return
    path = local_path(spec)
    if path.is_dir():
        if not any(cv2.imread(str(file), cv2.IMREAD_COLOR) is not None for file in folder_images(path)):
            raise no_image_error(spec)
        return
    cap, _, _ = open_video(path)
    try:
        ok, image = cap.read()
    finally:
        cap.release()
    if not ok or image is None:
        raise no_frame_error(spec)


def grab_frame(
    source: str, at_s: float | None = None, *, interval_s: float = 1.0, timeout_s: float = 10.0
) -> np.ndarray:
    """One BGR frame: the newest of a live source, or the frame at ``at_s`` seconds of a file.

    A live source being watched in this process gives its reader's newest frame. For a file
    ``at_s`` defaults to the start; for an image folder (images ``interval_s`` apart) it
    defaults to the newest (last) image. Raises ScenewatchError with the reason.
    """
    if is_live(source):
        if at_s is None:
            return _grab_live(source.strip(), timeout_s)
        recording = open_recording(source, timeout_s)
        if recording is None:
            raise ScenewatchError(
                f"{source} is a live source: it has no frame at {at_s:g} s, only the newest"
            )
        return _grab_at(source, recording, at_s)
    if at_s is not None and at_s < 0:
        raise ScenewatchError(f"a time in a video cannot be negative: {at_s:g} s")
    path = local_path(source)
    if path.is_dir():
        files = folder_images(path)
        index = len(files) - 1 if at_s is None else int(at_s / interval_s + 1e-9)
        if index >= len(files):
            raise ScenewatchError(
                f"{source} holds {len(files)} images, {interval_s:g} s apart: no image at {at_s:g} s"
            )
        image = cv2.imread(str(files[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise ScenewatchError(f"cannot read image {files[index]}")
        return image
    return _grab_at(path, open_video(path), at_s or 0.0)


def _grab_live(source: str, timeout_s: float) -> np.ndarray:
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


def open_video(path: Path | str, timeout_s: float | None = None) -> OpenVideo:
    """An open capture of a video file or URL, its frame rate and duration (None when unknown).

    ``timeout_s`` bounds opening and each read (for URLs).
    """
    params = [] if timeout_s is None else _timeouts(timeout_s)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise ScenewatchError(f"cannot read video {path}: not a video file, or corrupt or truncated")
    fps, count = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    fps = fps if 0 < fps < 1000 else None
    return cap, fps, count / fps if fps and count > 0 else None


def _grab_at(path: Path | str, opened: OpenVideo, at_s: float) -> np.ndarray:
    """The frame at ``at_s`` seconds of the video ``opened`` from ``path``; the capture is released."""
    cap, _, duration = opened
    try:
        if duration is not None and at_s > duration:
            raise ScenewatchError(f"{path} is {duration:.1f} s long: no frame at {at_s:g} s")
        if at_s > 0:
            cap.set(cv2.CAP_PROP_POS_MSEC, at_s * 1000)
        ok, image = cap.read()
    finally:
        cap.release()
    if not ok or image is None:
        raise ScenewatchError(f"cannot decode a frame at {at_s:g} s of {path}")
    return image
