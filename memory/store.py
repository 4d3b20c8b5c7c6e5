"""The observation log: SQLite in WAL mode, the source of truth for everything seen.

Every observation is committed here before anything else happens to it (indexing,
episodes, rules). Other modules keep their own tables in the same database through
:meth:`Store.ensure_schema`.
"""

from __future__ import annotations

import json
import logging
import shlex
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.core.errors import ScenewatchError
from memory.folders import make_folder, why_unwritable
from memory.observation import Observation

log = logging.getLogger(__name__)

OBSERVATIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    ts REAL NOT NULL,
    video_t REAL,
    summary TEXT NOT NULL DEFAULT '',
    people INTEGER,
    objects TEXT NOT NULL DEFAULT '[]',
    actions TEXT NOT NULL DEFAULT '[]',
    changes TEXT NOT NULL DEFAULT '',
    answers TEXT NOT NULL DEFAULT '{}',
    raw TEXT NOT NULL DEFAULT '',
    parsed INTEGER NOT NULL DEFAULT 1,
    gate_score REAL,
    latency_ms REAL,
    thumb_path TEXT,
    model TEXT NOT NULL DEFAULT '',
    episode_id INTEGER,
    indexed INTEGER NOT NULL DEFAULT 0,
    detections TEXT,
    tracks TEXT,
    text TEXT,
    frame_id TEXT
);
CREATE INDEX IF NOT EXISTS observations_source_ts ON observations (source, ts);
CREATE INDEX IF NOT EXISTS observations_ts ON observations (ts);
CREATE INDEX IF NOT EXISTS observations_unindexed ON observations (indexed) WHERE indexed = 0;
"""

FRAME_ID_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS observations_frame_id ON observations (frame_id) "
    "WHERE frame_id IS NOT NULL"
)
"""A frame is stored once: a result delivered twice (scale-out over Redis) meets this index. Rows
without a frame id (a watch in one process) are not in it."""


_COLUMNS = (
    "source, ts, video_t, summary, people, objects, actions, changes, answers, raw, parsed, "
    "gate_score, latency_ms, thumb_path, model, episode_id, detections, tracks, text, frame_id"
)
_ADDED_COLUMNS = {"detections": "TEXT", "tracks": "TEXT", "text": "TEXT", "frame_id": "TEXT"}
"""Columns added after the first release: a database without them gets them when it opens (NULL)."""

DETECTED_INDEX = (
    "CREATE INDEX IF NOT EXISTS observations_episode_detected ON observations (episode_id) "
    "WHERE detections IS NOT NULL"
)
"""The observations with detector findings by episode: the timeline reads the people the detector saw
in its episodes through it, not through a scan of every observation (25 ms at 100,000). Rows without
findings are not in it."""


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _loaded(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _row_to_observation(row: sqlite3.Row) -> Observation:
    return Observation(
        id=row["id"],
        source=row["source"],
        ts=row["ts"],
        video_t=row["video_t"],
        summary=row["summary"],
        people=row["people"],
        objects=json.loads(row["objects"]),
        actions=json.loads(row["actions"]),
        changes=row["changes"],
        answers=json.loads(row["answers"]),
        raw=row["raw"],
        parsed=bool(row["parsed"]),
        gate_score=row["gate_score"],
        latency_ms=row["latency_ms"],
        thumb_path=row["thumb_path"],
        model=row["model"],
        episode_id=row["episode_id"],
        detections=_loaded(row["detections"]),
        tracks=_loaded(row["tracks"]),
        text=_loaded(row["text"]),
        frame_id=row["frame_id"],
    )


QUICK_CHECK_BUDGET_S = 2.0
"""How long opening a store may spend on SQLite's ``quick_check`` (it reads the whole file: about
0.1 s for 100,000 observations, 60 MB, on the 2-core test machine). A file too large to finish in
that time is checked that far; a page damaged past it is still reported when a query reads it."""

_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_FILE_PROBLEMS = (
    *_DAMAGED,
    "SQLITE_FULL",
    "SQLITE_READONLY",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_PERM",
)


class Store:
    """A thread-safe handle on the observation database (one connection, one lock).

    Opening it checks the file (``PRAGMA quick_check``, within :data:`QUICK_CHECK_BUDGET_S`) before
    anything is written: a damaged database is refused with a ScenewatchError that says how to
    recover it, and is never changed; so is one that a query later finds damaged.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        make_folder(self.path.parent, "the database folder")
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from exc
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        try:
            with self._lock:
                self._quick_check()
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA busy_timeout=5000")
                self._conn.executescript(OBSERVATIONS_SCHEMA)
                self._add_columns()
        except sqlite3.Error as exc:
            self._conn.close()
            raise database_error(self.path, exc) from exc
        except ScenewatchError:  # damaged: closed, so SQLite takes its -wal and -shm files away again
            self._conn.close()
            raise

    def _quick_check(self) -> None:
        """SQLite's quick_check of the file, stopped after :data:`QUICK_CHECK_BUDGET_S`."""
        deadline = time.monotonic() + QUICK_CHECK_BUDGET_S
        self._conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            problems = [row[0] for row in self._conn.execute("PRAGMA quick_check(3)")]
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorname != "SQLITE_INTERRUPT":
                raise
            log.debug("%s: quick_check stopped after %.0fs (a large file)", self.path, QUICK_CHECK_BUDGET_S)
            return
        finally:
            self._conn.set_progress_handler(None, 0)
        if problems != ["ok"]:
            raise ScenewatchError(damaged_message(self.path, "; ".join(problems)))

    @contextmanager
    def _damage_reported(self) -> Iterator[None]:
        """The lock, and a problem of the file a statement ran into (a damaged page, a full disk, no
        permission) as the ScenewatchError that says so."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                if not is_file_problem(exc):
                    raise
                raise database_error(self.path, exc) from exc

    def _add_columns(self) -> None:
        """Add the columns an older database lacks (their values stay NULL), the frame id's index and
        the index of the rows with detector findings."""
        have = {row["name"] for row in self._conn.execute("PRAGMA table_info(observations)")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in have:
                self._conn.execute(f"ALTER TABLE observations ADD COLUMN {name} {kind}")
        self._conn.execute(FRAME_ID_INDEX)
        self._conn.execute(DETECTED_INDEX)

    def ensure_schema(self, sql: str) -> None:
        """Create another module's tables (``CREATE TABLE IF NOT EXISTS ...``)."""
        with self._damage_reported():
            self._conn.executescript(sql)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run several statements atomically (BEGIN IMMEDIATE ... COMMIT)."""
        with self._damage_reported():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run one statement (autocommitted) and return its rows."""
        with self._damage_reported():
            return self._conn.execute(sql, params).fetchall()

    def add(self, obs: Observation) -> int:
        """Commit one observation and return its id (sets ``obs.id``).

        An observation whose ``frame_id`` is already stored is not stored again: ``obs.id`` and the
        id returned are then 0 (see :meth:`add_once`).
        """
        values = (
            obs.source,
            obs.ts,
            obs.video_t,
            obs.summary,
            obs.people,
            json.dumps(obs.objects),
            json.dumps(obs.actions),
            obs.changes,
            json.dumps(obs.answers),
            obs.raw,
            int(obs.parsed),
            obs.gate_score,
            obs.latency_ms,
            obs.thumb_path,
            obs.model,
            obs.episode_id,
            _json_or_none(obs.detections),
            _json_or_none(obs.tracks),
            _json_or_none(obs.text),
            obs.frame_id,
        )
        with self._damage_reported():
            cursor = self._conn.execute(
                f"INSERT INTO observations ({_COLUMNS}) VALUES ({', '.join('?' * len(values))}) "
                "ON CONFLICT (frame_id) WHERE frame_id IS NOT NULL DO NOTHING",
                values,
            )
        obs.id = int(cursor.lastrowid or 0) if cursor.rowcount else 0
        return obs.id

    def add_once(self, obs: Observation) -> bool:
        """Commit an observation unless its ``frame_id`` is stored already; True when it was stored."""
        return self.add(obs) != 0

    def get_many(self, ids: Sequence[int]) -> list[Observation]:
        """Observations by id, in the order of ``ids`` (missing ones left out)."""
        if not ids:
            return []
        rows = self.execute(
            f"SELECT * FROM observations WHERE id IN ({', '.join('?' * len(ids))})", list(ids)
        )
        by_id = {row["id"]: _row_to_observation(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def recent(self, source: str | None = None, n: int = 5) -> list[Observation]:
        """The last ``n`` observations (of one source, or of all), oldest first."""
        if n <= 0:
            return []
        if source is None:
            rows = self.execute("SELECT * FROM observations ORDER BY ts DESC, id DESC LIMIT ?", (n,))
        else:
            rows = self.execute(
                "SELECT * FROM observations WHERE source = ? ORDER BY ts DESC, id DESC LIMIT ?",
                (source, n),
            )
        return [_row_to_observation(row) for row in reversed(rows)]

    def between(
        self,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[Observation]:
        """Observations in a time range (epoch seconds, inclusive), oldest first."""
        clauses, params = [], []
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        if until is not None:
            clauses.append("ts <= ?")
            params.append(until)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self.execute(f"SELECT * FROM observations {where} ORDER BY ts, id{tail}", params)
        return [_row_to_observation(row) for row in rows]

    def page(
        self,
        *,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_id: int | None = None,
        before_id: int | None = None,
        limit: int = 50,
        newest_first: bool = False,
    ) -> list[Observation]:
        """Up to ``limit`` observations by id (oldest first, or newest first), of one source, in a
        time range (inclusive), with ids after ``after_id`` and before ``before_id``: cursor paging."""
        clauses, params = ["1"], []
        for clause, value in (
            ("source = ?", source),
            ("ts >= ?", since),
            ("ts <= ?", until),
            ("id > ?", after_id),
            ("id < ?", before_id),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        order = "DESC" if newest_first else "ASC"
        rows = self.execute(
            f"SELECT * FROM observations WHERE {' AND '.join(clauses)} ORDER BY id {order} LIMIT ?",
            [*params, int(limit)],
        )
        return [_row_to_observation(row) for row in rows]

    def in_time_order(
        self,
        *,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> list[Observation] | None:
        """Up to ``limit`` observations by time (``ts``, then id), newest or oldest first, of one source,
        in a time range (inclusive), following the observation ``after`` (keyset paging: the id of
        the last one of the previous page). None when ``after`` names no observation.

        The indexes on ``ts`` and ``source, ts`` give this order, so a page costs the same over any
        window (ordering a wide window by id would sort all of it)."""
        clauses, params = ["1"], []
        for clause, value in (("source = ?", source), ("ts >= ?", since), ("ts <= ?", until)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        step = "<" if newest_first else ">"
        if after is not None:
            found = self.execute("SELECT ts FROM observations WHERE id = ?", (after,))
            if not found:
                return None
            clauses.append(f"(ts {step} ? OR (ts = ? AND id {step} ?))")
            params += [found[0][0], found[0][0], after]
        order = "DESC" if newest_first else "ASC"
        where = " AND ".join(clauses)
        rows = self.execute(
            f"SELECT * FROM observations WHERE {where} ORDER BY ts {order}, id {order} LIMIT ?",
            [*params, int(limit)],
        )
        return [_row_to_observation(row) for row in rows]

    def last_id(self) -> int:
        """The id of the latest observation (0 when there is none)."""
        return int(self.execute("SELECT COALESCE(MAX(id), 0) FROM observations")[0][0])

    def unindexed_ids(self, after_id: int = 0, limit: int = 1000) -> list[int]:
        """Ids of committed observations not yet in the vector index, after ``after_id``, in order."""
        rows = self.execute(
            "SELECT id FROM observations WHERE indexed = 0 AND id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [row[0] for row in rows]

    def unindexed_count(self) -> int:
        """How many committed observations are not yet in the vector index."""
        return int(self.execute("SELECT COUNT(*) FROM observations WHERE indexed = 0")[0][0])

    def mark_indexed(self, ids: Sequence[int], indexed: bool = True) -> None:
        if not ids:
            return
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE observations SET indexed = ? WHERE id = ?", [(int(indexed), i) for i in ids]
            )

    def set_episode(self, observation_id: int, episode_id: int) -> None:
        self.execute("UPDATE observations SET episode_id = ? WHERE id = ?", (episode_id, observation_id))

    def previous(self, source: str, before_id: int | None) -> Observation | None:
        """The source's observation committed just before ``before_id`` (its latest when None)."""
        rows = self.execute(
            "SELECT * FROM observations WHERE source = ? AND id < ? ORDER BY id DESC LIMIT 1",
            (source, before_id if before_id is not None else 2**62),
        )
        return _row_to_observation(rows[0]) if rows else None

    def latest_at(self, source: str, ts: float) -> Observation | None:
        """The source's last observation at or before time ``ts``."""
        rows = self.execute(
            "SELECT * FROM observations WHERE source = ? AND ts <= ? ORDER BY ts DESC, id DESC LIMIT 1",
            (source, ts),
        )
        return _row_to_observation(rows[0]) if rows else None

    def older_than(self, cutoff: float, limit: int) -> list[tuple[int, str | None, bool]]:
        """``(id, thumb_path, indexed)`` of up to ``limit`` observations from before ``cutoff``, by id."""
        rows = self.execute(
            "SELECT id, thumb_path, indexed FROM observations WHERE ts < ? ORDER BY id LIMIT ?",
            (cutoff, limit),
        )
        return [(row["id"], row["thumb_path"], bool(row["indexed"])) for row in rows]

    def count_older_than(self, cutoff: float) -> int:
        """How many observations are from before ``cutoff``."""
        return int(self.execute("SELECT COUNT(*) FROM observations WHERE ts < ?", (cutoff,))[0][0])

    def delete(self, ids: Sequence[int]) -> None:
        """Remove observations by id (their vectors and thumbnails are the caller's: see memory.prune)."""
        if ids:
            self.execute(f"DELETE FROM observations WHERE id IN ({', '.join('?' * len(ids))})", list(ids))

    def mark_all_unindexed(self) -> None:
        """Every observation waits to be indexed again (a rebuild of the index)."""
        self.execute("UPDATE observations SET indexed = 0 WHERE indexed != 0")

    def totals(self) -> dict[str, Any]:
        """``observations``, ``unindexed``, ``first_ts``, ``last_ts`` and ``sources`` (name -> count)."""
        first, last, total, unindexed = self.execute(
            "SELECT MIN(ts), MAX(ts), COUNT(*), COUNT(*) FILTER (WHERE indexed = 0) FROM observations"
        )[0]
        per_source = self.execute("SELECT source, COUNT(*) FROM observations GROUP BY source ORDER BY source")
        return {
            "observations": total,
            "unindexed": unindexed,
            "first_ts": first,
            "last_ts": last,
            "sources": {row[0]: row[1] for row in per_source},
        }

    def count(self, source: str | None = None) -> int:
        if source is None:
            return int(self.execute("SELECT COUNT(*) FROM observations")[0][0])
        return int(self.execute("SELECT COUNT(*) FROM observations WHERE source = ?", (source,))[0][0])

    def sources(self) -> list[str]:
        """Every source that has observations, by name."""
        return [row[0] for row in self.execute("SELECT DISTINCT source FROM observations ORDER BY source")]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def range_sql(
    start: str, end: str, since: float | None, until: float | None, source: str | None
) -> tuple[str, list[Any]]:
    """A WHERE clause for rows whose span [``start``, ``end``] overlaps [since, until], of one source."""
    clauses, params = ["1"], []
    if since is not None:
        clauses.append(f"{end} >= ?")
        params.append(since)
    if until is not None:
        clauses.append(f"{start} <= ?")
        params.append(until)
    if source is not None:
        clauses.append("source = ?")
        params.append(source)
    return " AND ".join(clauses), params


def damaged_message(path: Path, problem: str) -> str:
    """The one line that refuses a damaged database and says how to recover what it holds.

    sqlite3's ``.recover`` needs the ``sqlite_dbpage`` table, which some builds lack (Debian 12's
    sqlite3 3.40 stops at "SQL logic error"); ``.dump`` then copies what it can read, but ends with a
    ROLLBACK when it met damage, so that last line is made a COMMIT.
    """
    old, new = shlex.quote(str(path)), shlex.quote(str(path.with_name(f"{path.stem}-recovered{path.suffix}")))
    problem = " ".join(problem.split())  # SQLite's report may span lines: the message stays one
    return (
        f"{path} is damaged ({problem}); scenewatch leaves it as it is. Restore a backup, or copy what "
        f"can still be read into a new file and move that in its place: `sqlite3 {old} .recover | sqlite3 "
        f"{new}` (if .recover fails: `sqlite3 {old} .dump | sed '$ s/^ROLLBACK.*/COMMIT;/' | sqlite3 {new}`)"
    )


def is_file_problem(exc: sqlite3.Error) -> bool:
    """Whether an SQLite error is about the database file (damaged, disk full, not writable)."""
    return getattr(exc, "sqlite_errorname", "").startswith(_FILE_PROBLEMS)


def database_error(path: Path, exc: sqlite3.Error) -> ScenewatchError:
    """What an SQLite error about the database file means for the user, in one line."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_NOTADB":
        return ScenewatchError(f"{path} is not a usable scenewatch database: {exc}")
    if name.startswith(_DAMAGED):
        return ScenewatchError(damaged_message(path, str(exc)))
    if name == "SQLITE_FULL":
        return ScenewatchError(f"the disk holding {path} is full ({exc}): free some space, then try again")
    reason = why_unwritable(path)
    if reason is not None:
        return ScenewatchError(f"cannot write the database {path}: {reason}")
    return ScenewatchError(f"cannot open the database {path}: {exc}")
