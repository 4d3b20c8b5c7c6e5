"""Video time from the decoder: clips whose stated frame rate disagrees with their timestamps.

Every clip is written here with PyAV (no ffmpeg command needed), small and short; each frame
carries its own index as a row of black and white blocks, so a test can tell which frame a
decoded image really is. The kinds of clips:

- an AVI whose tick is 1/50 s holding 25 frames a second (the header says 50 fps and twice the
  frames: a field-coded camera file), in MPEG-4 part 2 and in H.264;
- variable frame rate (30 fps for 5 s, then a frame every 200 ms), in MP4 and Matroska;
- constant rate in MP4, Matroska and MPEG-TS (which starts at 1.4 s), one with B-frames;
- the same cut to half their bytes: truly truncated.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.pipeline.watch import run_watch
from agent.sources import VideoFileSource, VideoReader, frame_at, grab_frame
from agent.sources.sampling import MonotonicTime, TimeSampler
from memory.store import Store
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

WIDTH, HEIGHT = 320, 180
BITS, BLOCK = 12, 24


def picture(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A BGR frame: a gradient that moves with ``index``, and ``index`` in binary along the bottom."""
    row = ((np.arange(width) + 7 * index) % 256).astype(np.uint8)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = row[None, :, None]
    top = height - BLOCK - 4
    for bit in range(BITS):
        image[top : top + BLOCK, 4 + bit * BLOCK : 4 + (bit + 1) * BLOCK] = 255 if index >> bit & 1 else 0
    return image


def index_of(image: np.ndarray) -> int:
    """The index :func:`picture` wrote into ``image`` (after lossy coding)."""
    y = image.shape[0] - BLOCK - 4 + BLOCK // 2
    blocks = [image[y - 4 : y + 4, 4 + bit * BLOCK + 8 : 4 + bit * BLOCK + 16].mean() for bit in range(BITS)]
    return sum(1 << bit for bit, level in enumerate(blocks) if level > 128)


def write(
    path: Path,
    pts: Sequence[int],
    time_base: Fraction,
    *,
    codec: str = "libx264",
    rate: int | Fraction | None = None,
    gop: int = 25,
    b_frames: int = 0,
    keys: Sequence[int] = (),
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> Path:
    """Frames 0, 1, ... at ``pts`` (in ``time_base``); ``keys``: frames forced to be key frames."""
    options = {"movflags": "+faststart"} if path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=rate or Fraction(1, 1) / time_base)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = gop
        stream.codec_context.options = {
            "bf": str(b_frames),
            **({"preset": "ultrafast"} if codec == "libx264" else {}),
        }
        for index, timestamp in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(picture(index, *size), format="bgr24")
            frame.pts, frame.time_base = timestamp, time_base
            if index in keys:
                frame.pict_type = av.video.frame.PictureType.I
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


FIELD_FRAMES = 341  # 13.64 s at 25 fps
FIELD_TIMES = [i * 0.04 for i in range(FIELD_FRAMES)]
VFR_TIMES = [i / 30 for i in range(150)] + [5 + k * 0.2 for k in range(1, 51)]  # ends at 15 s
CFR_TIMES = [i * 0.04 for i in range(250)]  # 10 s at 25 fps


def field_avi(path: Path, codec: str = "mpeg4", size: tuple[int, int] = (WIDTH, HEIGHT)) -> Path:
    """25 fps in an AVI ticking at 1/50 s: a frame on every other tick (pts 0, 2, 4, ...)."""
    return write(path, [2 * i for i in range(FIELD_FRAMES)], Fraction(1, 50), codec=codec, rate=50, size=size)


