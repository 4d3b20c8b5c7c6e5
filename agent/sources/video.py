"""The video libraries' own logging: quiet, since failures are logged by the sources."""

from __future__ import annotations

import os

import cv2


def quiet_video_logs() -> None:
    """Silence OpenCV's and its FFmpeg's stderr chatter (webcams are read with OpenCV; PyAV, which
    reads files and streams, prints nothing unless told to). Call before the first capture opens."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
