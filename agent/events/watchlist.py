"""The watches the agent sets up: checked with the rules parser, stored, and run by a rules engine.

A :class:`Watchlist` is what the agent's ``watch`` tool (:mod:`tools.watch`) and the service's
``/api/watches`` work through. With a running :class:`~agent.events.rule_engine.RuleEngine` and the
names of the sources it watches, a new watch starts at once: its question joins the watch questions
(the next describe prompts ask it) and its rule is evaluated on that source's next observations.
Without one (``scenewatch ask`` outside the service) a watch is only stored, and the service starts
it when it watches that source (:meth:`Watchlist.start`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence

from agent.core.errors import ScenewatchError
from agent.events.rule_engine import RuleEngine
from agent.events.ruleset import Rule, watch_rule
from agent.sources import resolve_source
from memory.store import Store
from memory.watches import Watch, add_watch, list_watches, remove_watch

log = logging.getLogger(__name__)

_FILLER_WORDS = (  # words that do not say what a question is about
    "is are was were be been a an the there any anything anyone does do did has have had "
    "can could will would should at on in of by to for from with into onto now currently still right"
)
_FILLER = frozenset(_FILLER_WORDS.split())

_NAME_WORDS = 4


def question_name(question: str, taken: Iterable[str] = ()) -> str:
    """A predicate name for a question (``Is a package left at the door?`` -> ``package_left_door``),
    made unique against ``taken`` with a number."""
    words = re.findall(r"[a-z0-9]+", question.lower())
    kept = [word for word in words if word not in _FILLER] or words or ["watch"]
    base = "_".join(kept[:_NAME_WORDS])[:40].strip("_")
    base = base if base[:1].isalpha() else f"watch_{base}"
    used = set(taken)
    name, number = base, 2
    while name in used:
        name, number = f"{base}_{number}", number + 1
    return name


class Watchlist:
    """Adds, lists, removes and starts watches over ``store``; runs them with ``rule_engine`` on the
    sources ``sources()`` names (the running service's; without ``sources``, on any source), or only
    stores them when there is no rules engine. Watches go on watched sources only (the model picks
    the source, and the model reads text from the scene), or on one the user ``named``."""

    def __init__(
        self,
        store: Store,
        rule_engine: RuleEngine | None = None,
        sources: Callable[[], Sequence[str]] | None = None,
        *,
        named: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.rule_engine = rule_engine
        self._sources = sources
        self._named = [name for name in named if name]
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether new watches start at once (a service with a rules engine), or are only stored."""
        return self.rule_engine is not None

    def running_sources(self) -> list[str]:
        """The sources the service watches now (none without a rules engine or ``sources``)."""
        return list(self._sources()) if self._sources is not None and self.rule_engine is not None else []

    def _runs(self, source: str) -> bool:
        return self.rule_engine is not None and (self._sources is None or source in self._sources())

    def add(
        self,
        *,
        source: str | None,
        question: str,
        name: str | None = None,
        when: str | None = None,
        hold: str | None = None,
        severity: str = "warning",
    ) -> tuple[Watch, bool]:
        """Check and store a watch; start it when its source is running. Returns the watch and whether
        it started. Anything wrong (an unknown source, a bad predicate, a taken name) is a
        ScenewatchError saying what, before anything is stored."""
        with self._lock:
            where = self._source(source)
            taken = self._names()
            name = name or question_name(question, taken)
            if name in taken:
                raise ScenewatchError(
                    f"the name {name} is taken (by a rule, question or watch): choose another"
                )
            rule = self._rule(name, question.strip(), where, when, hold, severity)
            watch = add_watch(
                self.store,
                source=where,
                name=name,
                question=question.strip(),
                predicate=rule.when.text,
                hold=str(rule.hold),
                severity=severity,
            )
            started = self._runs(where)
            if started:
                try:
                    self.rule_engine.add_rule(rule, {name: watch.question})  # type: ignore[union-attr]
                except ScenewatchError:
                    remove_watch(self.store, watch.id)
                    raise
            log.info("watch %s (%s) on %s: %s", watch.id, name, where, "started" if started else "stored")
            return watch, started

    def remove(self, watch_id: int) -> Watch:
        """Remove an active watch and stop its rule and question; ScenewatchError when there is none."""
        with self._lock:
            watch = remove_watch(self.store, watch_id)
            if watch is None:
                raise ScenewatchError(f"no active watch with id {watch_id}")
            if self.rule_engine is not None:
                self.rule_engine.remove_rule(watch.name, (watch.name,))
            return watch

    def list(self, source: str | None = None, *, removed: bool = False) -> list[Watch]:
        """The stored watches, oldest first (:func:`memory.watches.list_watches`)."""
        return list_watches(self.store, source=source, removed=removed)

    def start(self, sources: Iterable[str] | None = None) -> list[Watch]:
        """Run the stored watches of ``sources`` (default: every running source) that are not running
        yet: at the service's start, and when it adds a source. One that no longer checks is logged
        and skipped. Returns those started."""
        if self.rule_engine is None:
            return []
        wanted = None if sources is None else set(sources)
        started = []
        with self._lock:
            running = {rule.name for rule in self.rule_engine.ruleset.rules}
            for watch in list_watches(self.store):
                chosen = self._runs(watch.source) if wanted is None else watch.source in wanted
                if not chosen or watch.name in running:
                    continue
                try:
                    rule = self._rule(
                        watch.name, watch.question, watch.source, watch.predicate, watch.hold, watch.severity
                    )
                    self.rule_engine.add_rule(rule, {watch.name: watch.question})
                except ScenewatchError as exc:
                    log.warning("watch %s (%s) not started: %s", watch.id, watch.name, exc)
                    continue
                started.append(watch)
        return started

    def stop(self, sources: Iterable[str]) -> list[Watch]:
        """Stop running the watches of ``sources`` (a source the service no longer watches); they
        stay stored and start again with :meth:`start`. Returns those stopped."""
        if self.rule_engine is None:
            return []
        gone = set(sources)
        with self._lock:
            return [
                watch
                for watch in list_watches(self.store)
                if watch.source in gone and self.rule_engine.remove_rule(watch.name, (watch.name,))
            ]

    def _source(self, given: str | None) -> str:
        """The source a new watch is on: one the service watches, or (no service) a stored or readable one."""
        running = self.running_sources()
        if self.rule_engine is not None and self._sources is not None:
            if not given:
                if len(running) == 1:
                    return running[0]
                raise ScenewatchError(f"say which source to watch: {', '.join(running) or 'none is running'}")
            try:
                found = given if given in running else resolve_source(self.store, given, also=running)
            except ScenewatchError:  # unknown, or several stored sources end so
                found = None
            if found not in running:
                raise ScenewatchError(
                    f"{given} is not watched by the service (it watches: {', '.join(running) or 'nothing'})"
                )
            return found
        if given:
            found = resolve_source(self.store, given, also=self._named)
            return found or given
        latest = self.store.recent(None, 1)
        if not latest:
            raise ScenewatchError("say which source to watch (nothing was watched yet)")
        return latest[0].source

    def _names(self) -> set[str]:
        """Names a new watch may not take: active watches, running rules and watch questions."""
        names = {watch.name for watch in list_watches(self.store)}
        if self.rule_engine is not None:
            names |= {rule.name for rule in self.rule_engine.ruleset.rules} | set(self.rule_engine.questions)
        return names

    def _rule(
        self, name: str, question: str, source: str, when: str | None, hold: str | None, severity: str
    ) -> Rule:
        """The watch's rule, checked as a rules file's; its events go to every sink of the rules."""
        questions = {watch.name for watch in list_watches(self.store)}
        sinks: tuple[str, ...] = ()
        if self.rule_engine is not None:
            questions |= set(self.rule_engine.questions)
            sinks = tuple(self.rule_engine.ruleset.sinks)
        return watch_rule(
            name,
            question,
            source=source,
            when=when,
            hold=hold,
            severity=severity,
            questions=questions - {name},
            sinks=sinks,
        )
