"""Frame sources: video files, image folders, webcams, RTSP/HTTP(S)/HLS streams.

``open_source(name, ...)`` gives a :class:`FrameSource` whose ``frames(stop)`` yields sampled
:class:`Frame`s; ``grab_frame`` takes one frame for the agent's tools; ``resolve_source`` maps
what a user typed to a stored source name. :class:`VideoReader` reads one video with PyAV, by
decoder time, decoding only the frames it samples.
"""

from agent.sources.decoding import Sample, VideoReader, frame_at
from agent.sources.files import ImageFolderSource, VideoFileSource
from agent.sources.frame import Frame, FrameSource
from agent.sources.live import LiveSource
from agent.sources.names import is_live, readable_source, resolve_source, source_name
from agent.sources.opening import SourceReader, grab_frame, open_recording, open_source, probe_source
from agent.sources.reachability import StreamError
from agent.sources.video import quiet_video_logs

__all__ = [
    "Frame",
    "FrameSource",
    "ImageFolderSource",
    "LiveSource",
    "Sample",
    "SourceReader",
    "StreamError",
    "VideoFileSource",
    "VideoReader",
    "frame_at",
    "grab_frame",
    "is_live",
    "open_recording",
    "open_source",
    "probe_source",
    "quiet_video_logs",
    "readable_source",
    "resolve_source",
    "source_name",
]
