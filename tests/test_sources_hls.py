"""HLS: an .m3u8 playlist of MPEG-TS segments over HTTP, served from a local folder.

PyAV's FFmpeg reads HLS with no option or change on our side (its ``hls`` demuxer; the
segments are written here by ``cv2.VideoWriter``: MPEG-4 part 2 ('mp4v') in ``.ts`` files,
each with timestamps from 0, as after an HLS discontinuity). The clip is the one the other
tests use (:func:`agent.bench.clips.write_clip`): a textured scene in which a red box appears
at ``CHANGE_S`` and stays.

- A **live** playlist (a sliding window, no ``#EXT-X-ENDLIST``) grows with the clock as a
  camera's does; FFmpeg reloads it each segment, so frames arrive in a burst per segment.
- A **VOD** playlist (``#EXT-X-ENDLIST``) is a recording, by URL as well as a local file
  (FFmpeg reports its duration): watched once, sampled in video time, like a video file; a
  video file at a URL is watched the same way.
- Segment URLs need a known extension (``.ts``, ``.m4s``, ...; a query string after it is fine)
  unless ``OPENCV_FFMPEG_CAPTURE_OPTIONS=extension_picky;0`` is set (the variable's name is
  OpenCV's, kept from when OpenCV read the streams).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from test_watch_live import wait_for

from agent.bench.clips import Appearance, write_clip
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.pipeline.stats import WatchSummary
from agent.pipeline.watch import run_watch
from agent.sources import grab_frame, open_recording, probe_source
from memory.observation import Observation
from memory.store import Store
from tools.vision.base import VisionRequest
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

SEGMENT_S = 0.5
CHANGE_S = 3.0
SEGMENTS = 80  # 40 s of stream: the live clock stops growing the playlist after that
VOD_SEGMENTS = 10
LIVE_START = 3  # segments a live playlist lists from the start
LIVE_WINDOW = 5  # segments a live playlist lists at most
RED = "a red box in the middle of the scene"


def write_segments(folder: Path) -> Path:
    """The clip cut into ``SEGMENTS`` .ts files and a VOD playlist of the first ``VOD_SEGMENTS``."""
    folder.mkdir()
    for k in range(SEGMENTS):
        start = k * SEGMENT_S
        box = (Appearance(0.0, SEGMENT_S),) if start >= CHANGE_S else ()
        write_clip(folder / f"seg{k}.ts", duration_s=SEGMENT_S, appearances=box, seed=k)
    (folder / "vod.m3u8").write_text(playlist(0, VOD_SEGMENTS, ended=True))
    for k in range(2):  # the same segments at URLs without an extension
        (folder / f"seg{k}").write_bytes((folder / f"seg{k}.ts").read_bytes())
    (folder / "no-extension.m3u8").write_text(playlist(0, 2, ended=True, suffix=""))
    (folder / "query.m3u8").write_text(playlist(0, 2, ended=True, suffix=".ts?token=a1"))
    return folder


def playlist(first: int, end: int, *, ended: bool, suffix: str = ".ts") -> str:
    """A media playlist of segments ``first`` to ``end - 1``; ``ended`` adds #EXT-X-ENDLIST."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    for k in range(first, end):
        lines += [f"#EXTINF:{SEGMENT_S:.3f},", f"seg{k}{suffix}"]
    return "\n".join([*lines, "#EXT-X-ENDLIST"] if ended else lines) + "\n"


