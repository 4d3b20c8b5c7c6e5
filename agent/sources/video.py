"""OpenCV's FFmpeg capture as the sources use it: opened with timeouts, frame rate, duration."""

from __future__ import annotations

import os
from pathlib import Path

import cv2

from agent.core.errors import ScenewatchError

OpenVideo = tuple[cv2.VideoCapture, float | None, float | None]
"""An open capture, its frame rate and its duration in seconds (None when unknown)."""


def quiet_video_logs() -> None:
    """Silence OpenCV's and FFmpeg's own stderr chatter (each reconnect attempt prints several lines).

    Failures are logged by this module instead. Call before the first capture is opened.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def open_video(path: Path | str, timeout_s: float | None = None) -> OpenVideo:
    """An open capture of a video file or URL, its frame rate and duration (None when unknown).

    ``timeout_s`` bounds opening and each read (for URLs).
    """
    params = [] if timeout_s is None else capture_timeouts(timeout_s)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise ScenewatchError(f"cannot read video {path}: not a video file, or corrupt or truncated")
    fps, count = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    fps = fps if 0 < fps < 1000 else None
    return cap, fps, count / fps if fps and count > 0 else None


def capture_timeouts(timeout_s: float) -> list[int]:
    """OpenCV capture parameters that bound opening and each read to ``timeout_s``."""
    timeout_ms = int(timeout_s * 1000)
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
