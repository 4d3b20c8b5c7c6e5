"""The recorder: the one writer of the SQLite store, fed by the observations stream.

It reads results in the consumer group ``recorders`` under a fixed name, so a restarted recorder
first reads what it had been handed and not acknowledged (``XREADGROUP ... 0``), then new results.
For each result: the thumbnail file, then the row (:meth:`~memory.store.Store.add_once`: a frame id
stored once, so a result delivered twice is stored once), then the listeners in order (episodes,
indexer, rules: :func:`~agent.pipeline.session.open_recording`), as a watch commits. The batch's
results are acknowledged and deleted from the stream once stored, and the stored summaries go to
their sources' windows in Redis, which workers read for the describe prompt. While the recorder is
down, results wait in the stream (it is never trimmed).

At start it publishes the watch questions (the rules file's and ``--question``) for the workers,
and seeds each stored source's window from the store.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from agent.core.errors import ScenewatchError
from agent.distributed.messages import MessageError, ResultMessage
from agent.distributed.redis_streams import RECORDERS, Entry, Reconnecting, Streams
from agent.pipeline.listeners import notify_listeners
from agent.pipeline.session import Recording
from agent.pipeline.stats import LATENCY_HISTORY, percentile
from agent.pipeline.watch import POLL_S, source_slug
from memory.observation import Observation

log = logging.getLogger(__name__)

RECORDER_NAME = "recorder"
READ_COUNT = 64
"""Results read and stored per round."""


@dataclass
class RecorderStats:
    """What the recorder did; ``stream_ms``: per stored result, capture's send to the store (wall clocks)."""

    stored: int = 0
    repeated: int = 0  # results whose frame was stored already
    unreadable: int = 0  # entries that were not results (moved to the dead letters)
    stream_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "repeated": self.repeated,
            "unreadable": self.unreadable,
            "capture_to_store_p50_ms": round(percentile(self.stream_ms, 50), 1),
            "capture_to_store_p95_ms": round(percentile(self.stream_ms, 95), 1),
        }


class Recorder:
    """Stores the observations stream's results through a :class:`Recording` (the module docstring)."""

    def __init__(self, streams: Streams, recording: Recording) -> None:
        self.streams = streams
        self.recording = recording
        self.settings = recording.settings
        self.stats = RecorderStats()
        self._backlog = True  # what this consumer was handed before and has not acknowledged
        self._stop = threading.Event()

    def start(self, stop: threading.Event) -> bool:
        """Create the groups, publish the questions, seed the windows; False when stopped meanwhile."""
        store, size = self.recording.store, self.settings.window
        recent = {source: store.recent(source, size) for source in store.sources()}
        redis = Reconnecting(stop, "recorder")
        redis(self.streams.ensure_groups)
        redis(partial(self.streams.publish_questions, self.recording.questions))
        redis(partial(self.streams.seed_windows, recent, size))
        return not stop.is_set()

    def run(self, stop: threading.Event, *, until_idle: bool = False) -> RecorderStats:
        """Store results until ``stop`` (the batch in hand is stored first); ``until_idle``: also end
        when a round finds none."""
        self._stop = stop
        if not self.start(stop):
            return self.stats
        try:
            while not stop.is_set():
                if not self.step() and until_idle:
                    break
        except sqlite3.Error as exc:  # a locked or failing database: stop, nothing unstored acknowledged
            raise ScenewatchError(f"cannot store observations in {self.recording.store.path}: {exc}") from exc
        return self.stats

    def step(self) -> int:
        """One round: read results (waiting up to POLL_S for one), store them; how many were read."""
        entries = Reconnecting(self._stop, "recorder")(self._read)
        if entries:
            self._store(entries, Reconnecting(threading.Event(), "recorder"))
        return len(entries or ())

    def _read(self) -> list[Entry]:
        """What this consumer was handed before and has not acknowledged, then new results (waiting up to
        POLL_S for one)."""
        client, stream = self.streams.client, self.streams.observations
        if self._backlog:
            read = client.xreadgroup(RECORDERS, RECORDER_NAME, {stream: "0"}, count=READ_COUNT)
            entries = [entry for _stream, items in read or [] for entry in items]
            if entries:
                return entries
            self._backlog = False
        read = client.xreadgroup(
            RECORDERS, RECORDER_NAME, {stream: ">"}, count=READ_COUNT, block=round(POLL_S * 1000)
        )
        return [entry for _stream, items in read or [] for entry in items]

    def _store(self, entries: list[Entry], redis: Reconnecting) -> None:
        """Store a batch of results, then acknowledge it; the stored ones join the windows.

        A database error raises (nothing acknowledged: the results are read again at the next start).
        Redis calls wait for Redis to come back: stored results must be acknowledged.
        """
        stored: list[Observation] = []
        done: list[bytes] = []
        for entry_id, fields in entries:
            if not fields:  # deleted meanwhile: only its pending record is left
                done.append(entry_id)
                continue
            try:
                result = ResultMessage.from_fields(fields)
            except MessageError as exc:
                self.stats.unreadable += 1
                redis(partial(self._bury, entry_id, fields, str(exc)))
                continue
            if self._commit(result):
                stored.append(result.observation)
            done.append(entry_id)
        redis(partial(self._acknowledge, done))
        redis(partial(self.streams.remember, stored, self.settings.window))

    def _commit(self, result: ResultMessage) -> bool:
        """Thumbnail, row, listeners; False when the frame was stored already."""
        obs = result.observation
        if result.thumb:
            obs.thumb_path = self._save_thumbnail(obs, result.thumb)
        if not self.recording.store.add_once(obs):
            self.stats.repeated += 1
            log.debug("%s: frame %s is stored already: skipped", obs.source, obs.frame_id)
            return False
        notify_listeners(self.recording.listeners, obs)
        self.stats.stored += 1
        if result.sent:
            self.stats.stream_ms.append((time.time() - result.sent) * 1000)
        return True

    def _save_thumbnail(self, obs: Observation, jpeg: bytes) -> str | None:
        folder = self.settings.thumbs_dir / source_slug(obs.source)
        path = folder / f"{round(obs.ts * 1000)}.jpg"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, jpeg)
        except OSError as exc:
            log.warning("%s: cannot save thumbnail %s: %s", obs.source, path, exc)
            return None
        return str(path)

    def _acknowledge(self, entry_ids: list[bytes]) -> None:
        if not entry_ids:
            return
        with self.streams.client.pipeline(transaction=True) as pipe:
            pipe.xack(self.streams.observations, RECORDERS, *entry_ids)
            pipe.xdel(self.streams.observations, *entry_ids)
            pipe.execute()

    def _bury(self, entry_id: bytes, fields: dict[Any, Any], why: str) -> None:
        with self.streams.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.streams.dead, {**fields, "error": why.encode(), "worker": b"recorder"})
            pipe.xack(self.streams.observations, RECORDERS, entry_id)
            pipe.xdel(self.streams.observations, entry_id)
            pipe.execute()
        log.error("result %s moved to the dead letters (%s): %s", entry_id.decode(), self.streams.dead, why)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (a thumbnail written again after a restart replaces it)."""
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)
