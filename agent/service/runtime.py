"""The running service: one pipeline, one watcher, and the sources users add, pause and remove.

:class:`Service` opens a reading connection to the store at once (the API's reads never wait for
the model), then, on a thread of its own, the pipeline (:func:`~agent.pipeline.session.open_pipeline`:
store, episode tracker, indexer, rules engine, engine), the MQTT state publisher after the rules
engine (when ``SCENEWATCH_MQTT_HOST`` is set), the clip recorder (when a rule asks for clips), the
agent's watches (:class:`~agent.events.watchlist.Watchlist`) and a
:class:`~agent.pipeline.watch.Watcher`, and starts the sources recorded as ``watching`` in the
``sources`` table (:mod:`memory.sources`) and those named on the command line. Until then it is
not ready: what needs the model or changes sources answers 503. With ``SCENEWATCH_REDIS_URL``
(``serve --redis``) it is also the scale-out's recorder (:mod:`agent.distributed.recorder`): the
workers' results are stored through the same listeners, so the API, stream, rules and MQTT see them.

There is always a rules engine (with no rules file, an empty one): the agent's watches are rules
added to it while it runs, and its ``questions`` are the watch questions every frame reads a copy
of. With MQTT set, every rule and watch also sends its events to the broker (the ``mqtt`` sink).

Sources persist: added, paused, resumed and removed through :meth:`Service.add_source` and its
siblings, they are recorded first, so a restart brings back what was being watched. A file or
folder comes back where it was (its last analysed position, same times); a file watched to its
end is ``finished`` and stays so; a watch that ended on an error is ``failed`` until resumed.
:meth:`Service.close` stops the sources (answers in flight are committed), closes the listeners,
the engine and the stores, as ``scenewatch watch`` does at its end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from agent.core.config import Settings
from agent.core.durations import current_time
from agent.core.errors import ScenewatchError
from agent.distributed.recorder import Recorder
from agent.distributed.redis_streams import Streams, connect
from agent.events.mqtt import MqttState, mqtt_target
from agent.events.ruleset import RuleSet, StateChanges
from agent.events.watchlist import Watchlist
from agent.pipeline.clips import ClipRecorder
from agent.pipeline.session import Pipeline, Recording, open_pipeline
from agent.pipeline.watch import Watcher, _SourceWorker, open_watched  # the worker: a type only
from agent.service.documents import observation_document
from agent.service.errors import Conflict, NotFound, NotReady
from agent.service.metrics import FRAME_COUNTS, ServiceMetrics
from agent.service.stream import CommitSignal
from agent.sources import Frame, probe_source, source_name
from memory import sources as recorded
from memory.events import Outbox
from memory.sources import SourceRecord
from memory.store import Store
from memory.vectors import VectorIndex
from tools.vision.base import VisionBackend, VisionRequest, VisionResult
from tools.vision.engine import Engine

log = logging.getLogger(__name__)

STOP_WAIT_S = 30.0
"""Longest a pause or a removal waits for the source's answers in flight."""


@dataclass
class SourceFigures:
    """What the service did with one source since it started (over every watch of it)."""

    frames: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0


@dataclass
class _Seen:
    """When a source's latest frame came, and how many reconnects its reader had made by then."""

    at: float
    reconnects: int


