"""``scenewatch bench capture``: the CPU cost of a camera, sampling and gating one frame a second.

The clips are H.264 as cameras send it (libx264 through PyAV, no B-frames, a fixed key-frame
interval, a bitrate cap: 1 Mbit/s at 640x360, 4 Mbit/s and more above), 25 fps: ``testsrc2`` with
light temporal noise standing in for a sensor's ("moving"), or one frozen picture with weaker noise
("static": its predicted frames cost little to decode, so skipping them gains less). They are
written once into the clips folder and reused.

Each reader samples every ``every_s`` seconds of video and runs the change gate on every sample,
as a watch or a capture process does:

- ``opencv_read_all``: OpenCV ``read()`` of every frame (the baseline);
- ``opencv_grab``: OpenCV ``grab()`` of every frame, ``retrieve()`` of the sampled ones (scenewatch's
  reader before PyAV: ``grab()`` still decodes every frame);
- ``scenewatch``: :meth:`~agent.sources.decoding.VideoReader.samples`, exact frames: a sampled key
  frame is decoded alone, any other from its key frame on;
- ``scenewatch_keyframes``: the same with a jitter of half the interval (``SCENEWATCH_SAMPLE_JITTER_S``):
  the key frame nearest each sampling time, decoded alone;
- ``scenewatch_live`` / ``scenewatch_live_keyframes``: the live reader's decoding
  (:meth:`~agent.sources.decoding.VideoReader.frames`: every frame decoded, only the one taken each
  interval converted; or key frames only), on the file read as fast as it decodes (a network
  stream adds its receiving and demuxing, which this does not measure).

CPU time is the process's (all threads), best of ``repeats`` runs with the readers interleaved,
so that a change in the machine's load touches all of them alike; every decoder runs single
threaded (threads buy wall time, not CPU). Streams per core = seconds of video per CPU second.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2

from agent.core.errors import ScenewatchError
from agent.pipeline.gate import ChangeGate
from agent.sources.decoding import VideoReader
from agent.sources.sampling import TimeSampler

FPS = 25
TARGET_X = 10.0
"""Streams per core, as a multiple of OpenCV reading every frame, that the capture path aims at."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ClipSpec:
    """One benchmark clip: size, key-frame interval, bitrate, scene and length."""

    width: int
    height: int
    gop_s: float
    seconds: float = 30.0
    scene: str = "moving"  # or "static"

    @property
    def bitrate(self) -> str:
        return "1M" if self.width * self.height <= 640 * 360 else "4M"

    @property
    def name(self) -> str:
        return f"{self.scene}_{self.width}x{self.height}_key{self.gop_s:g}s_{self.seconds:g}s.mp4"


