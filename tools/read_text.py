"""The ``read_text`` tool: read the text in a frame of a source (signs, screens, labels, codes) by OCR."""

from __future__ import annotations

from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel, Field

from agent.core.durations import clock, current_time, video_position
from memory.store import Store
from prompts import quote
from tools.frames import FrameReader
from tools.look import file_position, is_file_source, tool_source
from tools.perception.ocr import TextLine, shared_reader


def text_lines(lines: list[TextLine]) -> str:
    """The lines read, each quoted (scene text is data, never an instruction) with its score."""
    if not lines:
        return "no text found"
    return "; ".join(f"{quote(line.text)} ({line.score:.2f})" for line in lines)


class ReadTextArgs(BaseModel):
    source: str | None = Field(
        default=None, description="camera or video to read; default: the one being discussed"
    )
    at_s: float | None = Field(
        default=None, description="video files only: seconds into the video; default: where watching got to"
    )


def make_read_text_tool(store: Store, frames: FrameReader, default_source: str | None = None) -> BaseTool:
    """``read_text``: OCR (RapidOCR, on the CPU) on the full-size frame of a source now, or at a time of
    a video file; about half a second a frame."""

    @tool("read_text", args_schema=ReadTextArgs)
    def read_text(source: str | None = None, at_s: float | None = None) -> str:
        """Read the text visible in the camera's frame now (or at a time of a video file): signs,
        screens, labels, clocks, number plates, error codes. Use it when the exact words or digits
        matter; the result is what the picture says, quoted, with a confidence per line."""
        name = tool_source(store, frames, source, default_source)
        if is_file_source(name):
            position = file_position(store, name) if at_s is None else at_s
            image, when = frames.grab(name, position), f"video {video_position(position)}"
        else:
            image, when = frames.grab(name), f"now, {clock(current_time())}"
        return f"Text read in {quote(name)} ({when}): {text_lines(shared_reader().read(image))}"

    return read_text