class HlsServer(ThreadingHTTPServer):
    """Serves the segment folder on 127.0.0.1, and ``/live.m3u8``: a live window over the clock.

    ``t0`` is when the live stream began: a server started again with the same ``t0`` goes on
    where the stream is by then, as a camera does after a network outage.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, folder: Path, port: int = 0, t0: float | None = None) -> None:
        super().__init__(("127.0.0.1", port), partial(_HlsHandler, directory=str(folder)))
        self.t0 = time.time() if t0 is None else t0
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"

    def published(self, k: int) -> float:
        """When live segment ``k`` is first listed (epoch seconds)."""
        return self.t0 + max(0, k - LIVE_START + 1) * SEGMENT_S

    def live_playlist(self) -> str:
        end = min(SEGMENTS, LIVE_START + int((time.time() - self.t0) / SEGMENT_S))
        return playlist(max(0, end - LIVE_WINDOW), end, ended=False)

    def stop(self) -> None:
        """Stop serving and close the port."""
        self.shutdown()
        self.server_close()


class _HlsHandler(SimpleHTTPRequestHandler):
    server: HlsServer

    def log_message(self, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path != "/live.m3u8":
            super().do_GET()
            return
        body = self.server.live_playlist().encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.apple.mpegurl")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def is_recording(url: str, timeout_s: float = 10.0) -> bool:
    """Whether :func:`open_recording` takes ``url`` for a recording (its reader closed)."""
    opened = open_recording(url, timeout_s)
    if opened is not None:
        opened.close()
    return opened is not None


def box_at_centre(rgb: np.ndarray) -> bool:
    """Whether the clip's red box covers the centre of an RGB frame."""
    red, green, blue = rgb[rgb.shape[0] // 2, rgb.shape[1] // 2].astype(int)
    return red > 180 and green < 80 and blue < 80


def sees_red(request: VisionRequest) -> str:
    """The scripted model: the red box when it covers the centre of the frame."""
    red_box = box_at_centre(np.asarray(request.images[-1].convert("RGB")))
    return json.dumps({"summary": RED if red_box else "an empty textured scene", "people": 0})


@contextmanager
def watching(spec: str, settings: Settings, store: Store) -> Iterator[list[WatchSummary]]:
    """A watch of ``spec`` in a thread with the scripted model; stopped and joined on exit."""
    result: list[WatchSummary] = []
    stop = threading.Event()
    with Engine(ScriptedBackend(sees_red)) as engine:
        watcher = threading.Thread(
            target=lambda: result.append(run_watch([spec], settings, engine=engine, store=store, stop=stop))
        )
        watcher.start()
        try:
            yield result
        finally:
            stop.set()
            watcher.join(20)
    assert not watcher.is_alive()


def red_from(rows: list[Observation]) -> int:
    """The index of the first observation of the red box; every later one sees it too."""
    seen = [o.summary == RED for o in rows]
    assert seen == sorted(seen), [o.summary for o in rows]
    assert True in seen and False in seen
    return seen.index(True)


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_segments(tmp_path_factory.mktemp("hls") / "segments")


def live_settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home", every_s=0.2, heartbeat_s=0.5, reconnect_max_s=0.4, stream_timeout_s=2.0
    )


