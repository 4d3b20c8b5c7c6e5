"""Video files and image folders, sampled by time: every ``every_s`` seconds of video one frame."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from agent.core.errors import ScenewatchError
from agent.sources.decoding import VideoReader
from agent.sources.frame import Frame
from agent.sources.sampling import TimeSampler

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


class VideoFileSource:
    """A video file (or a recording at a URL), sampled every ``every_s`` seconds of decoder time;
    only the sampled frames are decoded (:meth:`~agent.sources.decoding.VideoReader.samples`)."""

    live = False

    def __init__(
        self,
        path: Path | str,
        *,
        name: str,
        every_s: float,
        start_ts: float,
        jitter_s: float = 0.0,
        reader: VideoReader | None = None,
    ) -> None:
        """``jitter_s``: how far from its sampling time a key frame may be taken instead of the exact
        frame (0: exact frames). ``reader``: ``path`` already opened (else opened here)."""
        self.name, self.path, self.every_s, self.start_ts = name, path, every_s, start_ts
        self.jitter_s = jitter_s
        self.video_s = 0.0
        self.reader = reader or VideoReader(path)
        self.duration_s = self.reader.duration_s

    @property
    def unreadable(self) -> int:
        """Frames the decoder rejected as corrupt (skipped)."""
        return self.reader.stats.rejected

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """The sampled frames; ScenewatchError at the end when not one could be read."""
        read = 0
        for sample in self.reader.samples(self.every_s, jitter_s=self.jitter_s):
            self.video_s = sample.t
            if stop.is_set():
                return
            read += 1
            yield Frame(sample.image, self.start_ts + sample.t, sample.t)
        self.video_s = self.reader.position_s
        if stop.is_set():
            return
        if not read:
            raise no_frame_error(self.name)
        if self.unreadable:
            log.warning("%s: %d frames could not be decoded; skipped", self.name, self.unreadable)
        if self.reader.ended_early:
            log.warning(
                "%s: the video ended at %.1f s of its stated %.1f s (truncated or corrupt?)",
                self.name,
                self.reader.ended_s,
                self.duration_s,
            )

    def close(self) -> None:
        self.reader.close()


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
        sampler = TimeSampler(self.every_s)
        read = 0
        for index, file in enumerate(self.files):
            if stop.is_set():
                return
            t = index * self.interval_s
            self.video_s = t
            if not sampler.due(t):
                continue
            image = read_image(file)
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


def read_image(path: Path) -> np.ndarray | None:
    """An image file's BGR pixels; None when it does not read. A GIF is read by Pillow (its first
    frame: an animated GIF is one image), as OpenCV reads GIFs only from version 4.11 on."""
    if path.suffix.lower() != ".gif":
        return cv2.imread(str(path), cv2.IMREAD_COLOR)
    try:
        with Image.open(path) as image:
            return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def no_frame_error(spec: str) -> ScenewatchError:
    """The error for a video file from which not one frame could be read."""
    return ScenewatchError(f"no frame could be read from {spec}: not a video, or corrupt")


def no_image_error(spec: str) -> ScenewatchError:
    """The error for an image folder in which not one image could be read."""
    return ScenewatchError(f"no image could be read from folder {spec}: not images, or corrupt")
