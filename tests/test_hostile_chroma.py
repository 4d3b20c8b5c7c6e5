"""A Chroma server that accepts connections and never answers (issue 12, item 3): every call gives
up after ``SCENEWATCH_CHROMA_TIMEOUT_S`` and takes the path of a server that is down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import SilentServer
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.config import load_settings
from agent.core.errors import ScenewatchError
from memory.indexer import Indexer
from memory.observation import Observation
from memory.store import Store
from memory.vectors import VectorIndex

runner = CliRunner()
TIMEOUT_S = 0.5
BOUND_S = 15.0  # far above the timeout: a call that waits for ever is caught, never hangs the suite


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    """A silent "Chroma server", named by SCENEWATCH_CHROMA_URL, with a short timeout."""
    with SilentServer() as server:
        monkeypatch.setenv("SCENEWATCH_CHROMA_URL", server.url)
        monkeypatch.setenv("SCENEWATCH_CHROMA_TIMEOUT_S", f"{TIMEOUT_S * 1000:.0f}ms")
        yield server


def within(seconds: float, call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    """Run ``call`` on a thread; the exception it raised and how long it took (fails if it runs on)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds}s"
    return outcome[0], time.monotonic() - started


def test_the_timeout_is_a_setting() -> None:
    assert load_settings().chroma_timeout_s == 10.0
    assert load_settings(chroma_timeout_s="1m").chroma_timeout_s == 60.0
    with pytest.raises(ScenewatchError, match="SCENEWATCH_CHROMA_TIMEOUT_S"):
        load_settings(chroma_timeout_s="inf")


def test_opening_the_index_gives_up_like_on_a_server_that_is_down(silent: SilentServer) -> None:
    settings = load_settings()
    store = Store(settings.db_path)
    for make in (lambda: VectorIndex(store, settings), lambda: Indexer(store, settings)):
        error, took = within(BOUND_S, make)
        assert isinstance(error, ScenewatchError), error
        assert str(error) == (
            f"cannot open the vector index at {silent.url}: "
            f"no answer within {TIMEOUT_S:g}s (SCENEWATCH_CHROMA_TIMEOUT_S)"
        )
        assert took < TIMEOUT_S * 6
    assert silent.accepted  # the client did connect: the server is silent, not down
    store.close()


@pytest.mark.timeout(60)  # the commands run on the main thread (watch handles signals): bounded here
def test_recall_and_watch_end_with_the_error(silent: SilentServer, synthetic_clip: Path) -> None:
    store = Store(load_settings().db_path)
    store.add(Observation(source="cam", ts=time.time() - 60, summary="a parcel on the doorstep"))
    store.close()
    for args in (["recall", "a parcel"], ["memory", "stats"], ["watch", str(synthetic_clip)]):
        started = time.monotonic()
        result = runner.invoke(app, args)
        assert isinstance(result.exception, ScenewatchError), (args, result.output)
        assert f"cannot open the vector index at {silent.url}: no answer within" in str(result.exception)
        assert time.monotonic() - started < BOUND_S
    store = Store(load_settings().db_path)
    assert store.count() == 1 and store.unindexed_count() == 1  # nothing lost, nothing watched
    store.close()
