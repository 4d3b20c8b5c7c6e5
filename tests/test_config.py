"""Settings from ``SCENEWATCH_*`` variables: every ``*_s`` takes the durations the CLI takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.core.config import Settings, load_settings
from agent.core.errors import ScenewatchError

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]
SECONDS_FIELDS = [name for name in Settings.model_fields if name.endswith("_s")]


def test_every_seconds_field_is_covered() -> None:
    assert {"every_s", "heartbeat_s", "frame_interval_s", "openai_timeout_s", "events_close_s"} <= set(
        SECONDS_FIELDS
    )


@pytest.mark.parametrize("name", SECONDS_FIELDS)
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), ("1h30m", 5400.0), ("2.5", 2.5), ("3", 3.0)],
)
def test_durations_in_variables(
    monkeypatch: pytest.MonkeyPatch, name: str, text: str, seconds: float
) -> None:
    monkeypatch.setenv(f"SCENEWATCH_{name.upper()}", text)
    assert getattr(load_settings(), name) == seconds


def test_numbers_from_code_pass_as_they_are() -> None:
    settings = load_settings(every_s=2, heartbeat_s=0.25, frame_interval_s=None)
    assert (settings.every_s, settings.heartbeat_s, settings.frame_interval_s) == (2.0, 0.25, None)
    assert load_settings(frame_interval_s="750ms").frame_interval_s == 0.75


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("banana", "not a duration: 'banana' (examples: 2, 1s, 500ms, 10m, 1h, 30d)"),
        ("1x", "unknown unit 'x' in '1x'"),
        ("1h30", "give each number a unit"),
        ("0s", "greater than 0"),
        ("-1", "greater than 0"),
    ],
)
def test_bad_durations_name_the_variable(monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    monkeypatch.setenv("SCENEWATCH_EVERY_S", text)
    with pytest.raises(ScenewatchError) as exc:
        load_settings()
    assert str(exc.value).startswith("invalid setting: every_s (SCENEWATCH_EVERY_S): ")
    assert message in str(exc.value)


def test_bad_duration_variable_is_one_line_through_the_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "watch", str(tmp_path / "clip.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SCENEWATCH_HEARTBEAT_S": "soon"},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "heartbeat_s (SCENEWATCH_HEARTBEAT_S): not a duration: 'soon'" in done.stderr


@pytest.mark.parametrize(("every", "seconds"), [("500ms", 0.5), ("1s", 1.0), ("2", 2.0), ("1m", 60.0)])
def test_bench_every_takes_what_watch_takes(
    monkeypatch: pytest.MonkeyPatch, every: str, seconds: float
) -> None:
    import agent.bench.pipeline
    from agent.cli.app import app

    seen: dict[str, Any] = {}

    def fake_bench(options: Any, cfg: Settings, log: Any) -> dict[str, Any]:
        seen["every_s"] = cfg.every_s
        return {}

    monkeypatch.setattr(agent.bench.pipeline, "run_pipeline_bench", fake_bench)
    done = CliRunner().invoke(app, ["bench", "pipeline", "--random-weights", "--every", every, "--json"])
    assert done.exit_code == 0, done.output
    assert seen["every_s"] == seconds
    assert json.loads(done.stdout)["command"].endswith(f"--every {every} --json")


@pytest.mark.parametrize(
    ("every", "message"), [("banana", "not a duration: 'banana'"), ("0", "greater than 0")]
)
def test_bench_bad_every_is_one_line(every: str, message: str) -> None:
    done = subprocess.run(
        [*CLI, "bench", "pipeline", "--random-weights", "--every", every],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr
