"""``--db PATH`` on every command that reads the observation log, as on ``watch`` and ``ask``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.config import load_settings
from agent.core.errors import ScenewatchError
from memory.episodes import EpisodeTracker
from memory.observation import Observation
from memory.store import Store

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database outside SCENEWATCH_HOME with one observation (and its episode) an hour old."""
    path = tmp_path / "elsewhere" / "obs.db"
    store = Store(path)
    tracker = EpisodeTracker(store, load_settings(db=path), embeddings=DeterministicFakeEmbedding(size=16))
    obs = Observation(source="cam", ts=time.time() - 3600, summary="an empty porch")
    store.add(obs)
    tracker.on_observation(obs)
    tracker.close()
    store.close()
    return path


COMMANDS = {
    "timeline": (["timeline", "--since", "2h"], "an empty porch"),
    "recall": (["recall", "porch", "--since", "1m"], "no matching observations"),
    "narrate": (["narrate", "--since", "1m", "--model", "no/such-model"], "Nothing was observed"),
    "events": (["events"], "no events"),
    "events deliver": (["events", "deliver"], "delivered 0, failed 0"),
    "memory reindex": (["memory", "reindex"], "reindexed 1 observations"),
    "memory stats": (["memory", "stats"], "cam (1)"),
    "memory prune": (["memory", "prune", "--older-than", "30d", "--yes"], "nothing observed before"),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_db_option_reads_that_database(db: Path, name: str) -> None:
    args, said = COMMANDS[name]
    missing = runner.invoke(app, args).exception
    assert isinstance(missing, ScenewatchError) and "no observation database" in str(missing)
    result = runner.invoke(app, [*args, "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert said in result.output


def test_events_db_before_deliver(db: Path) -> None:
    result = runner.invoke(app, ["events", "--db", str(db), "deliver"])
    assert result.exit_code == 0, result.output
    assert "delivered 0, failed 0" in result.output


@pytest.mark.parametrize("command", [["ask", "who came?"], ["chat"]])
def test_ask_and_chat_resolve_the_source_in_that_database(db: Path, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--db", str(db), "--source", "porch.mp4"])
    assert isinstance(result.exception, ScenewatchError)
    assert f"no source porch.mp4 in {db} (sources: cam)" == str(result.exception)
