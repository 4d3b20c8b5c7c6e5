"""``scenewatch recall``, ``timeline``, ``narrate`` and ``memory`` (reindex, stats, prune)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import UseBackend
from langchain_core.embeddings import DeterministicFakeEmbedding
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.config import load_settings
from agent.core.errors import ScenewatchError
from memory.episodes import EpisodeTracker, episodes_between
from memory.observation import Observation
from memory.store import Store
from memory.vectors import VectorIndex
from tools.vision.scripted import ScriptedBackend

runner = CliRunner()
NOW = time.time()
OLD = [  # 40 days ago
    "A courier leaves a parcel on the doorstep.",
    "A courier rings the bell with a parcel.",
    "A fox crosses the empty garden at night.",
]
RECENT = [  # the last few minutes
    "A woman in a green coat waits at the door.",
    "A red car parks in front of the garage.",
    "Two children play football on the lawn.",
]


@pytest.fixture
def home(scratch_home: Path) -> Path:
    """A store with old and recent observations (thumbnails on disk, episodes), then indexed."""
    settings = load_settings()
    store = Store(settings.db_path)
    tracker = EpisodeTracker(store, settings, embeddings=DeterministicFakeEmbedding(size=16))
    for n, (ts, summary) in enumerate(
        [(NOW - 40 * 86400 + 60 * i, text) for i, text in enumerate(OLD)]
        + [(NOW - 300 + 60 * i, text) for i, text in enumerate(RECENT)]
    ):
        thumb = settings.thumbs_dir / "cam" / f"{n}.jpg"
        thumb.parent.mkdir(parents=True, exist_ok=True)
        thumb.write_bytes(b"jpeg")
        obs = Observation(source="cam", ts=ts, summary=summary, people=1, thumb_path=str(thumb))
        store.add(obs)
        tracker.on_observation(obs)
    tracker.close()
    store.close()
    result = runner.invoke(app, ["memory", "reindex"])
    assert result.exit_code == 0, result.output
    assert "reindexed 6 observations" in result.output
    return scratch_home


def _json(args: list[str]) -> object:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_recall_within_a_time_range(home: Path) -> None:
    found = _json(["recall", "a parcel delivery", "--json", "-k", "2"])
    assert [item["summary"] for item in found] == OLD[:2]
    recent = _json(["recall", "a parcel delivery", "--since", "1h", "--json"])
    assert {item["summary"] for item in recent} == set(RECENT)
    assert all(item["ts"] >= NOW - 3600 for item in recent)
    table = runner.invoke(app, ["recall", "someone waiting at the door", "--since", "1h"])
    assert table.exit_code == 0 and "green coat" in table.output
    assert _json(["recall", "anything", "--since", "2h", "--until", "1h", "--json"]) == []


def test_timeline_and_stats(home: Path) -> None:
    entries = _json(["timeline", "--since", "1h", "--json"])
    assert [entry["text"] for entry in entries] == RECENT and {e["kind"] for e in entries} == {"episode"}
    table = runner.invoke(app, ["timeline", "--since", "1h"])
    assert table.exit_code == 0 and "red car" in table.output
    stats = _json(["memory", "stats", "--json"])
    assert (stats["observations"], stats["indexed"], stats["unindexed"], stats["vectors"]) == (6, 6, 0, 6)
    assert stats["sources"] == {"cam": 6} and stats["episodes"] == 6 and stats["thumbs_bytes"] == 24


def test_prune_removes_rows_thumbnails_and_vectors_together(home: Path) -> None:
    settings = load_settings()
    declined = runner.invoke(app, ["memory", "prune", "--older-than", "30d"], input="n\n")
    assert declined.exit_code == 0 and "nothing removed" in declined.output
    result = runner.invoke(app, ["memory", "prune", "--older-than", "30d", "--yes"])
    assert result.exit_code == 0, result.output
    assert "removed 3 observations, 3 vectors, 3 thumbnails and 3 episodes" in result.output
    store = Store(settings.db_path)
    assert [obs.summary for obs in store.between()] == RECENT
    assert sorted(p.name for p in (settings.thumbs_dir / "cam").iterdir()) == ["3.jpg", "4.jpg", "5.jpg"]
    assert len(episodes_between(store)) == 3
    index = VectorIndex(store, settings)
    assert index.count() == 3
    assert {item.summary for item in index.recall("a parcel", k=10)} == set(RECENT)
    index.close()
    store.close()
    again = runner.invoke(app, ["memory", "prune", "--older-than", "30d", "--yes"])
    assert "nothing observed before" in again.output


def test_narrate_tells_the_range_through_the_model(
    home: Path, monkeypatch: pytest.MonkeyPatch, use_backend: UseBackend
) -> None:
    backend = ScriptedBackend(default="A woman waited, a car parked, children played.")
    use_backend(backend)
    result = runner.invoke(app, ["narrate", "--since", "1h", "--source", "cam"])
    assert result.exit_code == 0, result.output
    assert "children played" in result.output
    prompt = backend.requests[0].messages[-1]["content"][-1]["text"]
    assert all(text in prompt for text in RECENT) and not any(text in prompt for text in OLD)


def test_narrate_an_empty_range_loads_no_model(home: Path) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M", time.localtime(NOW - 20 * 86400))
    until = time.strftime("%Y-%m-%dT%H:%M", time.localtime(NOW - 10 * 86400))
    for args in (["--since", "1m", "--source", "cam"], ["--since", since, "--until", until]):
        result = runner.invoke(app, ["narrate", *args, "--model", "no/such-model"])
        assert result.exit_code == 0, result.output
        assert "Nothing was observed" in result.output


def test_clear_errors(scratch_home: Path) -> None:
    missing = runner.invoke(app, ["recall", "anything"])
    assert isinstance(missing.exception, ScenewatchError) and "run `scenewatch watch` first" in str(
        missing.exception
    )
    Store(load_settings().db_path).close()
    backwards = runner.invoke(app, ["timeline", "--since", "1h", "--until", "2h"])
    assert isinstance(backwards.exception, ScenewatchError) and "--since is after --until" in str(
        backwards.exception
    )
    bad = runner.invoke(app, ["memory", "prune", "--older-than", "soon"])
    assert isinstance(bad.exception, ScenewatchError)