def test_a_live_playlist_is_watched_through_a_server_outage(
    segments: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = HlsServer(segments)
    port, t0, url = server.server_address[1], server.t0, server.url("live.m3u8")
    probe_source(url)
    assert grab_frame(url, timeout_s=2.0).shape == (240, 320, 3)
    settings = live_settings(tmp_path)
    store = Store(settings.db_path)
    try:
        with watching(url, settings, store) as result:
            wait_for(lambda: [o.summary for o in store.between()].count(RED) >= 2, 20, "the red box")
            server.stop()
            outage = time.time()
            wait_for(lambda: "reconnect attempt 2" in caplog.text, 10, "reconnect attempts")
            server = HlsServer(segments, port, t0)
            restarted = time.time()
            wait_for(lambda: len(store.between(since=restarted)) >= 3, 10, "observations after the restart")
    finally:
        server.stop()
    summary = result[0]
    rows = store.between(source=url)
    assert len(rows) == summary.analysed == summary.sources[url].analysed
    first_red = rows[red_from(rows)]
    # Not seen before the server listed its segment, and within a reload or two after.
    change = server.published(round(CHANGE_S / SEGMENT_S))
    assert change <= first_red.ts < change + 2.0
    assert f"{url}: lost the stream; reconnect attempt 1" in caplog.text
    assert f"{url}: cannot connect; reconnect attempt 2" in caplog.text
    assert any(o.ts < outage for o in rows) and any(o.ts > restarted for o in rows)
    assert all(o.video_t is None for o in rows)  # live: ts is the capture time
    assert [o.ts for o in rows] == sorted(o.ts for o in rows)
    assert store.execute("PRAGMA integrity_check")[0][0] == "ok"


@pytest.mark.parametrize("name", ["vod.m3u8", "clip.mp4"])
def test_a_recording_at_a_url_is_watched_once_in_video_time(
    segments: Path, tmp_path: Path, name: str
) -> None:
    """A VOD playlist, and a video file served over HTTP: watched to their end, in video time."""
    write_clip(
        segments / "clip.mp4", duration_s=VOD_SEGMENTS * SEGMENT_S, appearances=(Appearance(CHANGE_S, 99.0),)
    )
    server = HlsServer(segments)
    url = server.url(name)
    try:
        assert is_recording(url) and not is_recording(server.url("live.m3u8"))
        assert box_at_centre(grab_frame(url, CHANGE_S + 0.1, timeout_s=2.0)[..., ::-1])
        settings = Settings(home=tmp_path / "home", every_s=SEGMENT_S / 5, gate_threshold=0.0)
        store = Store(settings.db_path)
        with Engine(ScriptedBackend(sees_red)) as engine:
            summary = run_watch([url], settings, engine=engine, store=store)  # ends by itself
    finally:
        server.stop()
    rows = store.between(source=url)
    frames = VOD_SEGMENTS * 5
    assert not summary.errors and len(rows) == frames  # read once: no replay
    assert [o.video_t for o in rows] == pytest.approx([k * SEGMENT_S / 5 for k in range(frames)])
    assert rows[red_from(rows)].video_t == pytest.approx(CHANGE_S)


def test_a_url_that_does_not_answer_is_not_a_recording() -> None:
    assert not is_recording("http://127.0.0.1:9/clip.mp4", timeout_s=1.0)
    assert not is_recording("rtsp://127.0.0.1:9/stream")


def test_a_local_vod_playlist_is_watched_in_video_time(segments: Path, tmp_path: Path) -> None:
    spec = str(segments / "vod.m3u8")
    probe_source(spec)
    settings = Settings(home=tmp_path / "home", every_s=SEGMENT_S, heartbeat_s=SEGMENT_S)
    store = Store(settings.db_path)
    with Engine(ScriptedBackend(sees_red)) as engine:
        summary = run_watch([spec], settings, engine=engine, store=store)
    rows = store.between(source=spec)
    assert not summary.errors and len(rows) == VOD_SEGMENTS
    assert [o.video_t for o in rows] == [k * SEGMENT_S for k in range(VOD_SEGMENTS)]
    assert rows[red_from(rows)].video_t == CHANGE_S


def test_segments_at_urls_without_an_extension_need_extension_picky_off(
    segments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyAV's FFmpeg (libavformat 62) refuses a segment whose URL has no known extension.

    Its hls demuxer checks the segment URL's extension ("URL ... is not in
    allowed_segment_extensions"): the stream does not open, though the server answered.
    Query strings after ``.ts`` are fine. FFmpeg's ``extension_picky`` option turns the check off.
    """
    server = HlsServer(segments)
    url = server.url("no-extension.m3u8")
    try:
        assert grab_frame(server.url("query.m3u8"), timeout_s=2.0).shape == (240, 320, 3)
        with pytest.raises(ScenewatchError, match=r"connected to .*, but what came was not video"):
            grab_frame(url, timeout_s=2.0)
        monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "extension_picky;0")
        assert grab_frame(url, timeout_s=2.0).shape == (240, 320, 3)
    finally:
        server.stop()
