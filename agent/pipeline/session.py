"""One watch's parts wired in their documented order: the store, the listeners, the engine.

``open_pipeline`` is what ``scenewatch watch``, ``scenewatch serve``, the benchmarks and the tests
share: the listeners run in the order docs/ARCHITECTURE.md gives (episode tracker, indexer, rules
engine), and everything is closed in reverse when the block ends. A watch runs a fixed list of
sources to its end (:meth:`Pipeline.watch`); the service keeps a :class:`~agent.pipeline.watch.Watcher`
whose sources come and go (:meth:`Pipeline.watcher`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agent.core.config import Settings
from agent.events.rule_engine import ClipMaker, RuleEngine
from agent.events.ruleset import RuleSet
from agent.pipeline.listeners import ObservationListener, close_listeners
from agent.pipeline.perceive import Perception
from agent.pipeline.stats import WatchSummary
from agent.pipeline.watch import Watcher, run_watch
from memory.episodes import EpisodeTracker
from memory.indexer import Indexer
from memory.store import Store
from tools.vision.base import VisionBackend
from tools.vision.engine import Engine
from tools.vision.registry import make_backend


@dataclass
class Pipeline:
    """An open store, the listeners of one watch, and the engine that owns the model."""

    settings: Settings
    store: Store
    engine: Engine
    listeners: list[ObservationListener] = field(default_factory=list)
    questions: dict[str, str] = field(default_factory=dict)
    perception: Perception | None = None  # the detector stage; None: the change gate alone
    rules: RuleEngine | None = None  # the rules engine among the listeners, when there are rules
    abandon: bool = False  # set when the model may still be on a batch nobody waits for
    watched: bool = False  # a watch or a watcher closes the listeners

    def watch(self, sources: Sequence[str], **options: Any) -> WatchSummary:
        """:func:`~agent.pipeline.watch.run_watch` of ``sources`` with these parts (it closes the
        listeners)."""
        return run_watch(list(sources), self.settings, **self._parts(), **options)

    def watcher(self, **options: Any) -> Watcher:
        """A :class:`~agent.pipeline.watch.Watcher` with these parts, its sources to be started (its
        ``close`` closes the listeners)."""
        return Watcher(self.settings, **self._parts(), **options)

    def _parts(self) -> dict[str, Any]:
        """What a watch runs on; the listeners are the watch's to close from now on."""
        self.watched = True
        return {
            "engine": self.engine,
            "store": self.store,
            "questions": self.questions,
            "listeners": self.listeners,
            "perception": self.perception,
        }


@contextmanager
def open_pipeline(
    settings: Settings,
    *,
    ruleset: RuleSet | None = None,
    questions: dict[str, str] | None = None,
    backend: VisionBackend | None = None,
    memory: bool = True,
    instrument: Callable[[VisionBackend], VisionBackend] | None = None,
    clips: ClipMaker | None = None,
) -> Iterator[Pipeline]:
    """The store at ``settings.db_path``; with ``memory``, the episode tracker and the indexer; the
    rules engine of ``ruleset`` (making its rules' clips with ``clips``); the detector stage
    (``settings.detector``, always with the ``detector`` backend) with the ruleset's sources; then
    the engine over ``backend`` (default: the one the settings name, loaded last so that a bad
    store, rules file or detector setting costs no model load), wrapped by ``instrument`` when
    given (the service's metrics).

    The watch questions are the ruleset's, then ``questions``; with a ruleset they are the rules
    engine's own mapping (:attr:`RuleEngine.questions`), so rules added while the watch runs are
    asked from the next frame. At the end the engine is closed (unless ``pipeline.abandon`` was
    set: a batch may still be running) and the store last.
    """
    store = Store(settings.db_path)
    listeners: list[ObservationListener] = []
    try:
        listeners += _listeners(store, settings, ruleset, memory, clips)
        engines = [listener for listener in listeners if isinstance(listener, RuleEngine)]
        rules = engines[0] if engines else None
        perception = watch_perception(settings, ruleset)
        vision = backend or make_backend(settings)
        engine = Engine(
            instrument(vision) if instrument is not None else vision,
            batch_size=settings.batch_size,
            batch_wait_ms=settings.batch_wait_ms,
        )
    except BaseException:
        _close(listeners)
        store.close()
        raise
    asked = rules.questions if rules is not None else {}
    asked.update(questions or {})
    pipeline = Pipeline(settings, store, engine, listeners, asked, perception=perception, rules=rules)
    try:
        yield pipeline
    finally:
        try:
            if not pipeline.watched:
                _close(listeners)
            if not pipeline.abandon:
                engine.close()
        finally:
            store.close()


def watch_perception(settings: Settings, ruleset: RuleSet | None = None) -> Perception | None:
    """The detector stage of a watch or a capture process (``settings.detector``, always with the
    ``detector`` backend), with the ruleset's per-source rules; None when it is off."""
    if not (settings.detector or settings.backend == "detector"):
        return None
    return Perception(settings, ruleset.sources if ruleset else None)


@dataclass
class Recording:
    """An open store and the listeners of its observations, with no model: what the recorder of the
    scale-out (``scenewatch record``) commits through."""

    settings: Settings
    store: Store
    listeners: list[ObservationListener] = field(default_factory=list)
    questions: dict[str, str] = field(default_factory=dict)
    commit_lock: threading.Lock = field(default_factory=threading.Lock)
    """Held while a result is stored and its listeners run: ``serve --redis`` shares its watcher's."""


@contextmanager
def open_recording(
    settings: Settings,
    *,
    ruleset: RuleSet | None = None,
    questions: dict[str, str] | None = None,
    memory: bool = True,
) -> Iterator[Recording]:
    """The store and the listeners :func:`open_pipeline` wires, in the same order, without an engine.

    The listeners are closed at the end, then the store.
    """
    store = Store(settings.db_path)
    listeners: list[ObservationListener] = []
    try:
        listeners += _listeners(store, settings, ruleset, memory)
        asked = {**(ruleset.questions if ruleset else {}), **(questions or {})}
        yield Recording(settings, store, listeners, asked)
    finally:
        try:
            close_listeners(listeners)
        finally:
            store.close()


def _listeners(
    store: Store, settings: Settings, ruleset: RuleSet | None, memory: bool, clips: ClipMaker | None = None
) -> list[ObservationListener]:
    """The episode tracker and the indexer (with ``memory``), then the rules engine of ``ruleset``
    (making its rules' clips with ``clips``)."""
    listeners: list[ObservationListener] = []
    try:
        if memory:
            listeners.append(EpisodeTracker(store, settings))
            listeners.append(Indexer(store, settings))
        if ruleset is not None:
            listeners.append(RuleEngine(ruleset, store, settings, clips=clips))
    except BaseException:
        _close(listeners)
        raise
    return listeners


def _close(listeners: Sequence[ObservationListener]) -> None:
    for listener in listeners:
        listener.close()