def write_clip(spec: ClipSpec, path: Path) -> Path:
    """Encode ``spec`` into ``path`` (through a temporary file, so a half-written clip is never reused)."""
    size = f"size={spec.width}x{spec.height}:rate={FPS}"
    if spec.scene == "static":
        frames = round(spec.seconds * FPS)
        graph = f"testsrc2={size}:duration={1 / FPS},loop=loop={frames - 1}:size=1:start=0"
        graph += ",noise=alls=3:allf=t"
    else:
        graph = f"testsrc2={size}:duration={spec.seconds:g},noise=alls=8:allf=t"
    gop = round(spec.gop_s * FPS)
    partial = path.with_suffix(".part.mp4")
    with av.open(graph, format="lavfi") as source, av.open(str(partial), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.options = {
            "preset": "veryfast",
            "bf": "0",
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "b": spec.bitrate,
            "maxrate": spec.bitrate,
            "bufsize": spec.bitrate,
        }
        for index, frame in enumerate(source.decode(video=0)):
            frame.pict_type = av.video.frame.PictureType.NONE  # lavfi marks every frame a key frame
            frame.pts, frame.time_base = index, Fraction(1, FPS)  # the loop filter repeats some
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    partial.replace(path)
    return path


def clip(spec: ClipSpec, folder: Path, progress: Progress) -> Path:
    path = folder / spec.name
    if not path.exists():
        progress(f"writing {spec.name}")
        folder.mkdir(parents=True, exist_ok=True)
        write_clip(spec, path)
    return path


@dataclass
class Run:
    """What one reader did with one clip: sampled frames, their distance to the sampling times,
    packets given to the decoder (PyAV readers)."""

    samples: int
    offsets: list[float]
    decoded: int | None = None


def _gate() -> ChangeGate:
    return ChangeGate(threshold=0.01, side=64, heartbeat_s=10.0)


def opencv_read_all(path: Path, every_s: float) -> Run:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    sampler, gate, offsets = TimeSampler(every_s), _gate(), []
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                break
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
            if sampler.due(t):
                gate.check(image, t)
                offsets.append(abs(t - sampler.target))
    finally:
        cap.release()
    return Run(len(offsets), offsets)


def opencv_grab(path: Path, every_s: float) -> Run:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    sampler, gate, offsets = TimeSampler(every_s), _gate(), []
    try:
        while cap.grab():
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
            if sampler.due(t):
                ok, image = cap.retrieve()
                if ok:
                    gate.check(image, t)
                    offsets.append(abs(t - sampler.target))
    finally:
        cap.release()
    return Run(len(offsets), offsets)


def _scenewatch(jitter: float) -> Callable[[Path, float], Run]:
    def run(path: Path, every_s: float) -> Run:
        gate, offsets = _gate(), []
        with VideoReader(path) as reader:
            for sample in reader.samples(every_s, jitter_s=jitter * every_s):
                gate.check(sample.image, sample.t)
                offsets.append(abs(sample.t - round(sample.t / every_s) * every_s))
            return Run(len(offsets), offsets, reader.stats.decoded)

    return run


def _live(keyframes: bool) -> Callable[[Path, float], Run]:
    def run(path: Path, every_s: float) -> Run:
        gate, offsets = _gate(), []
        next_t = 0.0
        with VideoReader(path) as reader:
            # SCENEWATCH_SAMPLE_JITTER_S of one interval: key frames only when they are that close
            for frame in reader.frames(jitter_s=every_s if keyframes else 0.0):
                t = reader.time_of(frame.pts) or 0.0
                if t + 1e-6 >= next_t:  # the newest frame when the watch takes one
                    gate.check(reader.convert(frame), t)
                    offsets.append(t - next_t)
                    next_t += every_s * (1 + int((t - next_t) / every_s))
            return Run(len(offsets), offsets, reader.stats.decoded)

    return run


READERS: dict[str, Callable[[Path, float], Run]] = {
    "opencv_read_all": opencv_read_all,
    "opencv_grab": opencv_grab,
    "scenewatch": _scenewatch(0.0),
    "scenewatch_keyframes": _scenewatch(0.5),
    "scenewatch_live": _live(False),
    "scenewatch_live_keyframes": _live(True),
}
BASELINE = "opencv_read_all"


@dataclass(frozen=True)
class CaptureOptions:
    sizes: list[tuple[int, int]]
    gops_s: list[float]
    every_s: float = 1.0
    seconds: float = 30.0
    repeats: int = 3
    static: bool = False
    readers: tuple[str, ...] = tuple(READERS)


def run_capture_bench(options: CaptureOptions, clips_dir: Path, progress: Progress) -> dict[str, Any]:
    """Every reader on every clip; CPU per second of video, streams per core, gain over the baseline."""
    specs = [
        ClipSpec(width, height, gop, options.seconds, scene)
        for scene in (("moving", "static") if options.static else ("moving",))
        for width, height in options.sizes
        for gop in options.gops_s
    ]
    paths = {spec: clip(spec, clips_dir, progress) for spec in specs}
    readers = [BASELINE, *(name for name in options.readers if name != BASELINE)]
    best: dict[tuple[ClipSpec, str], tuple[float, Run]] = {}
    for repeat in range(options.repeats):
        for spec, path in paths.items():
            progress(f"run {repeat + 1}/{options.repeats}: {spec.name}")
            for name in readers:
                started = time.process_time()
                run = READERS[name](path, options.every_s)
                cpu = time.process_time() - started
                if (spec, name) not in best or cpu < best[spec, name][0]:
                    best[spec, name] = (cpu, run)
    rows = []
    for spec in specs:
        baseline_cpu = best[spec, BASELINE][0]
        for name in readers:
            cpu, run = best[spec, name]
            rows.append(
                {
                    "clip": spec.name,
                    **asdict(spec),
                    "reader": name,
                    "cpu_s": round(cpu, 4),
                    "cpu_per_video_s": round(cpu / spec.seconds, 5),
                    "streams_per_core": round(spec.seconds / cpu, 1) if cpu > 0 else None,
                    "x_read_all": round(baseline_cpu / cpu, 2) if cpu > 0 else None,
                    "samples": run.samples,
                    "offset_mean_s": round(sum(run.offsets) / len(run.offsets), 3) if run.offsets else None,
                    "offset_max_s": round(max(run.offsets), 3) if run.offsets else None,
                    "decoded_packets": run.decoded,
                }
            )
    return {
        "machine": machine(),
        "every_s": options.every_s,
        "repeats": options.repeats,
        "target_x": TARGET_X,
        "rows": rows,
        "target": verdict(rows, options.every_s),
    }


def verdict(rows: list[dict[str, Any]], every_s: float) -> list[dict[str, Any]]:
    """Per clip with a key frame at least every sampling interval: scenewatch's best file reader
    against the target multiple of OpenCV's ``read()`` of every frame."""
    out = []
    for row in rows:
        if row["reader"] not in ("scenewatch", "scenewatch_keyframes") or row["gop_s"] > every_s + 1e-9:
            continue
        out.append(
            {
                "clip": row["clip"],
                "reader": row["reader"],
                "x_read_all": row["x_read_all"],
                "met": (row["x_read_all"] or 0) >= TARGET_X,
            }
        )
    return out


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, load, library versions."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "pyav": av.__version__,
        "ffmpeg_pyav": av.library_versions.get("libavcodec"),
        "opencv": cv2.__version__,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def capture_options(
    sizes: str, key_every: str, every_s: float, seconds: float, repeats: int, static: bool
) -> CaptureOptions:
    """The options from the command's flags: ``640x360,1920x1080`` and ``1,2`` (seconds between key
    frames); ScenewatchError naming the flag that is malformed."""
    try:
        frame_sizes = [tuple(int(side) for side in part.lower().split("x")) for part in sizes.split(",")]
    except ValueError:
        frame_sizes = []
    if not frame_sizes or any(
        len(size) != 2 or min(size) < 16 or size[0] % 2 or size[1] % 2 for size in frame_sizes
    ):
        raise ScenewatchError(
            f"--sizes takes WIDTHxHEIGHT, even numbers from 16, comma-separated (got {sizes!r})"
        )
    try:
        gops = [float(part) for part in key_every.split(",")]
    except ValueError:
        gops = []
    if not gops or min(gops) < 1 / FPS or max(gops) > seconds:
        raise ScenewatchError(
            f"--key-every takes seconds from 0.04 to the clip's length, comma-separated (got {key_every!r})"
        )
    if every_s <= 0:
        raise ScenewatchError("--every must be more than 0")
    return CaptureOptions([(w, h) for w, h in frame_sizes], gops, every_s, seconds, repeats, static)
