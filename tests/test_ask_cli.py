"""``scenewatch ask`` and ``chat`` on the tiny checkpoint: the real path, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.assistant.agent import open_assistant
from agent.core.config import load_settings
from memory.indexer import reindex
from memory.observation import Observation
from memory.store import Store
from memory.vectors import open_vectors
from tools.vision.base import VisionRequest, VisionResult
from tools.vision.engine import Engine
from tools.vision.local import LocalQwenBackend

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]
SUMMARIES = ["an empty shop floor", "a courier leaves a parcel by the door", "the parcel lies by the door"]


def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, timeout=180, env={**os.environ, **env}
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A watched database: three observations of a video file, indexed."""
    settings = load_settings(db=tmp_path_factory.mktemp("asked") / "scenewatch.db")
    store = Store(settings.db_path)
    start = time.time() - 60
    for index, summary in enumerate(SUMMARIES):
        store.add(
            Observation(source="shop.mp4", ts=start + 10 * index, video_t=10.0 * index, summary=summary)
        )
    with open_vectors(store, settings) as vectors:
        reindex(vectors)
    store.close()
    return settings.db_path


class Spy:
    """A backend that records each request before the real one answers it."""

    def __init__(self, backend: LocalQwenBackend) -> None:
        self.backend, self.model_name = backend, backend.model_name
        self.requests: list[VisionRequest] = []

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        self.requests += requests
        return self.backend.generate(requests)


def test_the_tiny_model_gets_the_window_and_the_recalled_observations(
    db: Path, tiny_checkpoint: Path
) -> None:
    settings = load_settings(db=db, model=str(tiny_checkpoint), device="cpu", agent_max_new_tokens=8)
    spy = Spy(LocalQwenBackend(str(tiny_checkpoint), device="cpu", max_new_tokens=8))
    with Engine(spy) as engine, open_assistant(settings, engine=engine) as assistant:
        answer = assistant.ask("where is the parcel?")
    assert answer
    request = spy.requests[0]
    system, question = request.messages[0], request.messages[-1]
    assert system["role"] == "system" and "Cite the time of every observation" in system["content"]
    assert "Latest observations" not in system["content"]  # scene text never joins the system prompt
    assert question["role"] == "user" and question["content"].endswith("Question: where is the parcel?")
    window = question["content"].split('Latest observations of "shop.mp4" (oldest first):')[1]
    assert all(f'(video 0:{10 * i:02d}.0): "{summary}"' in window for i, summary in enumerate(SUMMARIES))
    recalled = window.split("Observations recalled for the question (oldest first):")[1]
    assert '["shop.mp4"] (match' in recalled and "the parcel lies by the door" in recalled
    names = {tool["function"]["name"] for tool in request.tools}
    assert names == {"look", "compare", "recall", "timeline", "narrate", "troubleshoot", "read_text", "watch"}
    assert engine.stats.requests == 1


def test_scenewatch_ask_on_the_tiny_model(db: Path, tiny_checkpoint: Path) -> None:
    done = run("ask", "what changed?", "--model", str(tiny_checkpoint), "--db", str(db), "--show-context")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert '(video 0:20.0): "the parcel lies by the door"' in done.stderr
    assert "Observations recalled for the question" in done.stderr


def test_scenewatch_chat_reads_questions_line_by_line(db: Path, tiny_checkpoint: Path) -> None:
    done = run(
        "chat",
        "--model",
        str(tiny_checkpoint),
        "--db",
        str(db),
        "--max-new-tokens",
        "4",
        "--thread",
        "shop",
        stdin="is the door open?\n\nwho came?\n/exit\nnever asked\n",
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) >= 2  # one answer a question (the tiny model may add lines)
    conversations = Path(os.environ["SCENEWATCH_HOME"]) / "conversations.db"
    assert conversations.is_file()


def test_errors_are_one_line(tmp_path: Path, db: Path) -> None:
    Store(tmp_path / "empty.db").close()
    empty = run("ask", "anything?", "--db", str(tmp_path / "empty.db"))
    assert empty.returncode == 1 and "no observations in" in empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1
    down = run(
        "ask",
        "anything?",
        "--db",
        str(db),
        "--backend",
        "openai",
        "--model",
        "qwen3-vl",
        SCENEWATCH_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        SCENEWATCH_OPENAI_RETRIES="0",
    )
    assert (
        down.returncode == 1 and "cannot reach the chat model server at http://127.0.0.1:9/v1" in down.stderr
    )
    assert "Traceback" not in down.stderr
