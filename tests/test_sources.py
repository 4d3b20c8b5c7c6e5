"""Frame sources: timestamp sampling without decoding skipped frames, folders, bad input, grab_frame."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.core.errors import ScenewatchError
from agent.sources import (
    ImageFolderSource,
    LiveSource,
    VideoFileSource,
    grab_frame,
    is_live,
    open_source,
    probe_source,
)


def test_file_is_sampled_by_timestamp_and_skipped_frames_are_never_decoded(synthetic_clip: Path) -> None:
    source = VideoFileSource(synthetic_clip, name="box", every_s=1.0, start_ts=1000.0)
    frames = list(source.frames(threading.Event()))
    source.close()
    assert [f.video_t for f in frames] == pytest.approx([float(t) for t in range(20)])
    assert [f.ts for f in frames] == pytest.approx([1000.0 + t for t in range(20)])
    stats = source.reader.stats
    assert stats.packets == 200 and stats.converted == 20  # every frame read, only the sampled converted
    # Key frames every 1.2 s: only the frames from a key frame up to a sampled one are decoded.
    assert stats.decoded < 130
    assert source.video_s == pytest.approx(19.9)


def test_sampling_faster_than_a_second(synthetic_clip: Path) -> None:
    source = VideoFileSource(synthetic_clip, name="box", every_s=0.5, start_ts=0.0)
    assert len(list(source.frames(threading.Event()))) == 40


def test_stop_ends_a_file_early(synthetic_clip: Path) -> None:
    stop = threading.Event()
    source = VideoFileSource(synthetic_clip, name="box", every_s=1.0, start_ts=0.0)
    taken = []
    for frame in source.frames(stop):
        taken.append(frame)
        stop.set()
    assert len(taken) == 1


def write_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"img_{index:03d}.png"
        cv2.imwrite(str(path), np.full((48, 64, 3), index * 20, np.uint8))
        paths.append(path)
    return paths


def test_folder_sorted_by_name_with_an_unreadable_image_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = write_images(tmp_path / "shots", 5)
    paths[2].write_bytes(b"not an image at all")
    (tmp_path / "shots" / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path / "shots"), every_s=1.0, start_ts=500.0, frame_interval_s=2.0)
    assert isinstance(source, ImageFolderSource)
    with caplog.at_level(logging.WARNING):
        frames = list(source.frames(threading.Event()))
    assert [f.video_t for f in frames] == [0.0, 2.0, 6.0, 8.0]
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 20, 60, 80]
    assert frames[0].ts == 500.0
    assert source.unreadable == 1
    assert "img_002.png" in caplog.text


def test_folder_sampled_slower_than_its_images_reads_only_the_sampled_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_images(tmp_path / "shots", 6)
    read = []
    real_imread = cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda path, *a: read.append(Path(path).name) or real_imread(path, *a))
    source = open_source(str(tmp_path / "shots"), every_s=1.0, start_ts=0.0, frame_interval_s=0.5)
    assert [f.video_t for f in source.frames(threading.Event())] == [0.0, 1.0, 2.0]
    assert read == ["img_000.png", "img_002.png", "img_004.png"]


def test_bad_sources_give_clear_errors(tmp_path: Path, synthetic_clip: Path) -> None:
    with pytest.raises(ScenewatchError, match="source not found"):
        open_source(str(tmp_path / "nope.mp4"), every_s=1.0, start_ts=0.0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScenewatchError, match="no images"):
        open_source(str(tmp_path / "empty"), every_s=1.0, start_ts=0.0)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(ScenewatchError, match="cannot read video"):
        open_source(str(corrupt), every_s=1.0, start_ts=0.0)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(synthetic_clip.read_bytes()[: synthetic_clip.stat().st_size // 2])
    with pytest.raises(ScenewatchError, match="cannot read video"):
        open_source(str(truncated), every_s=1.0, start_ts=0.0)


def test_a_video_cut_short_ends_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An AVI whose index survives but whose data is cut: reads what is there, then says so."""
    path = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for index in range(100):
        writer.write(np.full((48, 64, 3), index, np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    try:
        source = VideoFileSource(path, name="cut", every_s=1.0, start_ts=0.0)
    except ScenewatchError:
        return  # refusing the file up front is as good
    with caplog.at_level(logging.WARNING):
        frames = list(source.frames(threading.Event()))
    assert 0 < len(frames) < 10
    assert "ended at" in caplog.text or source.unreadable


def unreadable_inputs(folder: Path) -> tuple[Path, Path]:
    """A text file named like a JPEG (OpenCV opens it as a capture, then reads nothing) and a
    folder of images none of which reads."""
    fake = folder / "fake.jpg"
    fake.write_text("not a picture, just text")
    shots = folder / "shots"
    paths = write_images(shots, 3)
    for path in paths:
        path.write_bytes(b"\x89PNG broken")
    return fake, shots


def test_a_file_that_yields_no_frame_is_an_error(tmp_path: Path) -> None:
    fake, _ = unreadable_inputs(tmp_path)
    try:
        source = VideoFileSource(fake, name=str(fake), every_s=1.0, start_ts=0.0)
    except ScenewatchError:
        return  # an OpenCV that refuses it up front is as good
    with pytest.raises(ScenewatchError, match=r"no frame could be read from .*fake\.jpg: not a video"):
        list(source.frames(threading.Event()))
    source.close()


def test_a_folder_where_no_image_reads_is_an_error(tmp_path: Path) -> None:
    _, shots = unreadable_inputs(tmp_path)
    source = open_source(str(shots), every_s=1.0, start_ts=0.0)
    with pytest.raises(ScenewatchError, match="no image could be read from folder"):
        list(source.frames(threading.Event()))
    assert source.unreadable == 3


def test_probe_reads_a_first_frame_without_touching_live_sources(
    tmp_path: Path, synthetic_clip: Path
) -> None:
    fake, shots = unreadable_inputs(tmp_path)
    with pytest.raises(ScenewatchError, match=r"no frame could be read|cannot read video"):
        probe_source(str(fake))
    with pytest.raises(ScenewatchError, match="no image could be read from folder"):
        probe_source(str(shots))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(synthetic_clip.read_bytes()[: synthetic_clip.stat().st_size // 2])
    with pytest.raises(ScenewatchError, match="cannot read video"):
        probe_source(str(truncated))
    with pytest.raises(ScenewatchError, match="source not found"):
        probe_source(str(tmp_path / "nope.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScenewatchError, match="no images"):
        probe_source(str(tmp_path / "empty"))
    cv2.imwrite(str(shots / "z_good.png"), np.zeros((8, 8, 3), np.uint8))  # one readable image is enough
    probe_source(str(shots))
    probe_source(str(synthetic_clip))
    started = time.monotonic()
    probe_source(f"http://127.0.0.1:{closed_port()}/video.mjpg")  # not connected to: live sources retry
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("spec", "live"),
    [
        ("0", True),
        ("rtsp://cam/1", True),
        ("https://x/live.m3u8", True),
        ("clip.mp4", False),
        ("dir/", False),
    ],
)
def test_is_live(spec: str, live: bool) -> None:
    assert is_live(spec) is live


def test_grab_frame_from_a_file_and_a_folder(synthetic_clip: Path, tmp_path: Path) -> None:
    def red(frame: np.ndarray) -> bool:
        b, g, r = frame[120, 160].astype(int)
        return r > 200 and g < 60 and b < 60

    assert red(grab_frame(str(synthetic_clip), 6.0))
    assert not red(grab_frame(str(synthetic_clip), 2.0))
    assert grab_frame(str(synthetic_clip)).shape == (240, 320, 3)
    with pytest.raises(ScenewatchError, match=r"20\.0 s long"):
        grab_frame(str(synthetic_clip), 99.0)
    write_images(tmp_path / "shots", 3)
    assert int(grab_frame(str(tmp_path / "shots"))[0, 0, 0]) == 40  # the newest image
    assert int(grab_frame(str(tmp_path / "shots"), 1.0)[0, 0, 0]) == 20
    with pytest.raises(ScenewatchError, match="source not found"):
        grab_frame(str(tmp_path / "missing.mp4"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_grab_frame_from_a_dead_stream_says_so() -> None:
    url = f"http://127.0.0.1:{closed_port()}/video.mjpg"
    with pytest.raises(ScenewatchError, match="cannot connect"):
        grab_frame(url, timeout_s=1.0)
    with pytest.raises(ScenewatchError, match="live source"):
        grab_frame(url, 3.0)


def test_a_url_that_never_answers_is_retried_with_backoff_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that accepts connections and never says a word: logged retries, no hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    threading.Thread(
        target=lambda: [accepted.append(server.accept()[0]) for _ in range(16)], daemon=True
    ).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg"
    source = LiveSource(url, name=url, every_s=0.2, reconnect_max_s=0.4, timeout_s=0.5, give_up_s=0)
    stop = threading.Event()
    frames: list = []
    with caplog.at_level(logging.WARNING):
        reader = threading.Thread(target=lambda: frames.extend(source.frames(stop)), daemon=True)
        reader.start()
        deadline = time.monotonic() + 15
        while source.reconnects < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        reader.join(5)
        source.close()
    server.close()
    assert not reader.is_alive()
    assert frames == []
    assert source.reconnects >= 2
    assert "reconnect attempt 2" in caplog.text