def truncated(path: Path, out: Path) -> Path:
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[float]]]:
    """Each clip and the true times of its frames."""
    folder = tmp_path_factory.mktemp("decoder_time")
    cfr = [round(t * 25) for t in CFR_TIMES]
    vfr = [round(t * 90000) for t in VFR_TIMES]
    made = {
        "field.avi": (field_avi(folder / "field.avi"), FIELD_TIMES),
        "field_h264.avi": (field_avi(folder / "field_h264.avi", codec="libx264"), FIELD_TIMES),
        "vfr.mp4": (write(folder / "vfr.mp4", vfr, Fraction(1, 90000), rate=30), VFR_TIMES),
        "vfr.mkv": (write(folder / "vfr.mkv", vfr, Fraction(1, 90000), rate=30), VFR_TIMES),
        "cfr.mp4": (write(folder / "cfr.mp4", cfr, Fraction(1, 25)), CFR_TIMES),
        "cfr.mkv": (write(folder / "cfr.mkv", cfr, Fraction(1, 25)), CFR_TIMES),
        "cfr.ts": (write(folder / "cfr.ts", cfr, Fraction(1, 25)), CFR_TIMES),
        "bframes.mp4": (write(folder / "bframes.mp4", cfr, Fraction(1, 25), b_frames=3), CFR_TIMES),
    }
    for name in ("field.avi", "cfr.mp4", "cfr.mkv"):
        path, times = made[name]
        made[f"cut_{name}"] = (truncated(path, folder / f"cut_{name}"), times)
    return made


WHOLE = ["field.avi", "field_h264.avi", "vfr.mp4", "vfr.mkv", "cfr.mp4", "cfr.mkv", "cfr.ts", "bframes.mp4"]
CUT = ["cut_field.avi", "cut_cfr.mp4", "cut_cfr.mkv"]


def shift(name: str) -> float:
    """H.264 in AVI stores no presentation times; PyAV's FFmpeg puts each a frame after its
    decoding time, so that clip's times are all 40 ms late (the same frame for every one)."""
    return 0.04 if name == "field_h264.avi" else 0.0


def sample(path: Path, every_s: float = 1.0, jitter_s: float = 0.0) -> tuple[VideoFileSource, list]:
    source = VideoFileSource(path, name=path.name, every_s=every_s, start_ts=1000.0, jitter_s=jitter_s)
    frames = list(source.frames(threading.Event()))
    source.close()
    return source, frames


def test_opencv_sees_the_field_avi_as_the_reported_file(clips: dict) -> None:
    """The reproduction: OpenCV says 50 fps and 681 frames; 341 frames come, 40 ms apart."""
    cap = cv2.VideoCapture(str(clips["field.avi"][0]), cv2.CAP_FFMPEG)
    assert cap.get(cv2.CAP_PROP_FPS) == 50 and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 681
    grabbed = 0
    while cap.grab():
        grabbed += 1
    cap.release()
    assert grabbed == FIELD_FRAMES  # index / stated fps would stamp them 0 to 6.8 s


