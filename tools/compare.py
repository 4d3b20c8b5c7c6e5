"""The ``compare`` tool: what changed between an analysed frame and the current one.

Both frames go to the vision model in one request, as Picture 1 (the stored thumbnail of
an earlier observation, with its description) and Picture 2 (the frame now; the latest
analysed frame when the source cannot be read, e.g. a file watched earlier).
"""

from __future__ import annotations

import logging

from langchain_core.tools import BaseTool, tool
from PIL import Image
from pydantic import BaseModel, Field

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from memory.observation import Observation
from memory.store import Store
from prompts import render_prompt
from tools.frames import FrameReader
from tools.look import grab, is_file_source, tool_source
from tools.timeline import cite, parse_when
from tools.vision.base import VisionBackend, VisionRequest
from tools.vision.images import load_image

log = logging.getLogger(__name__)


def thumbnail(obs: Observation) -> Image.Image:
    """The analysed frame of an observation, as stored beside the database."""
    if not obs.thumb_path:
        raise ScenewatchError(f"the frame of the observation at {cite(obs)} was not kept")
    return load_image(obs.thumb_path)


def current_frame(
    store: Store, frames: FrameReader, source: str, max_side: int
) -> tuple[Image.Image, str, Observation | None]:
    """Picture 2: the live frame now, or the latest analysed frame (files, unreachable sources)."""
    latest = next(iter(store.recent(source, 1)), None)
    if not is_file_source(source):
        try:
            image, when = grab(store, frames, source, max_side)
            return image, when, None
        except ScenewatchError as exc:
            if latest is None:
                raise
            log.info("cannot read %s now (%s); comparing with its last analysed frame", source, exc)
    if latest is None:
        raise ScenewatchError(f"no analysed frame of {source} yet")
    if is_file_source(source):
        image, _ = grab(store, frames, source, max_side, latest.video_t or 0.0)
        return image, cite(latest), latest
    return thumbnail(latest), cite(latest), latest


def previous_observation(
    store: Store, source: str, since: str | None, current: Observation | None
) -> Observation:
    """Picture 1: the first observation at or after ``since``, else the last one before ``current``."""
    if since:
        start = parse_when(since)
        found = store.between(source, since=start, limit=1)
        if not found:
            raise ScenewatchError(f"no analysed frame of {source} at or after {since}")
        return found[0]
    earlier = [obs for obs in store.recent(source, 2) if current is None or obs.id != current.id]
    if not earlier:
        raise ScenewatchError(f"no earlier analysed frame of {source} to compare with")
    return earlier[-1]


def compare_request(previous: Image.Image, current: Image.Image, prompt: str) -> VisionRequest:
    """One user turn with both pictures, each introduced by its name."""
    content = [
        {"type": "text", "text": "Picture 1:"},
        {"type": "image", "image": previous},
        {"type": "text", "text": "Picture 2:"},
        {"type": "image", "image": current},
        {"type": "text", "text": prompt},
    ]
    return VisionRequest(messages=({"role": "user", "content": content},))


class CompareArgs(BaseModel):
    source: str | None = Field(
        default=None, description="camera or video to compare; default: the one being discussed"
    )
    since: str | None = Field(
        default=None,
        description="compare with the frame analysed at or after this time (10m, 2h, 14:05, "
        "2024-05-01T14:05); default: the last analysed frame",
    )


def make_compare_tool(
    engine: VisionBackend,
    store: Store,
    frames: FrameReader,
    settings: Settings,
    default_source: str | None = None,
) -> BaseTool:
    """``compare``: two frames in one vision request, "what changed?"."""

    @tool("compare", args_schema=CompareArgs)
    def compare(source: str | None = None, since: str | None = None) -> str:
        """Say what changed: compare the current frame of a source with the last analysed
        frame (or the one analysed at a given time) and describe what appeared, left or moved."""
        name = tool_source(store, frames, source, default_source)
        image, when, current = current_frame(store, frames, name, settings.max_side)
        previous = previous_observation(store, name, since, current)
        prompt = render_prompt(
            "compare",
            previous_time=cite(previous),
            previous_summary=previous.summary or previous.raw or "(no description)",
            current_time=when,
        )
        result = engine.generate([compare_request(thumbnail(previous), image, prompt)])[0]
        return f"{name}, from {cite(previous)} (Picture 1) to {when} (Picture 2): {result.text}"

    return compare
