"""The watch loop: source → change gate → engine → store → listeners → JSONL.

One thread per source samples frames, gates them and submits the changed ones (and a
heartbeat) to the shared :class:`~tools.vision.engine.Engine`, which batches requests from every
source. Results are committed in order, per source: the thumbnail JPEG first, then the
SQLite row, then the listeners in order, then the JSONL line, all under one lock so
listeners and the JSONL file see one observation at a time.

Pipelining: a file or folder source keeps up to ``settings.pipeline_depth`` requests in
flight, so the engine always has work to batch while the thread decodes the next frames
(with several sources, their requests share batches). The window semantics follow from it: a prompt carries
the descriptions *committed* when its frame was submitted, so with depth D the up to D-1
observations still in flight are not among them and ``changes`` compares with a slightly
older observation. Answers are committed as soon as the thread sees them in, after a gated frame
too: an observation (and its events, and the clip around them) is not held back while a static
stretch of video is skipped. Live sources keep one request in flight: their next frame is the
newest one when the answer arrives, never a stale one.

Deadlines: a live frame not answered within ``deadline_s`` is dropped by the engine
(counted, logged) and the next frame is analysed regardless of the gate. Frames of files
and folders carry no deadline: they never go stale, the pipeline depth already bounds the
queue, and dropping them would leave holes in the log when the model is slow.

Stopping: ``stop`` ends the sampling; the requests the engine has not started are abandoned
and the answers in flight are committed. ``hurry`` (set after ``stop``) abandons those too:
no thread waits for the model any more.

Orchestration: a :class:`Watcher` runs sources side by side on one engine, store, window and
listener set, and sources can be started and stopped while it runs, each with a stop event of its
own (``scenewatch serve``); :func:`run_watch` is a watcher over a fixed list, run to its end.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from agent.core.config import Settings
from agent.core.durations import current_time
from agent.core.errors import ScenewatchError
from agent.pipeline.describe import DESCRIBE_MAX_NEW_TOKENS, describe_request, parse_description
from agent.pipeline.listeners import ObservationListener, close_listeners, notify_listeners
from agent.pipeline.perceive import Perceiver, Perception, observation_fields
from agent.pipeline.stats import SourceStats, UpdateCallback, WatchSummary
from agent.sources import Frame, FrameSource, open_source, source_name
from memory.observation import Observation
from memory.store import Store
from memory.window import RecentWindow
from tools.perception.findings import Findings
from tools.vision.base import VisionResult
from tools.vision.engine import DeadlineExceeded, Engine, EngineClosed

log = logging.getLogger(__name__)

POLL_S = 0.1
"""How often a thread waiting for an answer or a worker checks whether to stop waiting."""

FrameCallback = Callable[[str, Frame], None]
"""Called with (source name, frame) for every sampled frame, before the gate (event clips)."""


def source_slug(source: str) -> str:
    """A folder-safe name for a source: readable tail plus a short hash of the whole."""
    tail = re.sub(r"[^a-z0-9]+", "-", source.lower().rsplit("/", 1)[-1]).strip("-")[:40] or "source"
    return f"{tail}-{zlib.crc32(source.encode()):08x}"


@dataclass
class _Pending:
    frame: Frame
    score: float | None
    future: Future[VisionResult]
    submitted: float
    questions: dict[str, str]  # the watch questions its prompt asked (a copy taken per frame)
    answered: float | None = None  # monotonic time the answer arrived
    findings: Findings | None = None  # what the detector stage saw on the frame


@dataclass
class _Shared:
    """What every source thread of one watch shares."""

    settings: Settings
    engine: Engine
    store: Store
    window: RecentWindow
    questions: Mapping[str, str]
    listeners: Sequence[ObservationListener]
    jsonl: IO[str] | None
    on_update: UpdateCallback | None
    stop: threading.Event  # each worker has its own copy of _Shared with its own stop event
    hurry: threading.Event
    commit_lock: threading.Lock = field(default_factory=threading.Lock)
    on_frame: FrameCallback | None = None
    perception: Perception | None = None  # the detector stage (None: the change gate alone)


class _SourceWorker:
    """Runs one source: sample, gate, submit, commit in order."""

    def __init__(self, source: FrameSource, shared: _Shared) -> None:
        self.source = source
        self.shared = shared
        settings = shared.settings
        self.stats = SourceStats(source.name, live=source.live)
        self.perceiver = Perceiver(source.name, settings, shared.perception)  # detect, track, zones, gate
        self.gate = self.perceiver.gate
        self.depth = 1 if source.live else settings.pipeline_depth
        self.thumbs = settings.thumbs_dir / source_slug(source.name)
        self.pending: deque[_Pending] = deque()
        self.done = threading.Event()  # set when the worker no longer touches the store

    def run(self) -> None:
        """Watch the source to its end (or the stop event); errors end this source only, logged."""
        try:
            self._loop()
            self._finish_pending()
        except (ScenewatchError, sqlite3.Error, OSError) as exc:  # the database or the disk failed
            self.stats.error = str(exc)
            log.error("%s: stopped: %s", self.source.name, exc)
        except Exception as exc:  # a bug or an unexpected library error: log it, keep the others going
            self.stats.error = f"{type(exc).__name__}: {exc}"
            log.exception("%s: stopped on an unexpected error", self.source.name)
        finally:
            self._abandon()  # what an error left in flight
            self.stats.failed += self.source.unreadable
            self.stats.video_s = self.source.video_s
            self.source.close()
            self.done.set()

    def _loop(self) -> None:
        shared, settings = self.shared, self.shared.settings
        for frame in self.source.frames(shared.stop):
            self.stats.sampled += 1
            self.stats.video_s = self.source.video_s
            self._hand_on(frame)
            decision = self.perceiver.decide(frame)
            self.stats.reasons[decision.reason] += 1
            if not decision.analyse:
                self.stats.skipped += 1
                self._settle(keep=self.depth)  # commit the answers already in, waiting for none
                self._notify(None)
                continue
            asked = dict(shared.questions)  # a copy: questions may be added or removed meanwhile
            request = describe_request(
                frame.image,
                previous=shared.window.recent(self.source.name),
                questions=asked,
                now_ts=frame.ts,
                max_side=settings.max_side,
                max_new_tokens=min(settings.max_new_tokens, DESCRIBE_MAX_NEW_TOKENS),
                findings=decision.findings,
            )
            submitted = time.monotonic()
            deadline = settings.deadline_s if self.source.live else None
            future = shared.engine.submit(request, deadline_s=deadline, tag=self.source.name)
            item = _Pending(frame, decision.score, future, submitted, asked, findings=decision.findings)
            future.add_done_callback(lambda _f, item=item: setattr(item, "answered", time.monotonic()))
            self.pending.append(item)
            self._settle(keep=self.depth - 1)

    def _settle(self, keep: int) -> None:
        """Commit finished answers in order; block until at most ``keep`` remain in flight.

        Once ``hurry`` is set, the answers not yet in are abandoned instead of waited for.
        """
        while self.pending and (len(self.pending) > keep or self.pending[0].future.done()):
            if not self._answered(self.pending[0].future):
                self._abandon()
                return
            item = self.pending.popleft()
            try:
                result = item.future.result()
            except DeadlineExceeded:
                self.stats.dropped += 1
                self.gate.reset()
                continue
            except (EngineClosed, CancelledError):
                self.stats.abandoned += 1
                continue
            except Exception as exc:  # the backend failed on this frame: a logged skip
                self.stats.failed += 1
                self.gate.reset()
                log.warning("%s: the model failed on the frame at %s: %s", self.source.name, _when(item), exc)
                continue
            answered = item.answered or time.monotonic()
            self._commit(item, result, (answered - item.submitted) * 1000)

    def _answered(self, future: Future[VisionResult]) -> bool:
        """Wait until ``future`` is done; False when told to hurry first."""
        while not future.done():
            if self.shared.hurry.is_set():
                return False
            wait([future], timeout=POLL_S)
        return True

    def _abandon(self) -> None:
        """Give up every request in flight: cancelled if the engine has not started it, never committed."""
        for item in self.pending:
            item.future.cancel()
        self.stats.abandoned += len(self.pending)
        self.pending.clear()

    def _finish_pending(self) -> None:
        """At the end: commit what is in flight; on stop, abandon what the engine has not started."""
        if self.shared.stop.is_set():
            for item in self.pending:
                item.future.cancel()
        self._settle(keep=0)

    def _commit(self, item: _Pending, result: VisionResult, latency_ms: float) -> None:
        shared, frame = self.shared, item.frame
        description = parse_description(result.text, item.questions)
        obs = Observation(
            source=self.source.name,
            ts=frame.ts,
            video_t=frame.video_t,
            gate_score=item.score,
            latency_ms=round(latency_ms, 1),
            model=result.model,
            **asdict(description),
            **observation_fields(item.findings),
        )
        obs.thumb_path = self._save_thumbnail(frame.image, frame.ts)
        with shared.commit_lock:
            shared.store.add(obs)
            shared.window.add(obs)
            notify_listeners(shared.listeners, obs)
            if shared.jsonl is not None:
                shared.jsonl.write(json.dumps(obs.to_dict(), ensure_ascii=False) + "\n")
                shared.jsonl.flush()
        self.stats.analysed += 1
        self.stats.add_latency(latency_ms)
        self._notify(obs)

    def _save_thumbnail(self, image: np.ndarray, ts: float) -> str | None:
        side = self.shared.settings.thumb_side
        height, width = image.shape[:2]
        scale = min(1.0, side / max(height, width))
        small = cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), cv2.INTER_AREA
        )
        path = self.thumbs / f"{round(ts * 1000)}.jpg"
        try:
            self.thumbs.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), small, [cv2.IMWRITE_JPEG_QUALITY, 85]):
                raise OSError("the JPEG encoder failed")
        except (OSError, cv2.error) as exc:
            log.warning("%s: cannot save thumbnail %s: %s", self.source.name, path, exc)
            return None
        return str(path)

    def _hand_on(self, frame: Frame) -> None:
        if self.shared.on_frame is not None:
            try:
                self.shared.on_frame(self.source.name, frame)
            except Exception:  # a frame consumer must not stop the watch
                log.exception("%s: the frame callback failed", self.source.name)

    def _notify(self, obs: Observation | None) -> None:
        if self.shared.on_update is not None:
            try:
                self.shared.on_update(self.stats, obs)
            except Exception:  # the display must not stop the watch
                log.exception("watch display update failed")


def _when(item: _Pending) -> str:
    frame = item.frame
    return (
        f"{frame.video_t:.1f} s"
        if frame.video_t is not None
        else time.strftime("%X", time.localtime(frame.ts))
    )


class _Resumed:
    """A file or folder source picked up where an earlier watch of it left off: the frames up to
    ``after`` seconds of video are read but not handed on (they were analysed then)."""

    def __init__(self, source: FrameSource, after: float) -> None:
        self.inner, self.after = source, after
        self.name, self.live = source.name, source.live

    @property
    def unreadable(self) -> int:
        return self.inner.unreadable

    @property
    def video_s(self) -> float:
        return self.inner.video_s

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for frame in self.inner.frames(stop):
            if frame.video_t is None or frame.video_t > self.after:
                yield frame

    def close(self) -> None:
        self.inner.close()


def open_watched(
    name: str, settings: Settings, start_ts: float, stop: threading.Event | None = None
) -> FrameSource:
    """Open the source stored under ``name`` with the watch settings (ScenewatchError when it cannot);
    a URL that takes long to open is not waited for once ``stop`` is set."""
    return open_source(
        name,
        every_s=settings.every_s,
        start_ts=start_ts,
        frame_interval_s=settings.frame_interval_s,
        reconnect_max_s=settings.reconnect_max_s,
        timeout_s=settings.stream_timeout_s,
        give_up_s=settings.stream_give_up_s,
        jitter_s=settings.sample_jitter_s,
        stop=stop,
    )


EndCallback = Callable[["_SourceWorker"], None]
"""Called on the source's thread when its watch ended (the file ended, an error, or a stop)."""


