"""``scenewatch watch`` with every listener wired: episodes, the vector index, rules."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-c", "from agent.cli import main; main()"]

RULES = """\
questions:
  door_open: "Is the door open?"
sinks:
  log: {type: jsonl, path: EVENTS}
state_changes: {episodes: true, sinks: [log]}
rules:
  anyone:
    when: "people > 0"
    for: 2 observations
    sinks: [log]
"""


def _watch(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCENEWATCH_HOME": str(home), "SCENEWATCH_MAX_NEW_TOKENS": "8"}
    return subprocess.run([*CLI, "watch", *args], capture_output=True, text=True, timeout=300, env=env)


def test_watch_runs_episode_tracker_indexer_and_rules(
    tmp_path: Path, tiny_checkpoint: Path, synthetic_clip: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("EVENTS", str(tmp_path / "events.jsonl")))
    done = _watch(
        tmp_path / "home", str(synthetic_clip), "--model", str(tiny_checkpoint), "--rules", str(rules)
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "home" / "scenewatch.db") as db:
        total, with_episode, indexed = db.execute(
            "SELECT COUNT(*), COUNT(episode_id), SUM(indexed) FROM observations"
        ).fetchone()
        assert total > 0
        assert with_episode == total  # the episode tracker saw every observation
        assert indexed == total  # the indexer flushed before the watch ended
        assert db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] >= 1
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"events", "outbox"} <= tables  # the rules engine was running


def test_watch_with_bad_rules_does_not_start(tmp_path: Path, synthetic_clip: Path) -> None:
    rules = tmp_path / "bad.yaml"
    rules.write_text("rules:\n  r:\n    when: \"__import__('os').system('x')\"\n")
    done = _watch(tmp_path / "home", str(synthetic_clip), "--model", "no/such-model", "--rules", str(rules))
    assert done.returncode == 1
    assert "line 3" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "scenewatch.db").exists()  # stopped before opening anything
