"""The observation database on a hostile disk (issue 12, hostile probe): a damaged file is refused in
one line that says how to recover it and is never changed; a home that is a file, a folder that
cannot be written and a full disk are said as such.

Tests run as root here, and root ignores file permissions: "cannot be written" is a folder under
``/sys`` (sysfs refuses to create anything there, even for root) or under a regular file; a full
disk is a database that is a link to ``/dev/full`` (every write fails with ENOSPC).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from helpers import unwritable_folder
from typer.testing import CliRunner

from agent.bench.memory_store import synthetic_observations
from agent.cli.app import app
from agent.core.errors import ScenewatchError
from memory import store as store_module
from memory.folders import file_in_the_way, why_unwritable
from memory.observation import Observation
from memory.store import Store

runner = CliRunner()
ROWS = 3000


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def damaged_db(tmp_path: Path) -> Path:
    """A database of 3000 observations with 4 KB of random bytes written into its middle."""
    path = tmp_path / "damaged" / "scenewatch.db"
    store = Store(path)
    with store.transaction():
        for obs in synthetic_observations(ROWS, 1.7e9):
            store.add(obs)
    store.close()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = random.Random(0).randbytes(4096)
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_database_is_refused_and_left_as_it_is(damaged_db: Path) -> None:
    before = _sha256(damaged_db)
    with pytest.raises(ScenewatchError) as raised:
        Store(damaged_db)
    message = str(raised.value)
    assert message.startswith(f"{damaged_db} is damaged (")  # SQLite's words depend on the page hit
    assert "scenewatch leaves it as it is" in message and "Restore a backup" in message
    assert f"sqlite3 {damaged_db} .recover | sqlite3 " in message
    assert "\n" not in message
    assert _sha256(damaged_db) == before
    assert sorted(p.name for p in damaged_db.parent.iterdir()) == ["scenewatch.db"]


COMMANDS = [
    ["timeline", "--since", "1h"],
    ["recall", "a person"],
    ["events"],
    ["ask", "what happened?", "--model", "no/such-model"],
    ["memory", "stats"],
    ["memory", "reindex"],
    ["memory", "prune", "--older-than", "1d", "--yes"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: " ".join(args[:2]))
def test_every_command_refuses_a_damaged_database(damaged_db: Path, args: list[str]) -> None:
    before = _sha256(damaged_db)
    result = runner.invoke(app, [*args, "--db", str(damaged_db)])
    assert result.exit_code == 1
    assert isinstance(result.exception, ScenewatchError), result.output
    assert str(result.exception).startswith(f"{damaged_db} is damaged")
    assert _sha256(damaged_db) == before


def test_watch_refuses_a_damaged_database(damaged_db: Path, synthetic_clip: Path) -> None:
    before = _sha256(damaged_db)
    result = runner.invoke(app, ["watch", str(synthetic_clip), "--db", str(damaged_db)])
    assert isinstance(result.exception, ScenewatchError), result.output
    assert str(result.exception).startswith(f"{damaged_db} is damaged")
    assert _sha256(damaged_db) == before  # nothing written into the damaged file


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 command is not installed")
def test_the_recovery_the_message_gives_works(damaged_db: Path) -> None:
    """The message's commands, run as given: ``.recover``, else (a sqlite3 without it) ``.dump``."""
    with pytest.raises(ScenewatchError) as raised:
        Store(damaged_db)
    commands = str(raised.value).split("`")[1::2]
    recovered = damaged_db.with_name("scenewatch-recovered.db")
    for command in commands:
        recovered.unlink(missing_ok=True)
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, timeout=60)
        if done.returncode == 0 and recovered.is_file() and b"error" not in done.stderr:
            break
    store = Store(recovered)
    assert ROWS * 0.9 <= store.count() <= ROWS  # at most what the damaged page held is lost
    store.close()