class Watcher:
    """Sources watched side by side on one engine, store, recent window and listener set.

    :meth:`start` adds an opened source at any time; :meth:`stop_source` ends one (its answers in
    flight are committed); :meth:`stop` ends all, and ``stop`` (when given) does too once
    :meth:`wait` sees it. :meth:`close` stops, waits and closes the listeners; the engine, the
    store and the JSONL file belong to the caller. ``perception`` is the detector stage ahead of
    every source's gate (:mod:`agent.pipeline.perceive`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        store: Store,
        questions: Mapping[str, str] | None = None,
        listeners: Sequence[ObservationListener] = (),
        jsonl: IO[str] | None = None,
        on_update: UpdateCallback | None = None,
        on_frame: FrameCallback | None = None,
        on_end: EndCallback | None = None,
        stop: threading.Event | None = None,
        hurry: threading.Event | None = None,
        perception: Perception | None = None,
    ) -> None:
        self.stop_event = stop or threading.Event()
        self.shared = _Shared(
            settings,
            engine,
            store,
            RecentWindow(settings.window),
            questions if questions is not None else {},  # the caller's dict: it may change meanwhile
            listeners,
            jsonl,
            on_update,
            self.stop_event,
            hurry or threading.Event(),
            on_frame=on_frame,
            perception=perception,
        )
        self.on_end = on_end
        self._workers: dict[str, _SourceWorker] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start(self, source: FrameSource, *, after_video_t: float | None = None) -> _SourceWorker:
        """Watch an opened source on a thread of its own (a file from ``after_video_t`` seconds on).

        ScenewatchError when a source of that name is still being watched (the source is closed).
        """
        with self._lock:
            running = self._workers.get(source.name)
            if self._closed or (running is not None and not running.done.is_set()):
                source.close()
                what = "the watch is closing" if self._closed else "it is already being watched"
                raise ScenewatchError(f"cannot watch {source.name}: {what}")
            self.shared.window.seed(self.shared.store, [source.name])
            own = replace(self.shared, stop=threading.Event())
            if self.stop_event.is_set():
                own.stop.set()
            watched = source if after_video_t is None else _Resumed(source, after_video_t)
            worker = _SourceWorker(watched, own)
            self._workers[source.name] = worker
        threading.Thread(target=self._run, args=(worker,), name=f"watch-{source.name}", daemon=True).start()
        return worker

    def _run(self, worker: _SourceWorker) -> None:
        worker.run()
        if self.on_end is not None:
            try:
                self.on_end(worker)
            except Exception:
                log.exception("%s: the end-of-watch callback failed", worker.source.name)

    @property
    def workers(self) -> dict[str, _SourceWorker]:
        """Every source started so far (the latest worker of each name), running or ended."""
        with self._lock:
            return dict(self._workers)

    def stop_source(self, name: str, timeout: float | None = None) -> bool:
        """End one source's watch; True once its worker is done (within ``timeout``, if given)."""
        worker = self.workers.get(name)
        if worker is None:
            return True
        worker.shared.stop.set()
        return worker.done.wait(timeout)

    def stop(self) -> None:
        """End every source's watch (the answers in flight are still committed)."""
        self.stop_event.set()
        for worker in self.workers.values():
            worker.shared.stop.set()

    def hurry(self) -> None:
        """After :meth:`stop`: abandon the answers in flight too."""
        self.shared.hurry.set()

    def wait(self) -> None:
        """Wait until every source started so far is done; ``stop`` set meanwhile stops them all.

        In short steps on the workers' ``done`` events, so signal handlers run meanwhile (not
        ``Thread.join``: on Python 3.11 an exception raised by a signal handler inside ``join``
        can mark a running thread as finished, bpo-45274).
        """
        for worker in self.workers.values():
            while not worker.done.is_set():
                if self.stop_event.is_set():
                    self.stop()
                worker.done.wait(POLL_S)

    def close(self) -> None:
        """Stop every source, wait for them, then close the listeners (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.stop()
        self.wait()
        close_listeners(self.shared.listeners)


def run_watch(
    sources: list[str],
    settings: Settings,
    *,
    engine: Engine,
    store: Store,
    questions: dict[str, str] | None = None,
    listeners: Sequence[ObservationListener] = (),
    jsonl: Path | None = None,
    on_update: UpdateCallback | None = None,
    on_frame: FrameCallback | None = None,
    stop: threading.Event | None = None,
    hurry: threading.Event | None = None,
    perception: Perception | None = None,
) -> WatchSummary:
    """Watch every source until the files end or ``stop`` is set; return what happened.

    Files and folders are watched and stored under their absolute path (:func:`~agent.sources.source_name`).
    Sources are opened first: a missing file, an empty folder or a video that cannot be opened
    raises ScenewatchError before anything runs. A file or folder from which no frame can be
    read ends that source with an error (``summary.errors``); :func:`~agent.sources.probe_source`
    finds those up front, before a model loads. A live source that sends no frame within
    ``stream_give_up_s`` ends with an error too; once one has come, it retries for ever.
    Setting ``hurry`` after ``stop`` abandons the answers still in flight (module docstring).
    ``perception``: the detector stage ahead of the gate (:mod:`agent.pipeline.perceive`).
    The listeners are closed at the end; the engine and the store belong to the caller.

    ``questions`` may change while the watch runs (a dict one writer updates, such as
    :attr:`~agent.events.rule_engine.RuleEngine.questions`): each frame's prompt reads a copy.
    ``on_frame(source, frame)`` is called on the source's thread with every sampled frame, before the
    gate (the clip recorder's ring buffer); it must be quick.
    """
    stop = stop or threading.Event()
    names = unique_names(sources)
    started, start_ts = time.monotonic(), current_time()
    opened: list[FrameSource] = []
    jsonl_file: IO[str] | None = None
    try:
        for name in names:
            opened.append(open_watched(name, settings, start_ts, stop))
        jsonl_file = _open_jsonl(jsonl) if jsonl is not None else None
    except BaseException:
        for source in opened:
            source.close()
        close_listeners(listeners)
        raise
    batches_before = engine.stats.batches
    watcher = Watcher(
        settings,
        engine=engine,
        store=store,
        questions=questions,
        listeners=listeners,
        jsonl=jsonl_file,
        on_update=on_update,
        on_frame=on_frame,
        stop=stop,
        hurry=hurry,
        perception=perception,
    )
    try:
        workers = [watcher.start(source) for source in opened]
        watcher.wait()
    except KeyboardInterrupt:
        watcher.stop()
        watcher.wait()
        raise
    finally:
        watcher.close()
        if jsonl_file is not None:
            jsonl_file.close()
    return WatchSummary(
        sources={worker.source.name: worker.stats for worker in workers},
        wall_s=time.monotonic() - started,
        model_calls=engine.stats.batches - batches_before,
    )


def unique_names(sources: Sequence[str]) -> list[str]:
    """The sources' names (:func:`~agent.sources.source_name`); ScenewatchError for none or a repeat."""
    if not sources:
        raise ScenewatchError("no source to watch")
    names = [source_name(spec) for spec in sources]
    repeated = next((name for index, name in enumerate(names) if name in names[:index]), None)
    if repeated is not None:
        raise ScenewatchError(f"a source is given twice: {repeated}")
    return names


def _open_jsonl(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise ScenewatchError(f"cannot write {path}: {exc}") from exc
