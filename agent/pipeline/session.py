"""One watch's parts wired in their documented order: the store, the listeners, the engine.

``open_pipeline`` is what ``scenewatch watch``, the benchmarks and the tests share (and later the
service): the listeners run in the order docs/ARCHITECTURE.md gives (episode tracker, indexer,
rules engine), and everything is closed in reverse when the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agent.core.config import Settings
from agent.events.rule_engine import RuleEngine
from agent.events.ruleset import RuleSet
from agent.pipeline.listeners import ObservationListener, close_listeners
from agent.pipeline.perceive import Perception
from agent.pipeline.stats import WatchSummary
from agent.pipeline.watch import run_watch
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
    abandon: bool = False  # set when the model may still be on a batch nobody waits for
    watched: bool = False  # run_watch has closed the listeners

    def watch(self, sources: Sequence[str], **options: Any) -> WatchSummary:
        """:func:`~agent.pipeline.watch.run_watch` of ``sources`` with these parts (it closes the
        listeners)."""
        self.watched = True
        return run_watch(
            list(sources),
            self.settings,
            engine=self.engine,
            store=self.store,
            questions=self.questions,
            listeners=self.listeners,
            perception=self.perception,
            **options,
        )


@contextmanager
def open_pipeline(
    settings: Settings,
    *,
    ruleset: RuleSet | None = None,
    questions: dict[str, str] | None = None,
    backend: VisionBackend | None = None,
    memory: bool = True,
) -> Iterator[Pipeline]:
    """The store at ``settings.db_path``; with ``memory``, the episode tracker and the indexer; the
    rules engine of ``ruleset``; the detector stage (``settings.detector``, always with the
    ``detector`` backend) with the ruleset's sources; then the engine over ``backend`` (default: the
    one the settings name, loaded last so that a bad store, rules file or detector setting costs no
    model load).

    The watch questions are the ruleset's, then ``questions``. At the end the engine is closed
    (unless ``pipeline.abandon`` was set: a batch may still be running) and the store last.
    """
    store = Store(settings.db_path)
    listeners: list[ObservationListener] = []
    try:
        listeners += _listeners(store, settings, ruleset, memory)
        perception = watch_perception(settings, ruleset)
        engine = Engine(
            backend or make_backend(settings),
            batch_size=settings.batch_size,
            batch_wait_ms=settings.batch_wait_ms,
        )
    except BaseException:
        _close(listeners)
        store.close()
        raise
    asked = {**(ruleset.questions if ruleset else {}), **(questions or {})}
    pipeline = Pipeline(settings, store, engine, listeners, asked, perception)
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
    store: Store, settings: Settings, ruleset: RuleSet | None, memory: bool
) -> list[ObservationListener]:
    """The episode tracker and the indexer (with ``memory``), then the rules engine of ``ruleset``."""
    listeners: list[ObservationListener] = []
    try:
        if memory:
            listeners.append(EpisodeTracker(store, settings))
            listeners.append(Indexer(store, settings))
        if ruleset is not None:
            listeners.append(RuleEngine(ruleset, store, settings))
    except BaseException:
        _close(listeners)
        raise
    return listeners


def _close(listeners: Sequence[ObservationListener]) -> None:
    for listener in listeners:
        listener.close()
