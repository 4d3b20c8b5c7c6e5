"""Background indexing: committed observations reach the vector index without slowing the watch loop.

``on_observation`` only puts the observation on a bounded queue and never waits: when the queue is
full the observation is left for a sweep (it stays ``indexed = 0`` in SQLite, the truth). Worker
threads embed batches side by side (one torch thread each, which keeps its speed on a busy
machine), write them to the index one at a time and mark them indexed. The first sweep, at start,
repairs a crash between the SQLite commit and the index write. Nothing grows with what is
stored: the queue is bounded, sweeps read a batch at a time, and only the newest shard is written.

Who writes a store's vectors is told by an advisory lock beside the database (:class:`IndexingLock`):
every watch's indexer holds it shared; :func:`index_missing` (``recall`` catching up on rows a
killed watch left unindexed) runs only when it can hold it alone, so it never writes a local
Chroma folder while a running watch does. The system releases the lock when a process ends,
however it ends.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from memory.observation import Observation
from memory.store import Store
from memory.vectors import VectorIndex

log = logging.getLogger(__name__)

_POLL_S = 0.2
_MAX_BACKOFF_S = 30.0


class IndexingLock:
    """The advisory lock (``flock``) on who writes a store's vectors: shared by the indexers of running
    watches, held alone by a one-off catch-up. A folder where the lock file cannot be made (read
    only) is not locked: :meth:`acquire` says True."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.data_dir / f"{settings.db_path.name}-indexing.lock"
        self._fd: int | None = None

    def acquire(self, *, alone: bool, wait: bool) -> bool:
        """Hold the lock shared (or ``alone``); False when another process holds it and not ``wait``."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.debug("no indexing lock at %s: %s", self.path, exc)
            return True
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if alone else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Indexer:
    """An :class:`~agent.pipeline.listeners.ObservationListener` that indexes observations in the background.

    ``index`` defaults to a writer :class:`VectorIndex` of its own (closed with the indexer);
    ``workers`` defaults to the number of cores, at most 2. ``close()`` writes what is queued and
    stops; rows still ``indexed = 0`` then are swept at the next start. With ``lock`` (a watch's
    indexer) it holds the :class:`IndexingLock` shared while it runs, waiting for a catch-up that
    holds it alone to end.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        index: VectorIndex | None = None,
        workers: int | None = None,
        max_wait_s: float = 1.0,
        queue_size: int | None = None,
        lock: bool = True,
    ) -> None:
        self._lock = IndexingLock(settings) if lock else None
        if self._lock is not None and not self._lock.acquire(alone=False, wait=False):
            log.info("waiting for another process to finish indexing %s", settings.db_path)
            self._lock.acquire(alone=False, wait=True)
        self.store = store
        self.batch = settings.index_batch
        self.max_wait_s = max_wait_s
        try:
            self.index = index or VectorIndex(store, settings, release_shards=True)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise
        self._owns_index = index is None
        self._queue: queue.Queue[Observation] = queue.Queue(maxsize=queue_size or 4 * self.batch)
        self._missed = threading.Event()  # something was not queued: sweep SQLite for it
        self._missed.set()  # the first sweep repairs what an earlier run left unindexed
        self._sweep_after: int | None = None  # the sweep's cursor (an id), None between sweeps
        self._claim = threading.Lock()
        self._write = threading.Lock()
        self._stopping = threading.Event()
        self._backoff_s = 0.0
        self.indexed = 0
        self.last_error: Exception | None = None  # of the latest write, None once one succeeds
        self._threads = [
            threading.Thread(target=self._run, name=f"scenewatch-indexer-{n}", daemon=True)
            for n in range(workers or min(2, os.cpu_count() or 1))
        ]
        for thread in self._threads:
            thread.start()

    def on_observation(self, obs: Observation) -> None:
        """Queue a committed observation; never blocks (a full queue leaves it for a sweep)."""
        if obs.id is None:
            return
        try:
            self._queue.put_nowait(obs)
        except queue.Full:
            self._missed.set()

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the workers (and close the index if it is the indexer's own)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._owns_index:
            self.index.close()
        if self._lock is not None:
            self._lock.release()

    @property
    def pending(self) -> int:
        """Observations queued and not yet written."""
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            batch = self._sweep_batch() or self._take()
            if batch:
                self._index(batch)
            elif self._stopping.is_set():
                return

    def _sweep_batch(self) -> list[Observation]:
        """The next batch of ``indexed = 0`` rows of the running sweep (starting one if rows were missed)."""
        with self._claim:
            if self._stopping.is_set():
                return []
            if self._sweep_after is None:
                if not self._missed.is_set():
                    return []
                self._missed.clear()
                self._sweep_after = 0
            ids = self.store.unindexed_ids(self._sweep_after, self.batch)
            if not ids:
                self._sweep_after = None
                return []
            self._sweep_after = ids[-1]
        return self.store.get_many(ids)

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
                items.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get(False))
            except queue.Empty:
                break
        return items

    def _index(self, batch: list[Observation]) -> None:
        try:
            vectors = self.index.embed(batch)  # side by side with the other workers
            with self._write:
                self.index.add(batch, vectors)
                self.store.mark_indexed([obs.id for obs in batch if obs.id is not None])
                self.indexed += len(batch)
                self._backoff_s, self.last_error = 0.0, None
        except Exception as exc:  # a dead server, a full disk: the rows stay indexed = 0
            self.last_error = exc
            self._backoff_s = min(max(2 * self._backoff_s, 1.0), _MAX_BACKOFF_S)
            log.warning(
                "indexing %d observations failed (%s); retry in %.0fs", len(batch), exc, self._backoff_s
            )
            self._missed.set()
            self._stopping.wait(self._backoff_s)


def index_all(
    store: Store,
    settings: Settings,
    index: VectorIndex,
    progress: Callable[[int], None] | None = None,
    poll_s: float = 0.2,
) -> int:
    """Index every ``indexed = 0`` row with the indexer's workers and wait; ``progress(done)`` meanwhile."""
    total = store.unindexed_count()
    indexer = Indexer(store, settings, index=index, lock=False)
    try:
        while left := store.unindexed_count():
            if indexer.last_error is not None:
                raise ScenewatchError(f"indexing failed: {indexer.last_error}")
            if progress is not None:
                progress(total - left)
            time.sleep(poll_s)
    finally:
        indexer.close()
    if progress is not None:
        progress(total)
    return total


def reindex(index: VectorIndex, progress: Callable[[int], None] | None = None) -> int:
    """Rebuild ``index`` from SQLite (the truth): drop every vector, then index every observation
    again with the indexer's workers; ``progress(done)`` as it goes. Returns how many were indexed."""
    index.clear()
    index.store.mark_all_unindexed()
    return index_all(index.store, index.settings, index, progress)


def index_missing(
    store: Store, settings: Settings, index: VectorIndex, progress: Callable[[int], None] | None = None
) -> int | None:
    """Index the rows a watch left ``indexed = 0`` (killed before its indexer caught up), unless a
    running watch's indexer holds the :class:`IndexingLock` (it indexes them itself): how many were
    indexed, or None when a watch is indexing."""
    if not store.unindexed_count():
        return 0
    lock = IndexingLock(settings)
    if not lock.acquire(alone=True, wait=False):
        return None
    try:
        return index_all(store, settings, index, progress)
    finally:
        lock.release()
