"""``--source`` as people type it: a base name, a relative or absolute path, a URL (resolve_source)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from helpers import FROZEN_NOW
from langchain_core.embeddings import DeterministicFakeEmbedding
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.config import load_settings
from agent.core.durations import clock
from agent.core.errors import ScenewatchError
from agent.sources import SourceReader, resolve_source
from memory.episodes import EpisodeTracker
from memory.events import NewEvent, Outbox
from memory.observation import Observation
from memory.store import Store

runner = CliRunner()
NOW = FROZEN_NOW  # every test here runs on the frozen clock (the store fixture asks for it)
TODAY = NOW - 120  # within the default --since 10m
YESTERDAY = TODAY - 86400


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frozen_clock: float) -> Iterator[Store]:
    """Observations of a file stored absolute, one stored relative (an older database), a stream,
    two files of one name; an event today, one yesterday, one of a source whose rows were pruned."""
    monkeypatch.chdir(tmp_path)
    clip = tmp_path / "clips" / "shop.mp4"
    clip.parent.mkdir()
    clip.touch()
    settings = load_settings()
    store = Store(settings.db_path)
    tracker = EpisodeTracker(store, settings, embeddings=DeterministicFakeEmbedding(size=16))
    for index, source in enumerate([str(clip), "old/yard.mp4", "rtsp://cam/1", "/a/door.mp4", "/b/door.mp4"]):
        obs = Observation(source=source, ts=NOW - 100 + index, summary=f"scene {index}")
        store.add(obs)
        tracker.on_observation(obs)
    tracker.close()
    events = [(TODAY, str(clip), "today"), (YESTERDAY, str(clip), "before"), (NOW - 40, "gone.mp4", "pruned")]
    Outbox(store).record([NewEvent(ts, source, "door", "rule", "info", text) for ts, source, text in events])
    yield store
    store.close()


@pytest.mark.parametrize(
    "given", ["{here}/clips/shop.mp4", "shop.mp4", "clips/shop.mp4", "x/../clips/shop.mp4"]
)
def test_resolve_source_finds_a_file_stored_absolute(store: Store, tmp_path: Path, given: str) -> None:
    assert resolve_source(store, given.format(here=tmp_path)) == str(tmp_path / "clips" / "shop.mp4")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("rtsp://cam/1", "rtsp://cam/1"),
        ("yard.mp4", "old/yard.mp4"),  # an older database's relative path
        ("old/yard.mp4", "old/yard.mp4"),
        ("/elsewhere/old/yard.mp4", "old/yard.mp4"),
        (None, None),
        ("", None),
    ],
)
def test_resolve_source_finds_other_sources(store: Store, given: str | None, stored: str | None) -> None:
    assert resolve_source(store, given) == stored


def test_resolve_source_errors_name_the_candidates(store: Store) -> None:
    with pytest.raises(ScenewatchError, match=r"could be any of: /a/door.mp4, /b/door.mp4"):
        resolve_source(store, "door.mp4")
    with pytest.raises(ScenewatchError, match=r"no source nonexist.mp4 in .*\(sources: /a/door.mp4, "):
        resolve_source(store, "nonexist.mp4")
    for live in ("1", "rtsp://cam/2", "cam/1"):  # URLs and webcams match only exactly
        with pytest.raises(ScenewatchError, match="no source"):
            resolve_source(store, live)
    assert resolve_source(store, "gone.mp4", also=["gone.mp4"]) == "gone.mp4"


@pytest.mark.parametrize(
    "command",
    [
        ["timeline"],
        ["recall", "anything"],
        ["narrate", "--model", "no/such-model"],
        ["events"],
        ["ask", "who came?", "--model", "no/such-model"],
        ["chat", "--model", "no/such-model"],
    ],
)
def test_every_source_option_rejects_an_unknown_source(store: Store, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--source", "nonexist.mp4"])
    assert isinstance(result.exception, ScenewatchError), result.output
    message = str(result.exception)
    assert "no source nonexist.mp4" in message and "rtsp://cam/1" in message and "\n" not in message


def test_timeline_and_events_by_base_name(store: Store, tmp_path: Path) -> None:
    shown = runner.invoke(app, ["timeline", "--source", "shop.mp4", "--json"])
    assert shown.exit_code == 0, shown.output
    clip = str(tmp_path / "clips" / "shop.mp4")
    assert [entry["source"] for entry in json.loads(shown.output)] == [clip] * 2
    events = runner.invoke(app, ["events", "--source", "clips/shop.mp4", "--json"])
    assert [event["message"] for event in json.loads(events.output)] == ["before", "today"]
    pruned = runner.invoke(app, ["events", "--source", "gone.mp4", "--json"])
    assert [event["message"] for event in json.loads(pruned.output)] == ["pruned"]


def test_times_show_the_date_only_on_another_day(store: Store) -> None:
    for command in (["events"], ["timeline", "--since", "2d"]):
        result = runner.invoke(app, [*command, "--source", "shop.mp4"])
        assert result.exit_code == 0, result.output
        today = f"{datetime.fromtimestamp(TODAY):%Y-%m-%d}"
        assert clock(TODAY) in result.output and today not in result.output
        assert f"{datetime.fromtimestamp(YESTERDAY):%Y-%m-%d %H:%M:%S}" in result.output


def test_timeline_notes_an_episode_without_detail(store: Store) -> None:
    result = runner.invoke(app, ["timeline", "--source", "yard.mp4"])
    assert "(1 obs)" in result.output and "(; " not in result.output


@pytest.mark.parametrize("question", ["", "   "])
def test_ask_an_empty_question(store: Store, question: str) -> None:
    result = runner.invoke(app, ["ask", question])
    assert isinstance(result.exception, ScenewatchError) and "the question is empty" in str(result.exception)


def test_ask_takes_a_source_the_look_tool_can_read_without_a_watch(store: Store, tmp_path: Path) -> None:
    from agent.cli.ask import _topic

    settings = load_settings()
    (tmp_path / "clips" / "new.mp4").touch()
    assert _topic(settings, "clips/new.mp4") == str(tmp_path / "clips" / "new.mp4")  # never watched
    assert _topic(settings, "shop.mp4") == str(tmp_path / "clips" / "shop.mp4")  # watched, by base name
    assert _topic(settings, "rtsp://cam/9") == "rtsp://cam/9"
    with pytest.raises(ScenewatchError, match=r"no source nonexist\.mp4"):
        _topic(settings, "nonexist.mp4")


def test_the_agents_tools_read_a_source_as_the_cli_does(store: Store, tmp_path: Path) -> None:
    from tools.look import tool_source

    frames = SourceReader(store)
    assert tool_source(store, frames, "shop.mp4", None) == str(tmp_path / "clips" / "shop.mp4")
    assert tool_source(store, frames, None, "rtsp://cam/1") == "rtsp://cam/1"
    with pytest.raises(ScenewatchError, match="the tools read only watched sources"):
        tool_source(store, frames, "missing.mp4", None)
