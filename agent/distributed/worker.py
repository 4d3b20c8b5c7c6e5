"""An inference worker: frames from the consumer group, the engine, results to the observations stream.

Each round a worker first takes over frames another worker has held unanswered for
``redis_claim_idle_s`` (``XAUTOCLAIM``: that worker died, or hangs), then reads new ones
(``XREADGROUP ... COUNT``) up to a batch, ``batch_size`` frames in all. It builds each frame's describe
request (the prompt carries the source's recent summaries, which the recorder keeps in Redis, and
the watch questions it published), submits the batch to its :class:`~tools.vision.engine.Engine`,
parses the answers, and for each answered frame adds the result *and* acknowledges and deletes the
frame in one transaction: a frame is acknowledged only once its result is written. A frame the model
failed on stays pending, and is tried again after the idle time; one handed out
``redis_max_deliveries`` times (failures and dead workers alike), or that cannot be read, goes to
the dead-letter stream with the reason, and is logged as an error.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from agent.core.config import Settings
from agent.distributed.messages import FrameMessage, MessageError, ResultMessage
from agent.distributed.redis_streams import WORKERS, Entry, Reconnecting, Streams
from agent.pipeline.describe import DESCRIBE_MAX_NEW_TOKENS, describe_request, parse_description
from agent.pipeline.perceive import observation_fields
from agent.pipeline.watch import POLL_S
from memory.observation import Observation
from tools.vision.base import VisionResult
from tools.vision.engine import Engine
from tools.vision.images import frame_to_image

log = logging.getLogger(__name__)

THUMB_QUALITY = 85


def worker_name() -> str:
    """A consumer name unique to this process: host and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class WorkerStats:
    """What a worker did."""

    name: str
    frames: int = 0  # frames it read or took over
    answered: int = 0  # results written
    failed: int = 0  # answers the model failed to give (the frame stays pending)
    dead: int = 0  # frames sent to the dead letters
    claimed: int = 0  # frames taken over from another worker
    batches: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Job:
    entry_id: bytes
    message: FrameMessage
    future: Future[VisionResult]
    started: float


