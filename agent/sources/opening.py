"""Opening what a source name points at: a video file, an image folder, a webcam, an RTSP or HTTP(S) stream.

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
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agent.core.errors import ScenewatchError
from agent.sources.decoding import VideoReader, frame_at, open_url
from agent.sources.files import (
    ImageFolderSource,
    VideoFileSource,
    folder_images,
    no_frame_error,
    no_image_error,
    read_image,
)
from agent.sources.frame import FrameSource
from agent.sources.live import LiveSource, grab_live
from agent.sources.names import HTTP_SCHEME, is_live, resolve_source
from agent.sources.reachability import StreamError

if TYPE_CHECKING:
    from memory.store import Store

log = logging.getLogger(__name__)


def open_source(
    spec: str,
    *,
    every_s: float,
    start_ts: float,
    frame_interval_s: float | None = None,
    reconnect_max_s: float = 30.0,
    timeout_s: float = 10.0,
    give_up_s: float = 60.0,
    jitter_s: float = 0.0,
    stop: threading.Event | None = None,
) -> FrameSource:
    """The source that ``spec`` names: a webcam index, a stream URL, an image folder or a video file.

    For streams, ``reconnect_max_s``, ``timeout_s`` and ``give_up_s`` are the settings
    ``reconnect_max_s``, ``stream_timeout_s`` and ``stream_give_up_s`` (see :class:`LiveSource`);
    ``jitter_s`` is ``sample_jitter_s`` (key frames instead of exact frames, see
    :meth:`~agent.sources.decoding.VideoReader.samples`). An http(s) URL is opened on another
    thread: once ``stop`` is set it is not waited for (it is then taken for a live stream, which
    ends at once).
    """
    opened: VideoReader | StreamError | None = None
    if HTTP_SCHEME.match(spec.strip()):
        opened = open_url(spec.strip(), timeout_s, stop)
        if isinstance(opened, VideoReader) and opened.duration_s is not None:
            log.info("%s is a recording: watched in video time, once", spec)
            return VideoFileSource(
                spec.strip(),
                name=spec,
                every_s=every_s,
                start_ts=start_ts,
                jitter_s=jitter_s,
                reader=opened,
            )
    if is_live(spec):
        return LiveSource(
            spec,
            name=spec,
            every_s=every_s,
            reconnect_max_s=reconnect_max_s,
            timeout_s=timeout_s,
            give_up_s=give_up_s,
            jitter_s=jitter_s,
            first=opened,
        )
    path = local_path(spec)
    if path.is_dir():
        interval = frame_interval_s or every_s
        return ImageFolderSource(path, name=spec, every_s=every_s, interval_s=interval, start_ts=start_ts)
    return VideoFileSource(path, name=spec, every_s=every_s, start_ts=start_ts, jitter_s=jitter_s)


def open_recording(spec: str, timeout_s: float = 10.0) -> VideoReader | None:
    """The open reader of an http(s) URL of a recording (it has a finite duration), else None.

    A video file or an HLS playlist with an end has a duration; MJPEG and live HLS do not, and
    a URL that does not answer is no recording either (it is watched as a live source, which
    retries).
    """
    if not HTTP_SCHEME.match(spec.strip()):
        return None
    opened = open_url(spec.strip(), timeout_s)
    if not isinstance(opened, VideoReader):
        return None
    if opened.duration_s is None:
        opened.close()
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
        if not any(read_image(file) is not None for file in folder_images(path)):
            raise no_image_error(spec)
        return
    with VideoReader(path) as reader:
        if next(reader.samples(1.0), None) is None:
            raise no_frame_error(spec)


def grab_frame(
    source: str, at_s: float | None = None, *, interval_s: float = 1.0, timeout_s: float = 10.0
) -> np.ndarray:
    """One BGR frame: the newest of a live source, or the frame at ``at_s`` seconds of a file.

    A live source being watched in this process gives its reader's newest frame. For a file
    ``at_s`` defaults to the start; for an image folder (images ``interval_s`` apart) it
    defaults to the newest (last) image. Raises ScenewatchError with the reason.
    """
    if at_s is not None and at_s < 0:
        raise ScenewatchError(f"a time in a video cannot be negative: {at_s:g} s")
    if is_live(source):
        if at_s is None:
            return grab_live(source.strip(), timeout_s)
        recording = open_recording(source, timeout_s)
        if recording is None:
            raise ScenewatchError(
                f"{source} is a live source: it has no frame at {at_s:g} s, only the newest"
            )
        return _grab_at(source, recording, at_s)
    path = local_path(source)
    if path.is_dir():
        files = folder_images(path)
        index = len(files) - 1 if at_s is None else int(at_s / interval_s + 1e-9)
        if index >= len(files):
            raise ScenewatchError(
                f"{source} holds {len(files)} images, {interval_s:g} s apart: no image at {at_s:g} s"
            )
        image = read_image(files[index])
        if image is None:
            raise ScenewatchError(f"cannot read image {files[index]}")
        return image
    return _grab_at(path, VideoReader(path), at_s or 0.0)


def _grab_at(path: Path | str, reader: VideoReader, at_s: float) -> np.ndarray:
    """The frame at ``at_s`` seconds of decoder time of the video ``reader`` opened; it is closed."""
    with reader:
        duration = reader.duration_s
        if duration is not None and at_s > duration:
            raise ScenewatchError(f"{path} is {duration:.1f} s long: no frame at {at_s:g} s")
        return frame_at(reader, at_s)[0]


class SourceReader:
    """The agent's :class:`~tools.frames.FrameReader`: frames through :func:`grab_frame`, of the
    sources watched into ``store`` and those the user ``named`` (``--source``), no others.

    The model chooses what its tools read, and the model reads text from the scene: a path or an
    address it names is refused unless a watch or the user already chose it.
    """

    def __init__(self, store: Store | None, named: Iterable[str] = ()) -> None:
        self.store = store
        self.named = [name for name in named if name]

    def readable(self, given: str) -> str:
        """The watched or named source ``given`` means (a base name is enough); else a ScenewatchError."""
        rule = "the tools read only watched sources and those named with --source"
        if self.store is not None:
            try:
                found = resolve_source(self.store, given, also=self.named)
            except ScenewatchError as exc:
                raise ScenewatchError(f"{exc}; {rule}") from None
            if found is not None:
                return found
        if given in self.named:
            return given
        raise ScenewatchError(f"no source {given}: {rule} ({', '.join(self.named) or 'none named'})")

    def grab(self, source: str, at_s: float | None = None) -> np.ndarray:
        return grab_frame(source, at_s)
