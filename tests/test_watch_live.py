"""Live sources: an MJPEG server that goes away and comes back, and a watch killed mid-stream."""

from __future__ import annotations

import json
import os
import signal
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import UseBackend
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.config import Settings
from agent.pipeline.stats import WatchSummary
from agent.pipeline.watch import run_watch
from memory.store import Store
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend


class MjpegServer(socketserver.ThreadingMixIn, HTTPServer):
    """Serves ``multipart/x-mixed-replace`` JPEG frames (a box moving on a gradient) on 127.0.0.1."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, fps: float = 15.0) -> None:
        super().__init__(("127.0.0.1", port), _MjpegHandler)
        self.fps = fps
        self.running = True
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/stream.mjpg"

    def start(self) -> MjpegServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop every open stream."""
        self.running = False
        self.shutdown()
        self.server_close()

    def frame(self, index: int) -> bytes:
        yy, xx = np.mgrid[0:120, 0:160]
        image = np.stack([xx * 255 // 160, yy * 255 // 120, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
        x = (index * 7) % 130
        image[40:80, x : x + 30] = (0, 0, 255)
        return cv2.imencode(".jpg", image)[1].tobytes()


class _MjpegHandler(BaseHTTPRequestHandler):
    server: MjpegServer

    def log_message(self, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        index = 0
        try:
            while self.server.running:
                jpeg = self.server.frame(index)
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                    + jpeg
                    + b"\r\n"
                )
                index += 1
                time.sleep(1 / self.server.fps)
        except OSError:
            return


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def dead_url() -> str:
    """A localhost stream URL where nothing listens."""
    server = MjpegServer()
    server.server_close()
    return server.url


def test_a_stream_that_goes_away_is_reconnected_past_the_give_up_time_and_nothing_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = MjpegServer().start()
    port, url = server.server_address[1], server.url
    settings = Settings(
        home=tmp_path / "home",
        every_s=0.2,
        heartbeat_s=0.5,
        reconnect_max_s=0.4,
        stream_timeout_s=2.0,
        stream_give_up_s=1.0,  # only for a source that never sent a frame
    )
    store = Store(settings.db_path)
    stop = threading.Event()
    result: list[WatchSummary] = []
    with Engine(ScriptedBackend(default='{"summary": "a red box", "people": 0}')) as engine:
        watcher = threading.Thread(
            target=lambda: result.append(run_watch([url], settings, engine=engine, store=store, stop=stop))
        )
        watcher.start()
        try:
            wait_for(lambda: store.count() >= 3, 30, "observations before the outage")
            server.stop()
            outage = time.time()
            wait_for(lambda: "reconnect attempt 2" in caplog.text, 30, "reconnect attempts")
            wait_for(lambda: time.time() - outage > 2.5, 5, "an outage longer than the give-up time")
            assert watcher.is_alive()
            server = MjpegServer(port).start()
            restarted = time.time()
            wait_for(lambda: len(store.between(since=restarted)) >= 3, 30, "observations after the restart")
        finally:
            stop.set()
            watcher.join(20)
            server.stop()
    assert not watcher.is_alive()
    summary = result[0]
    assert not summary.errors
    rows = store.between(source=url)
    assert len(rows) == summary.analysed == summary.sources[url].analysed
    assert any(o.ts < outage for o in rows) and any(o.ts > restarted for o in rows)
    assert all(o.video_t is None for o in rows)  # live: ts is the capture time
    assert [o.ts for o in rows] == sorted(o.ts for o in rows)
    assert store.execute("PRAGMA integrity_check")[0][0] == "ok"


def start_cli_watch(tiny_checkpoint: Path, folder: Path, *sources: str) -> subprocess.Popen[str]:
    """``scenewatch watch`` of ``sources`` with the tiny model, into folder/watch.db and watch.jsonl."""
    env = {**os.environ, "SCENEWATCH_HOME": str(folder / "home"), "SCENEWATCH_MAX_NEW_TOKENS": "8"}
    command = [sys.executable, "-c", "from agent.cli.app import main; main()", "watch", *sources]
    options = ["--model", str(tiny_checkpoint), "--device", "cpu", "--max-side", "64", "--every", "200ms"]
    options += ["--heartbeat", "500ms", "--db", str(folder / "watch.db")]
    options += ["--jsonl", str(folder / "watch.jsonl")]
    return subprocess.Popen(
        command + options, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def signal_after_observations(
    process: subprocess.Popen[str],
    jsonl: Path,
    count: int,
    signals: list[signal.Signals],
    within_s: float = 60,
) -> tuple[str, str]:
    """Once ``jsonl`` holds ``count`` lines, send ``signals`` 0.1 s apart; the output, by ``within_s``."""
    try:
        wait_for(
            lambda: jsonl.exists() and len(jsonl.read_text().splitlines()) >= count,
            120,
            f"{count} observations",
        )
        for index, sig in enumerate(signals):
            time.sleep(0.1 if index else 0)
            process.send_signal(sig)
        return process.communicate(timeout=within_s)
    finally:
        if process.poll() is None:
            process.kill()


def assert_consistent(db: Path, jsonl: Path) -> list[dict]:
    """The database is intact and holds the row of every JSONL line; the lines."""
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = dict(connection.execute("SELECT id, summary FROM observations").fetchall())
    finally:
        connection.close()
    assert all(rows.get(line["id"]) == line["summary"] for line in lines)
    return lines


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_killed_watch_leaves_a_consistent_complete_database(
    tiny_checkpoint: Path, tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    server = MjpegServer().start()
    try:
        process = start_cli_watch(tiny_checkpoint, tmp_path, server.url)
        out, err = signal_after_observations(process, tmp_path / "watch.jsonl", 3, [sig])
    finally:
        server.stop()
    assert process.returncode == status, err
    assert "Traceback" not in err
    assert "sampled" in out  # the summary was printed
    assert len(assert_consistent(tmp_path / "watch.db", tmp_path / "watch.jsonl")) >= 3


def test_a_second_sigint_stops_sooner_and_never_aborts(
    tiny_checkpoint: Path, synthetic_clip: Path, tmp_path: Path
) -> None:
    server = MjpegServer().start()
    try:
        for attempt in range(2):  # the second signal lands at a different moment each time
            folder = tmp_path / f"run{attempt}"
            process = start_cli_watch(tiny_checkpoint, folder, server.url, str(synthetic_clip))
            out, err = signal_after_observations(
                process, folder / "watch.jsonl", 1, [signal.SIGINT] * 2, within_s=30
            )
            assert process.returncode == 130, err
            assert "terminate called" not in err and "Traceback" not in err and "closed" not in err
            assert "sampled" in out  # the summary was printed
            assert assert_consistent(folder / "watch.db", folder / "watch.jsonl")
    finally:
        server.stop()


def test_a_watch_of_a_dead_url_with_no_give_up_keeps_retrying_until_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        home=tmp_path / "home", every_s=0.2, reconnect_max_s=0.2, stream_timeout_s=0.5, stream_give_up_s=0
    )
    stop = threading.Event()
    threading.Timer(2.5, stop.set).start()  # longer than the give-up time of the next test
    with Engine(ScriptedBackend(default="{}")) as engine:
        summary = run_watch([dead_url()], settings, engine=engine, store=Store(settings.db_path), stop=stop)
    assert summary.sampled == summary.analysed == 0 and not summary.errors
    assert "cannot connect; reconnect attempt 2" in caplog.text


def test_a_dead_url_is_given_up_and_the_other_sources_go_on(synthetic_clip: Path, tmp_path: Path) -> None:
    url = dead_url()
    settings = Settings(
        home=tmp_path / "home", reconnect_max_s=0.2, stream_timeout_s=0.5, stream_give_up_s=1.0
    )
    store = Store(settings.db_path)
    started = time.monotonic()
    with Engine(ScriptedBackend(default="{}")) as engine:
        alone = run_watch([url], settings, engine=engine, store=store)
        took = time.monotonic() - started
        both = run_watch([url, str(synthetic_clip)], settings, engine=engine, store=store)
    assert took < 5 and alone.fruitless
    assert alone.errors[url].startswith(f"cannot connect to {url}: no frame in 1 s; check the address")
    assert "SCENEWATCH_STREAM_GIVE_UP_S=0" in alone.errors[url]
    assert list(both.errors) == [url] and not both.fruitless
    assert both.sources[str(synthetic_clip)].analysed == store.count() > 0


def test_the_cli_fails_when_every_source_was_given_up(
    synthetic_clip: Path, monkeypatch: pytest.MonkeyPatch, use_backend: UseBackend
) -> None:
    monkeypatch.setenv("SCENEWATCH_STREAM_GIVE_UP_S", "1")
    use_backend(ScriptedBackend(default="{}"))
    url = dead_url()
    alone = CliRunner().invoke(app, ["watch", url])
    assert alone.exit_code == 1 and "no frame in 1 s" in alone.output
    with_a_file = CliRunner().invoke(app, ["watch", url, str(synthetic_clip), "--heartbeat", "1m"])
    assert with_a_file.exit_code == 0 and "no frame in 1 s" in with_a_file.output