class FrameWorker:
    """One consumer of the ``workers`` group (see the module docstring)."""

    def __init__(self, streams: Streams, engine: Engine, settings: Settings, name: str | None = None) -> None:
        self.streams = streams
        self.engine = engine
        self.settings = settings
        self.name = name or worker_name()
        self.stats = WorkerStats(self.name)
        self.batch = settings.batch_size
        self.claim_idle_ms = max(1, round(settings.redis_claim_idle_s * 1000))
        self._stop, self._hurry = threading.Event(), threading.Event()

    def run(
        self, stop: threading.Event, hurry: threading.Event | None = None, *, until_idle: bool = False
    ) -> WorkerStats:
        """Answer frames until ``stop`` (the batch in hand is finished; ``hurry`` abandons it, its frames
        stay pending for another worker). ``until_idle``: also end when a round finds no frame."""
        self._stop, self._hurry = stop, hurry or threading.Event()
        Reconnecting(stop, f"worker {self.name}")(self.join)
        while not stop.is_set():
            if not self.step() and until_idle:
                break
        return self.stats

    def step(self) -> int:
        """One round: take up to a batch of frames, answer them, write the results; how many were taken."""
        entries = Reconnecting(self._stop, f"worker {self.name}")(self._take)
        if entries:
            self._answer(entries, Reconnecting(self._hurry, f"worker {self.name}"), self._hurry)
        return len(entries or ())

    def join(self) -> None:
        """Create the groups if need be and join the workers' group (it lists this worker from now on)."""
        self.streams.ensure_groups()
        self.streams.client.xgroup_createconsumer(self.streams.frames, WORKERS, self.name)

    def leave(self) -> None:
        """Remove this consumer from the group when it holds no frame (a clean exit)."""
        pending = self.streams.client.xpending_range(
            self.streams.frames, WORKERS, min="-", max="+", count=1, consumername=self.name
        )
        if not pending:
            self.streams.client.xgroup_delconsumer(self.streams.frames, WORKERS, self.name)

    def _take(self) -> list[tuple[Entry, int]]:
        """Up to a batch of frames with how many times each was handed out: first those held too long
        by another worker, then new ones (waiting up to POLL_S for one when there are none)."""
        client, frames = self.streams.client, self.streams.frames
        _cursor, claimed, *_deleted = client.xautoclaim(
            frames, WORKERS, self.name, self.claim_idle_ms, "0-0", count=self.batch
        )
        taken = [(entry, self.streams.delivered(WORKERS, entry[0])) for entry in claimed if entry[1]]
        self.stats.claimed += len(taken)
        if len(taken) < self.batch:
            block = None if taken else round(POLL_S * 1000)
            read = client.xreadgroup(
                WORKERS, self.name, {frames: ">"}, count=self.batch - len(taken), block=block
            )
            taken += [(entry, 1) for _stream, entries in read or [] for entry in entries]
        self.stats.frames += len(taken)
        return taken

    def _answer(self, entries: list[tuple[Entry, int]], redis: Reconnecting, hurry: threading.Event) -> None:
        """Run one batch through the engine and write what it answered."""
        self.stats.batches += 1
        readable = self._readable(entries, redis)
        if not readable:
            return
        questions = redis(self.streams.questions) or {}
        windows = redis(partial(self.streams.windows, [m.source for _, m, _ in readable])) or {}
        jobs: list[tuple[_Job, int]] = []
        for entry_id, message, deliveries in readable:
            try:
                image = message.image()
            except MessageError as exc:
                redis(partial(self._bury, entry_id, message.fields(), str(exc), deliveries))
                continue
            request = describe_request(
                image,
                previous=windows.get(message.source, []),
                questions=questions,
                now_ts=message.ts,
                max_side=self.settings.max_side,
                max_new_tokens=min(self.settings.max_new_tokens, DESCRIBE_MAX_NEW_TOKENS),
                findings=message.findings,
            )
            future = self.engine.submit(request, tag=message.source)
            jobs.append((_Job(entry_id, message, future, time.monotonic()), deliveries))
        waiting = [job.future for job, _ in jobs]
        while waiting and not hurry.is_set():
            waiting = list(wait(waiting, timeout=POLL_S).not_done)
        if hurry.is_set():
            for job, _ in jobs:
                job.future.cancel()
            return  # the frames stay pending: another worker takes them after the idle time
        results: list[tuple[bytes, ResultMessage]] = []
        for job, deliveries in jobs:
            try:
                result = job.future.result()
            except Exception as exc:  # the backend failed on this frame: tried again later, or buried
                self._failed(job, deliveries, exc, redis)
                continue
            results.append((job.entry_id, self._result(job, result, questions)))
        if results:
            redis(partial(self._write, results))
            self.stats.answered += len(results)

    def _readable(
        self, entries: list[tuple[Entry, int]], redis: Reconnecting
    ) -> list[tuple[bytes, FrameMessage, int]]:
        """The frames to answer; those that cannot be read or were handed out too often are buried."""
        readable = []
        for (entry_id, fields), deliveries in entries:
            try:
                message = FrameMessage.from_fields(fields)
            except MessageError as exc:
                redis(partial(self._bury, entry_id, fields, str(exc), deliveries))
                continue
            if deliveries > self.settings.redis_max_deliveries:
                why = f"handed out {deliveries - 1} times without a result"
                redis(partial(self._bury, entry_id, fields, why, deliveries))
                continue
            readable.append((entry_id, message, deliveries))
        return readable

    def _failed(self, job: _Job, deliveries: int, exc: BaseException, redis: Reconnecting) -> None:
        """A frame the model failed on stays pending, or is buried after its last delivery."""
        self.stats.failed += 1
        message = job.message
        log.warning("%s: the model failed on frame %s: %s", message.source, message.frame_id, exc)
        if deliveries >= self.settings.redis_max_deliveries:
            why = f"the model failed {deliveries} times, last: {exc}"
            redis(partial(self._bury, job.entry_id, message.fields(), why, deliveries))

    def _result(self, job: _Job, result: VisionResult, questions: dict[str, str]) -> ResultMessage:
        message = job.message
        description = parse_description(result.text, questions)
        latency_ms = (time.monotonic() - job.started) * 1000
        observation = Observation(
            source=message.source,
            ts=message.ts,
            video_t=message.video_t,
            gate_score=message.score,
            latency_ms=round(latency_ms, 1),
            model=result.model,
            frame_id=message.frame_id,
            **asdict(description),
            **observation_fields(message.findings),
        )
        return ResultMessage(observation, self._thumbnail(message), message.sent, self.name,
                             {"answered": time.time(), "reason": message.reason})  # fmt: skip

    def _thumbnail(self, message: FrameMessage) -> bytes | None:
        try:
            image = frame_to_image(message.image(), self.settings.thumb_side)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=THUMB_QUALITY)
        except (MessageError, OSError) as exc:
            log.warning("%s: no thumbnail for frame %s: %s", message.source, message.frame_id, exc)
            return None
        return buffer.getvalue()

    def _write(self, results: list[tuple[bytes, ResultMessage]]) -> None:
        """Add the results, acknowledge and delete their frames: one transaction."""
        frames = self.streams.frames
        with self.streams.client.pipeline(transaction=True) as pipe:
            for entry_id, result in results:
                pipe.xadd(self.streams.observations, result.fields())
                pipe.xack(frames, WORKERS, entry_id)
                pipe.xdel(frames, entry_id)
            pipe.execute()

    def _bury(self, entry_id: bytes, fields: dict[Any, Any], why: str, deliveries: int) -> None:
        """Move a frame to the dead letters with the reason (one transaction), and say so."""
        self.stats.dead += 1
        record = {
            **fields,
            "error": why.encode(),
            "deliveries": str(deliveries).encode(),
            "worker": self.name.encode(),
        }
        with self.streams.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.streams.dead, record)
            pipe.xack(self.streams.frames, WORKERS, entry_id)
            pipe.xdel(self.streams.frames, entry_id)
            pipe.execute()
        log.error("frame %s moved to the dead letters (%s): %s", entry_id.decode(), self.streams.dead, why)
