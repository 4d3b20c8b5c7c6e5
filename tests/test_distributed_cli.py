"""``scenewatch capture``, ``worker`` and ``record`` as processes: their help and errors, and the issue's
check: a real redis-server, the recorder, two workers against a local OpenAI-compatible server (as
with vLLM, docs/DEPLOY.md), capture of two clips, one worker killed with SIGKILL mid-batch; every
gated frame ends as exactly one observation."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers import FakeServer
from typer.testing import CliRunner

from agent.bench.clips import Appearance, write_clip
from agent.bench.redis_server import ScratchRedis as RedisServer
from agent.bench.redis_server import free_port
from agent.cli.app import app
from agent.core.errors import ScenewatchError

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]
ANSWER = '{"summary": "a box in view", "people": 0, "objects": ["box"], "answers": {"q1": true}}'


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("capture", ("--redis", "--every", "--heartbeat", "--threshold", "--max-side", "--json")),
        (
            "worker",
            ("--redis", "--backend", "--model", "--batch-size", "--name", "--claim-idle", "--max-deliveries"),
        ),
        ("record", ("--redis", "--db", "--rules", "--question", "--window", "--json")),
    ],
)
def test_help_lists_the_options(command: str, options: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    for option in options:
        assert option in result.output


def test_without_a_redis_url_or_a_server_the_error_is_one_line(synthetic_clip: Path) -> None:
    result = CliRunner().invoke(app, ["record"])
    assert isinstance(result.exception, ScenewatchError) and "give --redis URL" in str(result.exception)
    url = f"redis://127.0.0.1:{free_port()}/0"
    for args in (["worker", "--redis", url], ["capture", str(synthetic_clip), "--redis", url]):
        result = CliRunner().invoke(app, args)
        assert isinstance(result.exception, ScenewatchError)
        assert f"cannot reach Redis at {url}" in str(result.exception)


@pytest.fixture
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    return [
        write_clip(folder / "door.mp4", duration_s=16.0, appearances=(Appearance(3.0, 8.0),)),
        write_clip(folder / "yard.mp4", duration_s=16.0, appearances=(Appearance(6.0, 12.0),)),
    ]


class Processes:
    """The processes a test started, each stopped at the end (SIGTERM, then SIGKILL)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen([*CLI, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.started[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes({**os.environ}, tmp_path)
    yield started
    started.stop_all()


def _wait(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_workers_one_killed_mid_batch_every_gated_frame_stored_once(
    tmp_path: Path, clips: list[Path], processes: Processes
) -> None:
    server = RedisServer(tmp_path / "redis")
    model_server = FakeServer(content=ANSWER, delay=1.0)
    try:
        db = tmp_path / "obs.db"
        processes.env.update(
            SCENEWATCH_HOME=str(tmp_path / "home"),
            SCENEWATCH_REDIS_URL=server.url,
            SCENEWATCH_OPENAI_BASE_URL=model_server.url,
            SCENEWATCH_BACKEND="openai",
            SCENEWATCH_DETECTOR="false",  # the change gate alone: the detector has a test of its own
        )
        client = redis.Redis.from_url(server.url)
        processes.start("record", "record", "--db", str(db), "-q", "Is there a box?")
        workers = ("doomed", "survivor")
        for name in workers:
            processes.start(name, "worker", "--name", name, "--batch-size", "4", "--claim-idle", "1s")
        _wait(lambda: _consumers(client) >= set(workers), "both workers to join the group")
        capture = subprocess.Popen(
            [*CLI, "capture", *map(str, clips), "--every", "500ms", "--heartbeat", "4s", "--json"],
            env=processes.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _wait(lambda: _held(client, "doomed") > 0, "the doomed worker to hold a batch")
        processes.started["doomed"].send_signal(signal.SIGKILL)  # mid-batch: its answers are not in yet
        processes.started["doomed"].wait(10)
        out, err = capture.communicate(timeout=120)
        assert capture.returncode == 0, err.decode()[-2000:]
        report = json.loads(out)
        gated = report["gated"]
        assert gated == report["sent"] >= 8 and report["dropped"] == 0
        assert {Path(name).name for name in report["sources"]} == {"door.mp4", "yard.mp4"}
        _wait(lambda: _count(db) >= gated, f"{gated} observations")
        time.sleep(0.5)  # a duplicate would land now
        rows = _rows(db)
        assert len(rows) == gated
        assert len({(source, video_t) for source, video_t, _ in rows}) == gated
        assert len({frame_id for _, _, frame_id in rows}) == gated
        assert client.xlen("scenewatch:dead") == 0 and client.xlen("scenewatch:frames") == 0
        assert "taken over" not in processes.log("doomed")  # it died without a word
        processes.stop_all()
        assert processes.started["survivor"].returncode == 0, processes.log("survivor")[-2000:]
        assert processes.started["record"].returncode == 0, processes.log("record")[-2000:]
        survivor = processes.log("survivor")
        assert "taken over" in survivor and " 0 taken over" not in survivor
        assert all("q1: Is there a box?" in json.dumps(body) for body in model_server.bodies)
    finally:
        processes.stop_all()
        model_server.close()
        server.stop()


def test_the_issue_check_two_detector_workers_one_killed(
    tmp_path: Path, clips: list[Path], processes: Processes
) -> None:
    """The issue's check as written: the detector backend, one worker killed a few seconds in."""
    server = RedisServer(tmp_path / "redis")
    try:
        db = tmp_path / "obs.db"
        processes.env.update(SCENEWATCH_HOME=str(tmp_path / "home"), SCENEWATCH_REDIS_URL=server.url)
        client = redis.Redis.from_url(server.url)
        processes.start("record", "record", "--db", str(db))
        workers = ("doomed", "survivor")
        for name in workers:
            processes.start(name, "worker", "--backend", "detector", "--name", name, "--claim-idle", "1s")
        _wait(lambda: _consumers(client) >= set(workers), "both workers to join the group")
        capture = subprocess.Popen(
            [*CLI, "capture", *map(str, clips), "--every", "250ms", "--json"],
            env=processes.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _wait(lambda: _count(db) > 0 or capture.poll() is not None, "the first observation")
        time.sleep(2.0)  # a few seconds in
        processes.started["doomed"].send_signal(signal.SIGKILL)
        out, err = capture.communicate(timeout=120)
        assert capture.returncode == 0, err.decode()[-2000:]
        report = json.loads(out)
        gated = report["gated"]
        assert gated == report["sent"] > 0 and report["dropped"] == 0
        _wait(lambda: _count(db) >= gated, f"{gated} observations")
        time.sleep(0.5)  # a duplicate would land now
        rows = _rows(db)
        assert len(rows) == gated
        assert len({(source, video_t) for source, video_t, _ in rows}) == gated
        assert client.xlen("scenewatch:dead") == 0
        with sqlite3.connect(db) as conn:
            models = {row[0] for row in conn.execute("SELECT DISTINCT model FROM observations")}
            assert (
                conn.execute("SELECT COUNT(*) FROM observations WHERE detections IS NULL").fetchone()[0] == 0
            )
        assert models == {"detector:ssd-mobilenet-v2-coco"}
    finally:
        processes.stop_all()
        server.stop()


def _consumers(client: redis.Redis) -> set[str]:
    try:
        return {entry["name"].decode() for entry in client.xinfo_consumers("scenewatch:frames", "workers")}
    except redis.ResponseError:  # no group yet
        return set()


def _held(client: redis.Redis, consumer: str) -> int:
    return len(client.xpending_range("scenewatch:frames", "workers", "-", "+", 100, consumername=consumer))


def _rows(db: Path) -> list[tuple[str, float, str]]:
    if not db.is_file():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT source, video_t, frame_id FROM observations").fetchall()


def _count(db: Path) -> int:
    try:
        return len(_rows(db))
    except sqlite3.OperationalError:  # the recorder is creating the table
        return 0
