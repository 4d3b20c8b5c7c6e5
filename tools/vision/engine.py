"""The one owner of the vision model: a thread that batches requests from every caller.

Watch loops, the agent's chat model and the tools all submit :class:`VisionRequest`s
here. The thread takes what is waiting, up to ``batch_size`` requests or ``batch_wait_ms``
after the first, and answers them in one backend call. A request may carry a deadline: if
its answer cannot arrive in time, it is dropped (``DeadlineExceeded``) and logged, so a
live source moves on to its newest frame instead of queueing stale ones.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from tools.vision.base import VisionBackend, VisionRequest, VisionResult

log = logging.getLogger(__name__)


class DeadlineExceeded(TimeoutError):
    """The request's answer could not arrive before its deadline; it was not run."""


class EngineClosed(RuntimeError):
    """The engine was closed before the request ran."""


@dataclass
class _Job:
    request: VisionRequest
    future: Future[VisionResult]
    deadline: float | None  # time.monotonic() value
    tag: str
    queued_at: float = field(default_factory=time.monotonic)


@dataclass
class EngineStats:
    """What the engine has done so far."""

    requests: int = 0
    batches: int = 0
    dropped: int = 0
    failed: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    batch_tags: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def mean_batch(self) -> float:
        return sum(self.batch_sizes) / len(self.batch_sizes) if self.batch_sizes else 0.0


class Engine:
    """Serialises every use of one backend through a batching thread.

    It has the backend's own ``generate(requests)`` method, so anything that takes a
    backend can take the engine and share its single copy of the weights.
    """

    def __init__(
        self,
        backend: VisionBackend,
        *,
        batch_size: int = 8,
        batch_wait_ms: float = 20.0,
        max_history: int = 10_000,
    ) -> None:
        self.backend = backend
        self.model_name = backend.model_name
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_ms / 1000
        self.stats = EngineStats()
        self._max_history = max_history
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._latency_s = 0.0  # moving average of one batch's duration
        self._closed = threading.Event()
        self._accepting = threading.Lock()  # submit's check-and-put against close's set-and-drain
        self._thread = threading.Thread(target=self._serve, name="scenewatch-engine", daemon=True)
        self._thread.start()

    def submit(
        self, request: VisionRequest, *, deadline_s: float | None = None, tag: str = ""
    ) -> Future[VisionResult]:
        """Queue a request; the future holds its result, or DeadlineExceeded/an error."""
        future: Future[VisionResult] = Future()
        deadline = time.monotonic() + deadline_s if deadline_s is not None else None
        with self._accepting:
            if self._closed.is_set():
                future.set_exception(EngineClosed("engine is closed"))
            else:
                self._queue.put(_Job(request, future, deadline, tag))
        return future

    @property
    def queued(self) -> int:
        """Requests waiting for the model (not yet in a batch)."""
        return self._queue.qsize()

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        """Submit several requests and wait for all of them (the backend protocol)."""
        futures = [self.submit(request) for request in requests]
        return [future.result() for future in futures]

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the batch in hand; requests still queued fail with EngineClosed."""
        with self._accepting:
            if self._closed.is_set():
                return
            self._closed.set()
            self._queue.put(None)
        self._thread.join(timeout)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and not job.future.done():
                job.future.set_exception(EngineClosed("engine closed before the request ran"))

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _collect(self, first: _Job) -> list[_Job]:
        jobs = [first]
        until = time.monotonic() + self.batch_wait_s
        while len(jobs) < self.batch_size:
            remaining = until - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            jobs.append(job)
        return jobs

    def _still_useful(self, job: _Job) -> bool:
        if job.future.cancelled():
            return False
        if job.deadline is not None and time.monotonic() + self._latency_s > job.deadline:
            self.stats.dropped += 1
            waited = time.monotonic() - job.queued_at
            log.info(
                "dropped a request from %s: its answer would miss the deadline (waited %.2fs)",
                job.tag or "a caller",
                waited,
            )
            job.future.set_exception(DeadlineExceeded("answer would arrive after the deadline"))
            return False
        return job.future.set_running_or_notify_cancel()

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [job for job in self._collect(first) if self._still_useful(job)]
            if not jobs:
                continue
            try:
                self._run(jobs)
            except BaseException as exc:  # a backend error, or a broken answer: the callers decide
                self.stats.failed += sum(not job.future.done() for job in jobs)
                log.warning("vision backend failed on a batch of %d: %s", len(jobs), exc)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _run(self, jobs: list[_Job]) -> None:
        started = time.monotonic()
        results = self.backend.generate([job.request for job in jobs])
        if len(results) != len(jobs):
            raise RuntimeError(f"backend answered {len(results)} of {len(jobs)} requests")
        duration = time.monotonic() - started
        self._latency_s = duration if not self._latency_s else 0.7 * self._latency_s + 0.3 * duration
        self._record(jobs)
        for job, result in zip(jobs, results, strict=True):
            result.extra.setdefault("batch_size", len(jobs))
            result.extra["queue_ms"] = (started - job.queued_at) * 1000
            job.future.set_result(result)

    def _record(self, jobs: list[_Job]) -> None:
        self.stats.requests += len(jobs)
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(jobs))
        self.stats.batch_tags.append(tuple(job.tag for job in jobs))
        if len(self.stats.batch_sizes) > self._max_history:
            del self.stats.batch_sizes[: -self._max_history]
            del self.stats.batch_tags[: -self._max_history]
