"""Background indexing: committed observations reach the vector index without slowing the watch loop.

``on_observation`` only puts the observation on a bounded queue and never waits: when the queue is
full the observation is simply left for a sweep (it stays ``indexed = 0`` in SQLite, the truth). A
thread embeds and writes batches and marks them indexed. At start it sweeps every ``indexed = 0``
row, which repairs a crash between the SQLite commit and the index write. Memory stays flat: the
queue is bounded, sweeps read a batch at a time, and the index lets go of shards it has finished.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from agent.config import Settings
from memory.store import Observation, Store
from memory.vectors import VectorIndex

log = logging.getLogger(__name__)

_POLL_S = 0.2
_MAX_BACKOFF_S = 30.0


class Indexer:
    """An :class:`~agent.listeners.ObservationListener` that indexes observations on its own thread.

    ``index`` defaults to a writer :class:`VectorIndex` of its own (closed with the indexer).
    ``close()`` writes what is queued and stops; rows left ``indexed = 0`` are swept at the next start.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        index: VectorIndex | None = None,
        max_wait_s: float = 1.0,
        queue_size: int | None = None,
    ) -> None:
        self.store = store
        self.batch = settings.index_batch
        self.max_wait_s = max_wait_s
        self.index = index or VectorIndex(store, settings, release_shards=True)
        self._owns_index = index is None
        self._queue: queue.Queue[Observation] = queue.Queue(maxsize=queue_size or 4 * self.batch)
        self._missed = threading.Event()  # something was not queued: sweep SQLite for it
        self._missed.set()  # the first sweep repairs what an earlier run left unindexed
        self._stopping = threading.Event()
        self._backoff_s = 0.0
        self.indexed = 0
        self._thread = threading.Thread(target=self._run, name="scenewatch-indexer", daemon=True)
        self._thread.start()

    def on_observation(self, obs: Observation) -> None:
        """Queue a committed observation; never blocks (a full queue leaves it for a sweep)."""
        if obs.id is None:
            return
        try:
            self._queue.put_nowait(obs)
        except queue.Full:
            self._missed.set()

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the thread (and close the index if it is the indexer's own)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._thread.join(timeout)
        if self._owns_index:
            self.index.close()

    @property
    def pending(self) -> int:
        """Observations queued and not yet written."""
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            if self._missed.is_set() and not self._stopping.is_set():
                self._missed.clear()
                self._sweep()
            batch = self._take()
            if batch:
                self._write(batch)
            elif self._stopping.is_set():
                return

    def _take(self) -> list[Observation]:
        """Up to ``batch`` queued observations, waiting at most ``max_wait_s`` to fill a batch."""
        try:
            items = [self._queue.get(timeout=0 if self._stopping.is_set() else _POLL_S)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.max_wait_s
        while len(items) < self.batch:
            remaining = 0.0 if self._stopping.is_set() else deadline - time.monotonic()
            try:
                items.append(
                    self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return items

    def _sweep(self) -> None:
        """Index every committed row still marked ``indexed = 0``, a batch at a time."""
        while not self._stopping.is_set():
            rows = self.store.unindexed(limit=self.batch)
            if not rows or not self._write(rows):
                return

    def _write(self, batch: list[Observation]) -> bool:
        try:
            self.index.add(batch)
            self.store.mark_indexed([obs.id for obs in batch if obs.id is not None])
        except Exception as exc:  # a dead server, a full disk: the rows stay indexed = 0
            self._backoff_s = min(max(2 * self._backoff_s, 1.0), _MAX_BACKOFF_S)
            log.warning(
                "indexing %d observations failed (%s); retrying in %.0fs", len(batch), exc, self._backoff_s
            )
            self._missed.set()
            self._stopping.wait(self._backoff_s)
            return False
        self._backoff_s = 0.0
        self.indexed += len(batch)
        return True