def test_damage_a_query_meets_after_opening_is_the_same_error(
    damaged_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file too large to check within the budget opens; a damaged page a query reads is refused.

    The check is skipped outright: with a budget of 0 s, whether SQLite's quick_check stops before
    reporting depends on where the damage lies (its tree check is one step of its program)."""
    monkeypatch.setattr(store_module.Store, "_quick_check", lambda self: None)
    store = Store(damaged_db)
    with pytest.raises(ScenewatchError, match="is damaged"):
        store.between()
    store.close()


def test_the_check_at_opening_stops_at_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A file the check cannot finish within QUICK_CHECK_BUDGET_S opens unchecked past that point."""
    path = tmp_path / "large.db"
    store = Store(path)
    with store.transaction():
        for obs in synthetic_observations(ROWS, 1.7e9):
            store.add(obs)
    store.close()
    monkeypatch.setattr(store_module, "QUICK_CHECK_BUDGET_S", 0.0)
    with caplog.at_level(logging.DEBUG, logger="memory.store"):
        again = Store(path)
    assert again.count() == ROWS
    again.close()
    assert any("quick_check stopped" in record.getMessage() for record in caplog.records)


def test_a_healthy_database_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "obs.db"
    store = Store(path)
    store.add(Observation(source="cam", ts=1.0, summary="a porch"))
    store.close()
    again = Store(path)
    assert again.count() == 1
    again.close()


@pytest.mark.parametrize("args", [["timeline"], ["recall", "x"], ["kb", "list"], ["events"]])
def test_a_home_that_is_a_file_is_said_so(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "notes.txt"
    home.write_text("not a folder")
    result = runner.invoke(app, ["--home", str(home), *args])
    assert isinstance(result.exception, ScenewatchError), result.output
    assert str(result.exception) == (
        f"the scenewatch home {home} is a file, not a folder: give --home (or SCENEWATCH_HOME) a folder"
    )


def test_watch_into_a_home_that_is_a_file_is_said_so(tmp_path: Path, synthetic_clip: Path) -> None:
    home = tmp_path / "notes.txt"
    home.write_text("not a folder")
    result = runner.invoke(app, ["--home", str(home / "inside"), "watch", str(synthetic_clip)])
    assert isinstance(result.exception, ScenewatchError), result.output
    assert f"cannot be a folder: {home} is a file" in str(result.exception)
    result = runner.invoke(app, ["watch", str(synthetic_clip), "--db", str(home / "obs.db")])
    assert (
        str(result.exception) == f"cannot create the database folder {home}: {home} is a file, not a folder"
    )
    assert home.read_text() == "not a folder"


def test_a_folder_that_cannot_be_written_is_said_so(tmp_path: Path, synthetic_clip: Path) -> None:
    home = unwritable_folder(tmp_path)
    reason = why_unwritable(home / "scenewatch.db")
    assert reason is not None
    result = runner.invoke(app, ["--home", str(home), "watch", str(synthetic_clip)])
    assert isinstance(result.exception, ScenewatchError), result.output
    message = str(result.exception)
    assert message.startswith(f"cannot create the database folder {home}: ")
    assert message.endswith(("Permission denied", "Operation not permitted", "Read-only file system"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_existing_database_in_a_read_only_folder_is_said_so(tmp_path: Path) -> None:
    path = tmp_path / "home" / "scenewatch.db"
    Store(path).close()
    for leftover in path.parent.glob("scenewatch.db-*"):
        leftover.unlink()
    path.chmod(0o444)
    path.parent.chmod(0o555)
    try:
        with pytest.raises(ScenewatchError, match=f"cannot write the database {path}: Permission denied"):
            Store(path)
    finally:
        path.parent.chmod(0o755)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_disk_is_said_so(tmp_path: Path, synthetic_clip: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "scenewatch.db").symlink_to("/dev/full")
    with pytest.raises(ScenewatchError) as raised:
        Store(home / "scenewatch.db")
    assert str(raised.value) == (
        f"the disk holding {home / 'scenewatch.db'} is full (database or disk is full): "
        "free some space, then try again"
    )
    result = runner.invoke(app, ["--home", str(home), "watch", str(synthetic_clip)])
    assert str(result.exception).startswith(f"the disk holding {home / 'scenewatch.db'} is full")


def test_file_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert file_in_the_way(blocker / "a" / "b") == blocker
    assert file_in_the_way(blocker) == blocker
    assert file_in_the_way(tmp_path / "folder" / "a") is None
    assert why_unwritable(blocker / "x.db") == f"{blocker} is a file, not a folder"
    assert why_unwritable(tmp_path / "x.db") is None


def test_the_sqlite_errors_of_a_file_are_told_apart(tmp_path: Path) -> None:
    """SQLite's codes, not its words: a read-only connection's write is "cannot open"/"cannot write",
    never "not a usable scenewatch database"."""
    path = tmp_path / "obs.db"
    Store(path).close()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db, pytest.raises(sqlite3.Error) as raised:
        db.execute("CREATE TABLE t (x)")
    error = store_module.database_error(path, raised.value)
    assert "not a usable" not in str(error) and str(path) in str(error)