@pytest.mark.parametrize("name", WHOLE)
def test_samples_are_the_frames_nearest_each_second_stamped_with_their_own_time(
    clips: dict, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    path, true_times = clips[name]
    times = [t + shift(name) for t in true_times]
    with caplog.at_level(logging.WARNING):
        source, frames = sample(path)
    assert "ended at" not in caplog.text
    assert len(frames) == int(times[-1]) + 1  # one a second, to the real end
    for second, frame in enumerate(frames):
        index = index_of(frame.image)
        assert frame.video_t == pytest.approx(times[index], abs=1e-3)  # its own time
        assert frame.ts == pytest.approx(1000.0 + frame.video_t)
        # The nearest frame; at the VFR clip's change of rate (5 s) the first after it, which a
        # sampler that cannot look ahead takes for the next gap is estimated by the previous one.
        after = min(t for t in times if t >= second - 1e-9)
        before = max((t for t in times if t <= second + 1e-9), default=after)
        assert times[index] in {before, after}
        if name not in ("vfr.mp4", "vfr.mkv"):
            assert abs(times[index] - second) <= 0.021 + shift(name)
    assert true_times[-1] < source.reader.ended_s <= times[-1] + (times[-1] - times[-2]) + 1e-3


def test_the_field_coded_hd_avi_is_read_to_its_real_end_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reported file: 1280x720, the container says 50 fps (681 ticks), 341 frames 40 ms apart."""
    path = field_avi(tmp_path / "field_hd.avi", size=(1280, 720))
    with caplog.at_level(logging.WARNING):
        source, frames = sample(path, every_s=2.0)  # watched at half speed: every other second
    assert [f.video_t for f in frames] == pytest.approx([0, 2, 4, 6, 8, 10, 12], abs=1e-6)
    assert [index_of(f.image) for f in frames] == [0, 50, 100, 150, 200, 250, 300]
    assert source.duration_s == pytest.approx(13.62)  # 681 ticks of 20 ms
    assert source.reader.ended_s == pytest.approx(13.62)  # the last frame, at 13.6 s, lasts a tick
    assert not source.reader.ended_early and "ended at" not in caplog.text


@pytest.mark.parametrize("name", CUT)
def test_only_a_truly_truncated_file_warns(clips: dict, name: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        source, frames = sample(clips[name][0])
    assert 0 < len(frames) < int(clips[name][1][-1])
    assert source.reader.ended_early
    assert f"{name}: the video ended at" in caplog.text


def expected_samples(path: Path, every_s: float) -> list[tuple[float, int]]:
    """What decoding every frame and sampling by decoder time gives: (time, frame index)."""
    sampler, clock, out = TimeSampler(every_s), MonotonicTime(), []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        for frame in container.decode(stream):
            t = clock(float((frame.pts - start) * stream.time_base))
            if sampler.due(t):
                out.append((t, index_of(frame.to_ndarray(format="bgr24"))))
    return out


@pytest.mark.parametrize("name", ["cfr.mp4", "vfr.mkv", "field.avi", "cfr.ts", "bframes.mp4"])
@pytest.mark.parametrize("every_s", [1.0, 0.3])
def test_exact_sampling_gives_what_decoding_every_frame_gives(clips: dict, name: str, every_s: float) -> None:
    path = clips[name][0]
    source, frames = sample(path, every_s)
    expected = expected_samples(path, every_s)
    assert [f.video_t for f in frames] == pytest.approx([t for t, _ in expected])
    assert [index_of(f.image) for f in frames] == [index for _, index in expected]
    stats = source.reader.stats
    assert stats.converted == len(frames)
    if name == "bframes.mp4":
        assert stats.decoded == stats.packets  # reordered frames: decoded in full
    elif every_s == 1.0 and name != "vfr.mkv":
        assert stats.decoded == len(frames)  # a key frame every second, on the sampling times: only they


def test_key_frames_near_the_sampling_times_are_taken_when_a_jitter_is_allowed(tmp_path: Path) -> None:
    """Key frames at 0 and 0.48 s past every second: exact frames cost a decode from the key frame
    on; with 0.5 s of jitter each sample is a key frame, decoded alone, stamped with its own time."""
    keys = [0, *range(12, 250, 25)]
    path = write(tmp_path / "keys.mp4", range(250), Fraction(1, 25), gop=250, keys=keys)
    exact_source, exact = sample(path)
    assert [f.video_t for f in exact] == pytest.approx([float(s) for s in range(10)])
    assert [index_of(f.image) for f in exact] == [25 * s for s in range(10)]
    assert exact_source.reader.stats.decoded > 100
    source, frames = sample(path, jitter_s=0.5)
    assert [f.video_t for f in frames] == pytest.approx([0.0] + [s + 0.48 for s in range(1, 10)])
    assert [index_of(f.image) for f in frames] == [0, *range(37, 250, 25)]
    assert source.reader.stats.decoded == len(frames)
    far = sample(path, jitter_s=0.2)[0]  # key frames too far: exact frames again
    assert far.reader.stats.decoded == exact_source.reader.stats.decoded


@pytest.mark.parametrize("name", WHOLE)
@pytest.mark.parametrize("at_s", [0.0, 0.5, 3.0, 5.1, 7.3, 9.9])
def test_frame_at_seeks_by_decoder_time(clips: dict, name: str, at_s: float) -> None:
    path, times = clips[name]
    with VideoReader(path) as reader:
        image, t = frame_at(reader, at_s)
    index = index_of(image)
    assert t == pytest.approx(times[index] + shift(name), abs=1e-3)
    nearest = min(abs(x + shift(name) - at_s) for x in times)
    assert abs(t - at_s) <= nearest + 1e-3


def test_grab_frame_past_a_truncation_says_where_the_video_ends(clips: dict) -> None:
    path = clips["cut_field.avi"][0]
    assert index_of(grab_frame(str(path), 3.0)) == 75
    with pytest.raises(ScenewatchError, match=r"no frame at 12 s of .*cut_field\.avi: it ends at [67]\.\d s"):
        grab_frame(str(path), 12.0)
    with pytest.raises(ScenewatchError, match=r"13\.6 s long: no frame at 20 s"):
        grab_frame(str(path), 20.0)


def test_monotonic_time_repairs_missing_and_reset_timestamps() -> None:
    clock = MonotonicTime()
    assert [clock(t) for t in (0.0, 0.1, 0.2, None, 0.0, 0.1, 0.2)] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_the_sampler_takes_the_frame_nearest_each_sampling_time() -> None:
    for spacing in (0.04, 0.1, 0.3, 0.7, 1.5):
        sampler = TimeSampler(1.0)
        times = [round(i * spacing, 9) for i in range(int(10 / spacing))]
        taken = [t for t in times if sampler.due(t)]
        for target in {round(k) for k in np.arange(0, times[-1] + 1e-9, 1.0)}:
            nearest = min(times, key=lambda t, target=target: (abs(t - target), t))
            if abs(nearest - target) < spacing / 2:
                assert nearest in taken


def test_frames_a_decoder_holds_back_are_waited_for(clips: dict) -> None:
    """With frame threads the decoder gives each frame out a few packets late: the sampled frames
    are still exactly those of decoding every frame."""
    path = clips["cfr.mp4"][0]
    with VideoReader(path) as reader:
        reader.stream.thread_type = "FRAME"
        reader.stream.codec_context.thread_count = 3
        got = [(sample.t, index_of(sample.image)) for sample in reader.samples(0.7)]
    expected = expected_samples(path, 0.7)
    assert [t for t, _ in got] == pytest.approx([t for t, _ in expected])
    assert [index for _, index in got] == [index for _, index in expected]


def test_long_groups_of_pictures_are_decoded_as_they_come_past_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.sources.decoding.MAX_WAITING", 10)
    path = write(tmp_path / "long_gop.mkv", range(250), Fraction(1, 25), gop=250)  # one key frame
    source, frames = sample(path)
    assert [index_of(f.image) for f in frames] == [25 * s for s in range(10)]
    assert source.reader.stats.decoded == 250 - 10  # all but the last 10, which never had to be


def test_a_watch_of_the_field_coded_avi_is_stamped_to_its_real_end(
    clips: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reported symptom, through the watch loop: observations stamped 0 to 12 s (not 0 to 6.8 s),
    and no "ended at 6.8 s of its stated 13.6 s" warning."""
    settings = Settings(home=tmp_path / "home", every_s=2.0, gate_threshold=0.0)
    store = Store(settings.db_path)
    with (
        caplog.at_level(logging.WARNING),
        Engine(ScriptedBackend(default='{"summary": "a test card"}')) as engine,
    ):
        summary = run_watch([str(clips["field.avi"][0])], settings, engine=engine, store=store)
    assert not summary.errors
    assert [o.video_t for o in store.between()] == pytest.approx([0, 2, 4, 6, 8, 10, 12])
    assert summary.sources[str(clips["field.avi"][0])].video_s == pytest.approx(13.6)
    assert "ended at" not in caplog.text
