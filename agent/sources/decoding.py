"""Video read with PyAV (FFmpeg's libraries): time from the decoder, and only the sampled frames decoded.

- **Time** is the decoder's: a frame's presentation timestamp (its packet's, else its decoding
  timestamp) less the stream's start, never its index divided by the stated frame rate, which is
  wrong for variable-frame-rate recordings and for AVIs whose tick is not the frame rate.
- **Sampling** (:meth:`VideoReader.samples`): the packets are read in order and sampled by their
  time (:class:`~agent.sources.sampling.TimeSampler`); a sampled key frame is decoded alone, a
  sampled frame between key frames is decoded from its key frame on (continuing where the last
  sample of the same group of pictures stopped), and nothing else is decoded. The frames are
  exactly those a decoder reading every frame would sample. With ``jitter_s`` a key frame within
  that many seconds of the sampling time is taken instead of the exact frame, so that footage with
  a key frame every sampling interval decodes key frames only. Streams whose frames are reordered
  (B-frames) are decoded in full and sampled exactly.
- **Live** (:meth:`VideoReader.frames`): every decoded frame, unconverted (the caller converts only
  the frames it uses); with ``jitter_s`` at least the key-frame interval, key frames only.
- **A frame at a time** (:func:`frame_at`): a seek to the key frame at or before it, then decoding
  forward, by decoder time.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.error
import cv2
import numpy as np

from agent.core.errors import ScenewatchError
from agent.sources.names import is_live
from agent.sources.reachability import StreamError, explain_failure
from agent.sources.sampling import MonotonicTime, TimeSampler

log = logging.getLogger(__name__)

END_SLACK_S = 1.0
"""A video whose frames end more than this before its stated duration ended early (truncated)."""

POLL_S = 0.1
"""How often a thread waiting for a URL to open checks whether to stop waiting."""

MAX_WAITING = 300
"""The most packets kept undecoded while sampling (a few MB at 1080p)."""


@dataclass(frozen=True)
class Sample:
    """A sampled frame: BGR pixels, its decoder time (seconds from the stream's start), a key frame?"""

    image: np.ndarray
    t: float
    key: bool


@dataclass
class DecodeStats:
    """What reading cost: packets read, packets given to the decoder (and those it rejected as
    corrupt), frames converted to BGR."""

    packets: int = 0
    decoded: int = 0
    rejected: int = 0
    converted: int = 0


def to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """The frame's pixels as a BGR array (OpenCV's SIMD conversion for the common 4:2:0 case)."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def ffmpeg_options() -> dict[str, str]:
    """FFmpeg options from ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` (``key;value|key;value``), the variable
    scenewatch honoured when OpenCV read its streams (``extension_picky;0`` for HLS, say)."""
    text = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS", "")
    pairs = (item.split(";", 1) for item in text.split("|") if ";" in item)
    return {key.strip(): value.strip() for key, value in pairs if key.strip()}


def open_input(src: str | Path, timeout_s: float | None = None) -> av.container.InputContainer:
    """``src`` (a file, or a URL with ``timeout_s`` bounding the opening and each read) opened, with a
    video stream. ScenewatchError when not: a :class:`StreamError` for a URL, saying whether
    anything answered."""
    name = str(src)
    timeout = None if timeout_s is None else (timeout_s, timeout_s)
    try:
        container = av.open(name, mode="r", options=ffmpeg_options(), timeout=timeout)
    except (av.error.FFmpegError, OSError) as exc:
        if is_live(name):
            raise explain_failure(name, exc, timeout_s) from None
        raise ScenewatchError(
            f"cannot read video {name}: not a video file, or corrupt or truncated"
        ) from None
    if not container.streams.video:
        container.close()
        if is_live(name):
            raise StreamError(f"connected to {name}, but what came has no video stream", connected=True)
        raise ScenewatchError(f"cannot read video {name}: it has no video stream")
    return container


def open_url(
    url: str, timeout_s: float, stop: threading.Event | None = None
) -> VideoReader | StreamError | None:
    """``url`` opened on a thread of its own: its reader, or the StreamError that says why it did
    not open; None when ``stop`` was set first (the opening then goes on in the background and is
    closed when it ends).

    The calling thread waits in short steps, so that a signal handler on the main thread runs
    and a stop is seen at once, however long FFmpeg takes to give up.
    """
    done = threading.Event()
    lock = threading.Lock()
    outcome: list[VideoReader | StreamError] = []
    abandoned = False

    def run() -> None:
        try:
            opened: VideoReader | StreamError = VideoReader(url, timeout_s=timeout_s)
        except StreamError as exc:
            opened = exc
        with lock:
            if abandoned and isinstance(opened, VideoReader):
                opened.close()
            outcome.append(opened)
            done.set()

    threading.Thread(target=run, name=f"open-{url}", daemon=True).start()
    while not done.wait(POLL_S):
        if stop is not None and stop.is_set():
            with lock:
                if not done.is_set():
                    abandoned = True
                    return None
    return outcome[0]


def stated_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """The length the file states (None for live streams): the largest of the stream's duration, the
    container's, and the frame count over the average rate. An AVI's header frame count survives a
    truncation; its durations do not (FFmpeg re-estimates them from the data it finds)."""
    candidates = []
    if stream.duration and stream.time_base:
        candidates.append(float(stream.duration * stream.time_base))
    if container.duration:
        candidates.append(container.duration / 1_000_000)
    if stream.frames and stream.average_rate:
        candidates.append(float(stream.frames / stream.average_rate))
    finite = [value for value in candidates if math.isfinite(value) and value > 0]
    return max(finite) if finite else None


class VideoReader:
    """One video (a file or a URL) read with PyAV, single-threaded (the least CPU per stream).

    ``duration_s`` is what it states (None: a live stream); while reading, ``position_s`` is the
    time of the last packet read; after reading, ``ended_s`` is the end of its last frame,
    ``ended_early`` whether that is well short of the stated duration, and ``read_error`` why
    reading stopped before the end of the data, if it did.
    """

    def __init__(self, src: str | Path, *, timeout_s: float | None = None) -> None:
        self.src = str(src)
        self.container = open_input(src, timeout_s)
        self.stream = self.container.streams.video[0]
        self.stream.codec_context.thread_count = 1
        self.duration_s = stated_duration(self.container, self.stream)
        self.stats = DecodeStats()
        self.position_s = 0.0
        self.ended_s = 0.0
        self.read_error: str | None = None
        self._start = self.stream.start_time or 0
        self._time_base: Fraction = self.stream.time_base or Fraction(1, 1_000_000)
        self._seconds_per_tick = float(self._time_base)
        self._reorders = bool(self.stream.codec_context.has_b_frames)

    @property
    def ended_early(self) -> bool:
        """The frames ended more than :data:`END_SLACK_S` before the stated duration."""
        return bool(self.duration_s) and self.ended_s < self.duration_s - END_SLACK_S

    def time_of(self, timestamp: int | None) -> float | None:
        """Seconds from the stream's start of a timestamp in the stream's time base."""
        return None if timestamp is None else (timestamp - self._start) * self._seconds_per_tick

    def samples(self, every_s: float, *, jitter_s: float = 0.0) -> Iterator[Sample]:
        """A frame every ``every_s`` seconds of decoder time, decoding as little as that needs.

        ``jitter_s`` (at most half of ``every_s``): how far from its sampling time a key frame may
        be and still be taken instead of the exact frame (0: exact frames). Each frame's ``t`` is
        its own time, whichever was taken.
        """
        if self._reorders:
            yield from self._samples_decoding_all(every_s)
        else:
            yield from _PacketSampler(self, every_s, min(jitter_s, every_s / 2)).samples()

    def frames(self, *, jitter_s: float = 0.0) -> Iterator[av.VideoFrame]:
        """Every decoded frame, unconverted, as it comes; from each key frame on, key frames only
        while the key frames are at most ``jitter_s`` apart (0: every frame)."""
        last_key: float | None = None
        keys_only = False
        for packet, t in self.packets():
            if packet.is_keyframe:
                keys_only = (
                    jitter_s > 0 and last_key is not None and t is not None and t - last_key <= jitter_s
                )
                last_key = t
            elif keys_only:
                continue
            decoded = self.decode(packet)
            if keys_only and not decoded:
                decoded = self.drain()  # a decoder that holds frames back (B-frames)
            yield from decoded

    def packets(self) -> Iterator[tuple[av.Packet, float | None]]:
        """The video packets in decoding order with their (presentation) times, as the stream gives
        them; records ``position_s``, ``ended_s`` and ``read_error`` (a read timeout, a lost stream,
        corrupt data) as it goes."""
        clock = MonotonicTime()  # on decoding times, which only go forward (but for resets)
        try:
            for packet in self.container.demux(self.stream):
                if packet.size == 0:
                    continue  # the flush packet at the end; an AVI's empty ticks
                self.stats.packets += 1
                t = self.time_of(packet.pts if packet.pts is not None else packet.dts)
                decoding_t = self.time_of(packet.dts if packet.dts is not None else packet.pts)
                self.position_s = clock(decoding_t)
                shown_after = t - decoding_t if t is not None and decoding_t is not None else 0.0  # B-frames
                length = packet.duration * self._seconds_per_tick if packet.duration else clock.gap
                self.ended_s = max(self.ended_s, self.position_s + shown_after + length)
                yield packet, t
        except av.error.FFmpegError as exc:
            self.read_error = str(exc)
            log.warning("%s: reading stopped: %s", self.src, exc)

    def decode(self, packet: av.Packet | None) -> list[av.VideoFrame]:
        """The frames the decoder gives for ``packet`` (None: the end); a packet it rejects gives none."""
        if packet is not None:
            self.stats.decoded += 1
        try:
            return list(self.stream.codec_context.decode(packet))
        except av.error.FFmpegError as exc:  # corrupt data, a truncated file's last packet
            self.stats.rejected += 1
            log.debug("%s: a packet could not be decoded: %s", self.src, exc)
            return []

    def drain(self) -> list[av.VideoFrame]:
        """The frames a delaying decoder still holds; leaves it ready for a new key frame."""
        frames = self.decode(None)
        self.stream.codec_context.flush_buffers()
        return frames

    def convert(self, frame: av.VideoFrame) -> np.ndarray:
        self.stats.converted += 1
        return to_bgr(frame)

    def _samples_decoding_all(self, every_s: float) -> Iterator[Sample]:
        sampler, clock = TimeSampler(every_s), MonotonicTime()
        for packet in itertools.chain((packet for packet, _ in self.packets()), [None]):
            for frame in self.decode(packet):
                t = clock(self.time_of(frame.pts))
                if sampler.due(t):
                    yield Sample(self.convert(frame), t, bool(frame.key_frame))

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Waiting:
    """A packet of the current group of pictures; ``packet`` is None once given to the decoder."""

    packet: av.Packet | None
    t: float
    pts: int | None
    key: bool


class _PacketSampler:
    """Sampling by packet time, for streams decoded in presentation order (no B-frames).

    The packets of the current group of pictures wait, undecoded, until a sampled frame needs them;
    a packet is let go once decoded. At most :data:`MAX_WAITING` wait: past that (key frames tens
    of seconds apart) the oldest are decoded as they come, which reaching any later frame of the
    group would need anyway. A sampled frame that the decoder does not give out at once (the first
    field of a pair, a decoder that holds frames back) is held: the packets after it are decoded as
    they come until it is out.
    """

    def __init__(self, reader: VideoReader, every_s: float, jitter_s: float) -> None:
        self.reader, self.every_s, self.jitter_s = reader, every_s, jitter_s
        self.gop: list[_Waiting] = []  # the packets since the last key frame
        self.fed = 0  # how many of them the decoder has had, in order
        self.last_t = -math.inf  # the time of the last frame given (each frame is given once)
        self.pending: tuple[float, int] | None = None  # (sampling time, packet) awaiting a key frame
        self.held: list[_Waiting] = []  # sampled packets whose frames have not come out yet

    def samples(self) -> Iterator[Sample]:
        sampler, clock = TimeSampler(self.every_s), MonotonicTime()
        for packet, packet_t in self.reader.packets():
            t = clock(packet_t)
            waiting = _Waiting(packet, t, packet.pts, bool(packet.is_keyframe))
            if waiting.key:
                yield from self._drain()
                if self.pending is not None and t - self.pending[0] <= self.jitter_s:
                    self.gop, self.fed, self.pending = [waiting], 0, None
                    yield from self._take(0)  # a key frame near enough after the sampling time
                else:
                    yield from self._resolve()
                    self.gop, self.fed = [waiting], 0
            elif not self.gop:
                continue  # before the first key frame: not decodable
            else:
                self.gop.append(waiting)
                if self.held:
                    yield from self._feed_through(len(self.gop) - 1)
                elif len(self.gop) - self.fed > MAX_WAITING and self.pending is None:
                    yield from self._feed_through(self.fed)
                if self.pending is not None and t > self.pending[0] + self.jitter_s:
                    yield from self._resolve()
            if not sampler.due(t) or t <= self.last_t:
                continue
            yield from self._resolve()
            index, key_t = len(self.gop) - 1, self.gop[0].t
            if index == 0 or self.jitter_s == 0:
                yield from self._take(index)
            elif sampler.target - key_t <= self.jitter_s and key_t > self.last_t and self.fed == 0:
                yield from self._take(0)
            else:
                self.pending = (sampler.target, index)
        yield from self._resolve()
        yield from self._drain()

    def _resolve(self) -> Iterator[Sample]:
        """The exact frame of a sampling time that no key frame came near enough to."""
        if self.pending is not None:
            index, self.pending = self.pending[1], None
            yield from self._take(index)

    def _take(self, index: int) -> Iterator[Sample]:
        """The frame of ``gop[index]``, decoding the group of pictures up to it where not done yet."""
        waiting = self.gop[index]
        if waiting.t <= self.last_t or (index < self.fed and not self.held):
            return  # given, or decoded and passed over
        self.held.append(waiting)
        yield from self._feed_through(index)

    def _feed_through(self, index: int) -> Iterator[Sample]:
        """Decode the waiting packets up to ``gop[index]``, giving the held frames that come out."""
        while self.fed <= index:
            waiting = self.gop[self.fed]
            self.fed += 1
            if waiting.packet is not None:
                packet, waiting.packet = waiting.packet, None
                for frame in self.reader.decode(packet):
                    yield from self._release(frame)

    def _drain(self) -> Iterator[Sample]:
        """Frames the decoder still holds, before a key frame or at the end."""
        if self.held:
            for frame in self.reader.drain():
                yield from self._release(frame)
            self.held.clear()

    def _release(self, frame: av.VideoFrame) -> Iterator[Sample]:
        """The first held sample, when ``frame`` is its frame (the first out at or after it)."""
        if not self.held:
            return
        if self.held[0].pts is not None and frame.pts is not None and frame.pts < self.held[0].pts:
            return  # an earlier frame, decoded on the way
        waiting = self.held.pop(0)
        if waiting.t > self.last_t:
            self.last_t = waiting.t
            yield Sample(self.reader.convert(frame), waiting.t, waiting.key)


def frame_at(reader: VideoReader, at_s: float) -> tuple[np.ndarray, float]:
    """The frame nearest ``at_s`` seconds of decoder time, and its time: a seek to the key frame at or
    before it, then decoding forward (``cv2.CAP_PROP_POS_MSEC`` seeks through the stated frame rate,
    and lands wrong or nowhere where that is not the rate of the frames).

    Some demuxers (MPEG-TS) land after the time asked for, or on nothing near the end: then it seeks
    again further back (1, 3, 7, ... s earlier). Where the timestamps go back (a reset), the video is
    decoded from the start with the times :meth:`VideoReader.samples` gives. ScenewatchError when the
    video ends before ``at_s``.
    """
    back = 0.0
    try:
        while True:
            seek_s = max(0.0, at_s - back)
            found = _nearest_after_seek(reader, seek_s, at_s)
            if found is not None:
                return found
            back = 2 * back + 1.0
    except _TimeWentBack:
        _seek(reader, 0.0)
        return _nearest(reader, at_s, MonotonicTime())


class _TimeWentBack(Exception):
    """The timestamps went back: time in this video is not what a seek goes by."""


def _seek(reader: VideoReader, to_s: float) -> None:
    offset = reader._start + int(to_s / reader._time_base)
    reader.container.seek(offset, stream=reader.stream, backward=True, any_frame=False)
    reader.stream.codec_context.flush_buffers()


def _nearest_after_seek(reader: VideoReader, seek_s: float, at_s: float) -> tuple[np.ndarray, float] | None:
    """After a seek to ``seek_s``, the frame nearest ``at_s``; None when the seek landed after it (or
    past the data) and an earlier one may do."""
    if seek_s > 0 or reader.stats.packets:
        _seek(reader, seek_s)
    return _nearest(reader, at_s, None, landed_check=seek_s > 0)


def _nearest(
    reader: VideoReader, at_s: float, clock: MonotonicTime | None, *, landed_check: bool = False
) -> tuple[np.ndarray, float] | None:
    """Decoding on from where the reader is, the frame nearest ``at_s``: times as they come, or
    through ``clock``. None when ``landed_check`` and the first frame is already past ``at_s``, or
    when nothing decodes after a seek; ScenewatchError when the video ends before ``at_s``."""
    previous: tuple[av.VideoFrame, float] | None = None
    gap = 0.0
    for packet in itertools.chain((packet for packet, _ in reader.packets()), [None]):
        for frame in reader.decode(packet):
            t = reader.time_of(frame.pts)
            if clock is not None:
                t = clock(t)
            if t is None:
                continue
            if previous is not None and t < previous[1]:
                raise _TimeWentBack
            if previous is None and t > at_s and landed_check:
                return None  # landed after the time asked for
            if t >= at_s:
                if previous is not None and at_s - previous[1] < t - at_s:
                    frame, t = previous
                return reader.convert(frame), t
            if previous is not None:
                gap = t - previous[1]
            previous = (frame, t)
    if previous is None:
        if landed_check:
            return None  # a seek past the end of the data
        raise ScenewatchError(f"no frame could be decoded from {reader.src}")
    if at_s - previous[1] <= max(1.5 * gap, 0.1):
        return reader.convert(previous[0]), previous[1]  # the last frame, still showing at ``at_s``
    raise ScenewatchError(f"no frame at {at_s:g} s of {reader.src}: it ends at {previous[1]:.1f} s")
