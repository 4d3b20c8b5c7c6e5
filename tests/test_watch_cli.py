"""``scenewatch watch`` end to end with the tiny checkpoint, and its argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import BrokenBackend, UseBackend
from typer.testing import CliRunner

from agent.cli.app import app
from agent.cli.watch import watch_questions
from agent.core.errors import ScenewatchError
from memory.store import Store
from tools.vision.scripted import ScriptedBackend


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["watch", "--help"])
    assert result.exit_code == 0
    for option in ("--every", "--heartbeat", "--window", "--question", "--max-side", "--db", "--jsonl"):
        assert option in result.output
    for option in ("--model", "--backend", "--batch-size", "--threshold", "--frame-interval"):
        assert option in result.output


def test_questions_are_named_in_order() -> None:
    assert watch_questions(["Is the door open?", " ", "Lights on?"]) == {
        "q1": "Is the door open?",
        "q2": "Lights on?",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "soon"], "not a duration"),
        (["--every", "0s"], "more than 0"),
        (["--heartbeat", "-1"], "not a duration"),
    ],
)
def test_bad_arguments_are_clear_errors(synthetic_clip: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["watch", str(synthetic_clip), *args])
    assert isinstance(result.exception, ScenewatchError)
    assert message in str(result.exception)


def test_a_missing_source_fails_before_the_model_loads(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["watch", str(tmp_path / "nope.mp4"), "--model", "/no/such/model"])
    assert isinstance(result.exception, ScenewatchError)
    assert "source not found" in str(result.exception)


def test_watch_a_clip_with_the_tiny_model(
    synthetic_clip: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCENEWATCH_MAX_NEW_TOKENS", "8")
    db, jsonl = tmp_path / "obs.db", tmp_path / "obs.jsonl"
    args = ["watch", str(synthetic_clip), "--model", str(tiny_checkpoint), "--backend", "local"]
    args += ["--every", "500ms", "--heartbeat", "4s", "--window", "2", "--question", "Is there a red box?"]
    args += [
        "--threshold",
        "0.02",
        "--max-side",
        "64",
        "--batch-size",
        "4",
        "--db",
        str(db),
        "--jsonl",
        str(jsonl),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    store = Store(db)
    rows = store.between()
    assert [json.loads(line)["id"] for line in jsonl.read_text().splitlines()] == [o.id for o in rows]
    assert {5.0, 12.0} <= {o.video_t for o in rows}  # the box comes and goes
    assert all(o.model == str(tiny_checkpoint) and Path(o.thumb_path).is_file() for o in rows)
    assert "sampled" in result.output and "40" in result.output  # 20 s at 500 ms


@pytest.mark.parametrize(("backend", "exit_code"), [(BrokenBackend(), 1), (ScriptedBackend(default="{}"), 0)])
def test_exit_1_only_when_nothing_could_be_analysed(
    synthetic_clip: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: ScriptedBackend,
    exit_code: int,
    use_backend: UseBackend,
) -> None:
    use_backend(backend)
    result = CliRunner().invoke(app, ["watch", str(synthetic_clip), "--heartbeat", "1m"])
    assert result.exit_code == exit_code, result.output


def test_a_relative_path_is_stored_absolute_and_shown_by_its_name(
    synthetic_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_backend: UseBackend
) -> None:
    monkeypatch.chdir(synthetic_clip.parent)
    use_backend(ScriptedBackend(default="{}"))
    db = tmp_path / "obs.db"
    result = CliRunner().invoke(app, ["watch", synthetic_clip.name, "--heartbeat", "1m", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert {o.source for o in Store(db).between()} == {str(synthetic_clip.resolve())}
    assert synthetic_clip.name in result.output and str(synthetic_clip.parent) not in result.output
