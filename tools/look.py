"""The ``look`` tool: grab a frame of a source now and ask the vision model about it."""

from __future__ import annotations

import logging
from pathlib import Path

from langchain_core.tools import BaseTool, tool
from PIL import Image
from pydantic import BaseModel, Field

from agent.core.config import Settings
from agent.core.durations import clock, current_time, video_position
from agent.core.errors import ScenewatchError
from memory.store import Store
from prompts import load_prompt
from tools.frames import FrameReader
from tools.vision.base import VisionBackend, VisionRequest
from tools.vision.images import frame_to_image

log = logging.getLogger(__name__)


def tool_source(store: Store, frames: FrameReader, source: str | None, default: str | None) -> str:
    """The source a tool works on: the one named (as ``frames`` reads it: ``shop.mp4`` finds the
    watched ``/videos/shop.mp4``; one it may not read is a ScenewatchError the model gets back),
    the one being discussed, or the last one watched."""
    if source:
        return frames.readable(source)
    if default:
        return default
    latest = store.recent(None, 1)
    if not latest:
        raise ScenewatchError("no source named and no observations yet: say which camera or video to use")
    return latest[0].source


def is_file_source(source: str) -> bool:
    """A video file (frames addressed by time) rather than a live camera or stream."""
    return Path(source).expanduser().is_file()


def file_position(store: Store, source: str) -> float:
    """Where "now" is in a video file: the position of its latest observation (else the start)."""
    latest = store.recent(source, 1)
    return (latest[0].video_t or 0.0) if latest else 0.0


def grab(
    store: Store, frames: FrameReader, source: str, max_side: int, at_s: float | None = None
) -> tuple[Image.Image, str]:
    """The frame of ``source`` now (a file: at ``at_s`` or where watching got to) and its label."""
    if is_file_source(source):
        position = file_position(store, source) if at_s is None else at_s
        return frame_to_image(frames.grab(source, position), max_side), f"video {video_position(position)}"
    return frame_to_image(frames.grab(source), max_side), f"now, {clock(current_time())}"


class LookArgs(BaseModel):
    source: str | None = Field(
        default=None, description="camera or video to look at; default: the one being discussed"
    )
    question: str | None = Field(
        default=None, description="what to ask about the frame; default: describe it"
    )
    at_s: float | None = Field(
        default=None, description="video files only: seconds into the video; default: where watching got to"
    )


def make_look_tool(
    engine: VisionBackend,
    store: Store,
    frames: FrameReader,
    settings: Settings,
    default_source: str | None = None,
) -> BaseTool:
    """``look``: the current frame of a source, answered by the vision model through ``engine``."""

    @tool("look", args_schema=LookArgs)
    def look(source: str | None = None, question: str | None = None, at_s: float | None = None) -> str:
        """Look at the camera now: grab the newest frame of a live source (or the frame at a
        time in a video file) and ask the vision model a question about it. Use it for
        anything about the present moment."""
        name = tool_source(store, frames, source, default_source)
        image, when = grab(store, frames, name, settings.max_side, at_s)
        result = engine.generate([VisionRequest.ask(question or load_prompt("look"), [image])])[0]
        log.debug("look at %s (%s): %s", name, when, result.text)
        return f"{name} ({when}): {result.text}"

    return look
