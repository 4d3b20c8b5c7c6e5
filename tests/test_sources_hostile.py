"""Sources against hostile input: endless timeouts, servers that never answer or send garbage, Ctrl-C
while a stream hangs, GIFs in a folder.

Every server here listens on 127.0.0.1 on a free port, serves a bounded number of connections for a
bounded time, and is closed at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from agent.core.config import Settings, load_settings
from agent.core.errors import ScenewatchError
from agent.pipeline.watch import run_watch
from agent.sources import LiveSource, grab_frame, open_source, probe_source
from memory.store import Store
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]
SECONDS_FIELDS = [name for name in Settings.model_fields if name.endswith("_s")]
MJPEG_HEADER = b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"


@contextmanager
def tcp_server(handle: Callable[[socket.socket], None], connections: int = 8) -> Iterator[int]:
    """A server on 127.0.0.1 that runs ``handle`` on each of its first ``connections``; its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(connections)
    clients: list[socket.socket] = []

    def serve() -> None:
        for _ in range(connections):
            try:
                client, _ = server.accept()
            except OSError:
                return
            clients.append(client)
            threading.Thread(target=_quietly, args=(handle, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        for client in clients:
            client.close()


def _quietly(handle: Callable[[socket.socket], None], client: socket.socket) -> None:
    with suppress(OSError):
        handle(client)


def silent(client: socket.socket) -> None:
    """Accepts, never says a word (for at most 30 s)."""
    client.recv(4096)
    time.sleep(30)


def garbage(client: socket.socket) -> None:
    """Answers 200, then random bytes, for at most 10 s."""
    client.recv(4096)
    client.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
    rng = np.random.default_rng(0)
    until = time.monotonic() + 10
    while time.monotonic() < until:
        client.sendall(rng.integers(0, 256, 256 * 1024, dtype=np.uint8).tobytes())


def web_page(client: socket.socket) -> None:
    client.recv(4096)
    client.sendall(
        b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body>a camera's login page</body></html>"
    )


def stalls_after(frames: int) -> Callable[[socket.socket], None]:
    """An MJPEG stream that sends ``frames`` frames, then nothing (for at most 30 s)."""

    def handle(client: socket.socket) -> None:
        client.recv(4096)
        jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8))[1].tobytes()
        client.sendall(MJPEG_HEADER)
        for _ in range(frames):
            part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
            client.sendall(part + jpeg + b"\r\n")
            time.sleep(0.04)
        time.sleep(30)

    return handle


@pytest.mark.parametrize("name", SECONDS_FIELDS)
@pytest.mark.parametrize("text", ["inf", "1e12", "8d"])
def test_endless_durations_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, text: str
) -> None:
    """Every duration setting is bounded: at most a week, less where a field says so."""
    monkeypatch.setenv(f"SCENEWATCH_{name.upper()}", text)
    problem = "(must be a finite number|must be at most a week|Input should be less than or equal to)"
    with pytest.raises(
        ScenewatchError, match=rf"^invalid setting: {name} \(SCENEWATCH_{name.upper()}\): {problem}"
    ):
        load_settings()


def test_an_endless_stream_timeout_stops_the_watch_before_it_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "watch", "http://127.0.0.1:9/video.mjpg"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SCENEWATCH_STREAM_TIMEOUT_S": "inf"},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: invalid setting: stream_timeout_s (SCENEWATCH_STREAM_TIMEOUT_S): must be a finite number of "
        "seconds (got inf)"
    ]


def test_a_silent_rtsp_server_is_given_up_though_each_read_may_wait_long() -> None:
    """The longest timeout still lets the give-up time end the source, and close returns at once."""
    with tcp_server(silent) as port:
        url = f"rtsp://127.0.0.1:{port}/stream"
        source = LiveSource(url, name=url, every_s=0.2, reconnect_max_s=1, timeout_s=3600, give_up_s=1)
        started = time.monotonic()
        with pytest.raises(ScenewatchError, match=f"cannot connect to {url}: no frame in 1 s"):
            list(source.frames(threading.Event()))
        source.close()
        assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("handle", "says"),
    [(garbage, "application/octet-stream"), (web_page, "200 OK, text/html")],
)
def test_a_server_that_answers_with_no_video_is_reported_as_connected(
    tmp_path: Path, handle: Callable[[socket.socket], None], says: str
) -> None:
    with tcp_server(handle) as port:
        url = f"http://127.0.0.1:{port}/video.mjpg"
        with pytest.raises(
            ScenewatchError, match=f"^connected to {url}, but what came was not video .*{says}"
        ):
            grab_frame(url, timeout_s=2.0)
        settings = Settings(
            home=tmp_path / "home", stream_timeout_s=2.0, stream_give_up_s=1.0, reconnect_max_s=0.2
        )
        with Engine(ScriptedBackend(default="{}")) as engine:
            summary = run_watch([url], settings, engine=engine, store=Store(settings.db_path))
    error = summary.errors[url]
    assert error.startswith(f"connected to {url}, but what came was not video") and says in error
    assert "no frame in 1 s: check that the address is a video stream" in error
    assert "cannot connect" not in error