class Service:
    """The store, the pipeline and the sources of ``scenewatch serve`` (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        ruleset: RuleSet | None = None,
        sources: Sequence[str] = (),
        questions: dict[str, str] | None = None,
        backend: VisionBackend | None = None,
    ) -> None:
        self.settings = settings
        rules = ruleset or RuleSet({}, {}, (), StateChanges())
        self.mqtt = mqtt_target(settings)
        self.ruleset = rules.with_sink("mqtt", self.mqtt) if self.mqtt is not None else rules
        self.questions, self.backend = questions, backend
        self.requested = list(sources)
        self.reader = Store(settings.db_path)
        recorded.ensure_schema(self.reader)
        self.outbox = Outbox(self.reader)
        self.commits = CommitSignal()
        self.failure: str | None = None
        self.on_failure: Callable[[str], None] | None = None
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._stack = ExitStack()
        self._pipeline: Pipeline | None = None
        self._watcher: Watcher | None = None
        self._watches: Watchlist | None = None
        self._clips: ClipRecorder | None = None
        self._loader: threading.Thread | None = None
        self.recorder: Recorder | None = None  # with --redis: the scale-out's recorder
        self._recorder_thread: threading.Thread | None = None
        self._changes = threading.RLock()  # one change of sources at a time
        self._history: dict[str, list[_SourceWorker]] = {}  # every watch of each source
        self._seen: dict[str, _Seen] = {}
        self._vectors: VectorIndex | None = None
        self._vectors_lock = threading.Lock()
        self.metrics = ServiceMetrics(self)

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model and start the sources on a thread (:attr:`ready` once done)."""
        self._loader = threading.Thread(target=self._load, name="scenewatch-service-start", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        try:
            longest_clip = max((rule.clip_s for rule in self.ruleset.rules), default=0.0)
            if longest_clip:  # closed after the pipeline: the clips still waiting are written then
                self._clips = ClipRecorder(self.settings, seconds=longest_clip)
                self._stack.callback(self._clips.close)
            pipeline = self._stack.enter_context(
                open_pipeline(
                    self.settings,
                    ruleset=self.ruleset,
                    questions=self.questions,
                    backend=self.backend,
                    instrument=self.metrics.instrument,
                    clips=self._clips,
                )
            )
            rules = pipeline.rules
            assert rules is not None  # a ruleset was given
            if self._clips is not None:  # how far each source is committed: its frames are kept until then
                pipeline.listeners.append(self._clips)
            if self.mqtt is not None:  # after the rules engine: it reads the rules' states
                pipeline.listeners.append(MqttState(self.mqtt, rules))
            pipeline.listeners.append(self.commits)  # last: after the rules committed their events
            self._pipeline = pipeline
            self._watches = Watchlist(self.reader, rules, sources=lambda: sorted(self.watched()))
            self._watcher = pipeline.watcher(on_frame=self._on_frame, on_end=self._on_end)
            if self.settings.redis_url:
                self._start_recorder(pipeline, self._watcher)
            if self._closing.is_set():
                return
            with self._changes:
                self._restore()
            self._ready.set()
            log.info("ready: %s, %d source(s) watched", pipeline.engine.model_name, len(self.watched()))
        except Exception as exc:  # a model that cannot load, a bad store: the service cannot run
            self.failure = str(exc) if isinstance(exc, ScenewatchError) else f"{type(exc).__name__}: {exc}"
            log.error("the service cannot start: %s", self.failure)
            if self.on_failure is not None:
                self.on_failure(self.failure)

    def _start_recorder(self, pipeline: Pipeline, watcher: Watcher) -> None:
        """``serve --redis``: the scale-out's recorder on a thread of its own, storing the workers'
        results through this service's store and listeners (so the stream, metrics, rules and MQTT
        see them) under the watcher's commit lock; it stops when the service closes."""
        assert self.settings.redis_url is not None
        recording = Recording(
            self.settings,
            pipeline.store,
            pipeline.listeners,
            pipeline.questions,
            commit_lock=watcher.shared.commit_lock,
        )
        self.recorder = Recorder(Streams(connect(self.settings.redis_url), self.settings), recording)
        self._recorder_thread = threading.Thread(
            target=self._run_recorder, name="scenewatch-recorder", daemon=True
        )
        self._recorder_thread.start()
        log.info("recording %s into %s", self.recorder.streams.observations, pipeline.store.path)

    def _run_recorder(self) -> None:
        assert self.recorder is not None
        try:
            self.recorder.run(self._closing)
        except ScenewatchError as exc:  # a database that fails: nothing unstored was acknowledged
            log.error("the recorder stopped: %s", exc)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until ready (or failed); True when ready."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.failure is not None or (deadline is not None and time.monotonic() > deadline):
                return False
        return True

    def require_ready(self) -> Pipeline:
        """The pipeline; NotReady (503) while the model loads or after it failed to."""
        if self.failure is not None:
            raise NotReady(f"the service failed to start: {self.failure}")
        if not self.ready or self._pipeline is None:
            raise NotReady("the service is starting: the model is loading")
        return self._pipeline

    @property
    def engine(self) -> Engine:
        return self.require_ready().engine

    @property
    def watches(self) -> Watchlist:
        """The agent's watches, run by the service's rules engine (NotReady until it is loaded)."""
        self.require_ready()
        assert self._watches is not None
        return self._watches

    def watch_documents(self, source: str | None = None, *, removed: bool = False) -> list[dict[str, Any]]:
        """The stored watches (of ``source``) as the API shows them: each with ``running``, whether its
        rule runs now (its source is being watched)."""
        watches = self.watches
        assert watches.rule_engine is not None
        running = {rule.name for rule in watches.rule_engine.ruleset.rules}
        return [
            {**watch.to_dict(), "running": watch.active and watch.name in running}
            for watch in watches.list(source, removed=removed)
        ]

    def queue_depth(self) -> int:
        return self._pipeline.engine.queued if self._pipeline is not None else 0

    def hurry(self) -> None:
        """Abandon the answers in flight at shutdown (a second Ctrl-C)."""
        if self._watcher is not None:
            self._watcher.hurry()
        if self._pipeline is not None:
            self._pipeline.abandon = True

    def close(self) -> None:
        """Stop the sources (their answers in flight are committed), then close the listeners, the
        engine and the stores. Waits for a model still loading."""
        self._closing.set()
        self.commits.notify()
        if self._loader is not None:
            self._loader.join()
        try:
            if self._recorder_thread is not None:  # its batch in hand is stored first
                self._recorder_thread.join()
            if self._watcher is not None:
                self._watcher.close()
            self._stack.close()
        finally:
            if self._vectors is not None:
                self._vectors.close()
            self.reader.close()

    # -- sources ----------------------------------------------------------------------------

    def sources(self) -> list[dict[str, Any]]:
        """Every recorded source as the API shows it."""
        return [self._view(record) for record in recorded.list_sources(self.reader)]

    def source(self, source_id: int) -> dict[str, Any]:
        return self._view(self._record(source_id))

    def add_source(self, spec: str) -> dict[str, Any]:
        """Record a new source and start watching it (Conflict when it is recorded already)."""
        self.require_ready()
        with self._changes:
            name = source_name(spec.strip())
            if recorded.get_source(self.reader, name) is not None:
                raise Conflict(f"source {name} is already added")
            record = self._add(name)
        return self._view(record)

    def pause(self, source_id: int) -> dict[str, Any]:
        """Stop watching a source, keep it recorded as ``paused``."""
        self.require_ready()
        with self._changes:
            record = self._record(source_id)
            if record.state in ("finished", "failed"):
                raise Conflict(f"source {record.name} is {record.state}: nothing to pause")
            recorded.set_state(self.reader, record.name, "paused", now=current_time())
            self._stop(record.name)
        return self.source(source_id)

    def resume(self, source_id: int) -> dict[str, Any]:
        """Watch a paused or failed source again (a file from where it was)."""
        self.require_ready()
        with self._changes:
            record = self._record(source_id)
            if record.state == "finished":
                raise Conflict(f"source {record.name} was watched to its end")
            if record.state != "watching" or record.name not in self.watched():
                self._start(record)
        return self.source(source_id)

    def remove(self, source_id: int) -> None:
        """Stop watching a source and forget it (its observations stay)."""
        self.require_ready()
        with self._changes:
            record = self._record(source_id)
            self._stop(record.name)
            recorded.remove_source(self.reader, record.name)

    def watched(self) -> set[str]:
        """The sources being watched now."""
        workers = self._watcher.workers if self._watcher is not None else {}
        return {name for name, worker in workers.items() if not worker.done.is_set()}

    def _record(self, source_id: int) -> SourceRecord:
        record = recorded.source_by_id(self.reader, source_id)
        if record is None:
            raise NotFound(f"no source with id {source_id}")
        return record

    def _restore(self) -> None:
        """Start the sources recorded as watching, then those named on the command line."""
        for record in recorded.list_sources(self.reader):
            if record.state == "watching":
                self._start(record, quietly=True)
        for spec in self.requested:
            name = source_name(spec)
            record = recorded.get_source(self.reader, name)
            if record is None:
                self._add(name)
            elif record.state == "finished":
                log.info("%s was watched to its end: not watched again", name)
            elif record.state != "watching" or name not in self.watched():
                self._start(record)

    def _add(self, name: str) -> SourceRecord:
        probe_source(name)
        now = current_time()
        source = open_watched(name, self.settings, now)
        try:
            record = recorded.add_source(self.reader, name, live=source.live, start_ts=now, now=now)
            self._begin(source, None)
        except BaseException:
            source.close()
            raise
        log.info("watching %s", name)
        return record

    def _start(self, record: SourceRecord, *, quietly: bool = False) -> None:
        """Open and watch a recorded source; a failure to open marks it failed (raised unless
        ``quietly``, at a restart)."""
        start_ts = current_time() if record.live else record.start_ts
        try:
            source = open_watched(record.name, self.settings, start_ts)
        except ScenewatchError as exc:
            recorded.set_state(self.reader, record.name, "failed", now=current_time(), error=str(exc))
            if not quietly:
                raise
            log.error("%s: cannot watch it again: %s", record.name, exc)
            return
        self._begin(source, recorded.resume_position(self.reader, record))
        recorded.set_state(self.reader, record.name, "watching", now=current_time())

    def _begin(self, source: Any, after_video_t: float | None) -> None:
        """Watch an opened source, its stored watches running from its first frame."""
        assert self._watcher is not None and self._watches is not None
        self._watches.start([source.name])
        worker = self._watcher.start(source, after_video_t=after_video_t)
        self._history.setdefault(source.name, []).append(worker)

    def _stop(self, name: str) -> None:
        if self._watcher is not None and not self._watcher.stop_source(name, STOP_WAIT_S):
            log.warning("%s: still finishing its answers in flight after %.0f s", name, STOP_WAIT_S)
        if self._watches is not None:
            self._watches.stop([name])

    def _on_end(self, worker: _SourceWorker) -> None:
        """A watch ended: a file at its end is finished, an error is failed; a stop changes nothing."""
        if worker.shared.stop.is_set():
            return
        if self._watches is not None:  # its watches stop asking their questions of the other sources
            self._watches.stop([worker.source.name])
        stats = worker.stats
        state = "failed" if stats.error or worker.source.live else "finished"
        error = stats.error or ("the stream ended" if worker.source.live else None)
        recorded.set_state(self.reader, worker.source.name, state, now=current_time(), error=error)
        log.info("%s: %s%s", worker.source.name, state, f" ({error})" if error else "")

    def _on_frame(self, name: str, frame: Frame) -> None:
        worker = self._watcher.workers.get(name) if self._watcher is not None else None
        reconnects = getattr(worker.source, "reconnects", 0) if worker is not None else 0
        self._seen[name] = _Seen(time.monotonic(), reconnects)
        if self._clips is not None:
            self._clips.on_frame(name, frame)

    def _view(self, record: SourceRecord) -> dict[str, Any]:
        figures = self._figures(record.name)
        latest = self.reader.recent(record.name, 1)
        return {
            **record.to_dict(),
            "state": self._state(record),
            "sampled": figures.frames["sampled"],
            "analysed": figures.frames["analysed"],
            "gated": figures.frames["skipped"],
            "reconnects": figures.reconnects,
            "latest": observation_document(latest[0]) if latest else None,
        }

    def _state(self, record: SourceRecord) -> str:
        """The recorded state, or what a watched source is doing: starting, watching, reconnecting."""
        if record.state != "watching":
            return record.state
        worker = self._watcher.workers.get(record.name) if self._watcher is not None and self.ready else None
        if worker is None or worker.done.is_set():
            return "starting"
        seen = self._seen.get(record.name)
        reconnects = getattr(worker.source, "reconnects", 0)
        if reconnects > (seen.reconnects if seen is not None else 0):
            return "reconnecting"
        return "watching"

    # -- figures ----------------------------------------------------------------------------

    def _figures(self, name: str) -> SourceFigures:
        figures = SourceFigures()
        for worker in self._history.get(name, ()):
            stats = worker.stats
            figures.frames.update({field: getattr(stats, field) for field in FRAME_COUNTS})
            figures.reasons.update(stats.reasons)
            figures.reconnects += getattr(worker.source, "reconnects", 0)
        return figures

    def source_counts(self) -> dict[str, SourceFigures]:
        """Per source, what the service did with it since it started."""
        return {name: self._figures(name) for name in list(self._history)}

    def state_counts(self) -> dict[str, int]:
        """How many recorded sources are in each state."""
        return dict(Counter(self._state(record) for record in recorded.list_sources(self.reader)))

    # -- what the API reads besides the store ---------------------------------------------------

    def vectors(self) -> VectorIndex:
        """The vector index for recall, the agent and MCP (opened at first use: it loads the embedder);
        one for every thread (it runs one call at a time)."""
        with self._vectors_lock:
            if self._vectors is None:
                self._vectors = VectorIndex(self.reader, self.settings)
            return self._vectors

    @contextmanager
    def assistant(self, *, source: str | None, thread: str | None) -> Iterator[Any]:
        """An assistant on this service's engine and vectors, in ``thread`` (a new one when None)."""
        from agent.assistant.agent import open_assistant

        engine = self.engine
        with open_assistant(
            self.settings,
            source=source,
            thread=thread,
            engine=engine,
            vectors=self.vectors(),
            watches=self.watches,
        ) as assistant:
            yield assistant


class ServiceEngine:
    """The service's engine for what is built before the model loads (the MCP server): a vision
    backend whose requests go to the engine once it is loaded, NotReady (503) until then."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @property
    def model_name(self) -> str:
        return self.service.engine.model_name if self.service.ready else self.service.settings.model

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        return self.service.engine.generate(requests)
