"""Video files and image folders, sampled by time: every ``every_s`` seconds of video one frame."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2

from agent.core.errors import ScenewatchError
from agent.sources.frame import Frame
from agent.sources.video import OpenVideo, open_video

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


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