def test_each_retry_of_a_web_page_says_it_connected(caplog: pytest.LogCaptureFixture) -> None:
    with tcp_server(web_page) as port:
        url = f"http://127.0.0.1:{port}/video.mjpg"
        source = LiveSource(url, name=url, every_s=0.2, reconnect_max_s=0.2, timeout_s=2.0, give_up_s=0)
        stop = threading.Event()
        reading = threading.Thread(target=lambda: list(source.frames(stop)), daemon=True)
        reading.start()
        deadline = time.monotonic() + 20
        while source.reconnects < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        reading.join(5)
        source.close()
    assert source.reconnects >= 2 and source.problem is not None and source.problem.connected
    assert f"{url}: connected, but no video came; reconnect attempt 2" in caplog.text


def test_a_dead_address_still_says_cannot_connect() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ScenewatchError, match=r"^cannot connect to .*: connection refused"):
        grab_frame(f"http://127.0.0.1:{port}/video.mjpg", timeout_s=1.0)


def test_opening_a_silent_url_is_not_waited_for_once_stopping() -> None:
    with tcp_server(silent) as port:
        url = f"http://127.0.0.1:{port}/video.mjpg"
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        source = open_source(url, every_s=1.0, start_ts=0.0, timeout_s=20.0, stop=stop)
        took = time.monotonic() - started
        assert isinstance(source, LiveSource) and 0.3 <= took < 1.0
        assert list(source.frames(stop)) == []  # stopping: no reader started
        source.close()


def watch_process(url: str, home: Path) -> subprocess.Popen[str]:
    """``scenewatch watch URL`` with a model server that is not there (no frame ever reaches it)."""
    env = {
        **os.environ,
        "SCENEWATCH_HOME": str(home),
        "SCENEWATCH_BACKEND": "openai",
        "SCENEWATCH_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "SCENEWATCH_OPENAI_RETRIES": "0",
    }
    command = [*CLI, "watch", url, "--every", "200ms"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(("handle", "hang_s"), [(silent, 0.5), (stalls_after(25), 3.0)])
def test_a_second_ctrl_c_stops_a_watch_of_a_hanging_stream_at_once(
    tmp_path: Path, handle: Callable[[socket.socket], None], hang_s: float
) -> None:
    """A server that accepts and never sends (the watch is opening it), and one that stalls after a
    second of frames (the reader waits in a read): either way the watch ends within 2 s of the second
    SIGINT, with the summary and status 130, though FFmpeg would wait 10 s."""
    connected = threading.Event()

    def handle_and_tell(client: socket.socket) -> None:
        connected.set()
        handle(client)

    with tcp_server(handle_and_tell) as port:
        process = watch_process(f"http://127.0.0.1:{port}/video.mjpg", tmp_path / "home")
        try:
            assert connected.wait(120), "the watch never connected"
            time.sleep(hang_s)
            process.send_signal(signal.SIGINT)
            time.sleep(0.1)
            process.send_signal(signal.SIGINT)
            second = time.monotonic()
            out, err = process.communicate(timeout=30)
            took = time.monotonic() - second
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "sampled" in out
    assert took < 2.0, f"exited {took:.1f} s after the second SIGINT"


def test_gifs_in_a_folder_are_read(tmp_path: Path) -> None:
    """A GIF is one image (its first frame), read by Pillow whatever the OpenCV version."""
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((48, 64, 3), (255, 0, 0), np.uint8))
    frames = [Image.new("RGB", (64, 48), color) for color in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(folder / "b.gif", save_all=True, append_images=frames[1:], duration=100)
    (folder / "c.gif").write_bytes(b"GIF89a broken")
    probe_source(str(folder))
    source = open_source(str(folder), every_s=1.0, start_ts=0.0)
    images = [frame.image for frame in source.frames(threading.Event())]
    assert len(images) == 2 and source.unreadable == 1
    assert tuple(images[1][0, 0]) == (0, 0, 255)  # BGR of the GIF's first frame, red
    assert tuple(grab_frame(str(folder), 1.0)[0, 0]) == (0, 0, 255)
