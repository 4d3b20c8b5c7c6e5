"""The rules engine: turns each committed observation into events, committed to the outbox.

:class:`RuleEngine` is an ObservationListener. For every observation it evaluates the rules of
a :class:`~agent.events.ruleset.RuleSet` (holds and cooldowns counted in observation time ``ts``, per
source), emits the automatic state-change events the file asks for (a new episode, a non-empty
``changes``), commits them with their deliveries, and wakes the delivery thread. It never waits
on a sink. Its holds and episodes change only once the events are committed: when the commit
fails, the next observation is evaluated from the same state and raises them again.

Rules can be added and removed while it runs (the watches the agent sets up): ``questions`` is the
shared mapping the watch loop reads its questions from, so a new rule's question reaches the next
describe prompt. A rule with a clip gets one through the :class:`ClipMaker` it is given (none: the
rule's events carry no clip).
"""

from __future__ import annotations

import logging
import string
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.events.delivery import DeliveryWorker
from agent.events.predicates import count_name
from agent.events.ruleset import CHANGES_RULE, EPISODE_RULE, Rule, RuleSet
from agent.events.sinks import Sender, missing_secrets
from memory.events import NewEvent, Outbox
from memory.observation import Observation, changes_text
from memory.store import Store
from tools.perception.labels import coco_labels

log = logging.getLogger(__name__)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NOT_IN_PAYLOAD = ("source", "ts", "raw", "model", "latency_ms")  # on the event, or noise


@dataclass
class _Hold:
    """Where one rule stands for one source."""

    count: int = 0
    since: float | None = None
    fired: bool = False
    last_fired: float | None = None
    on: bool = False  # the condition has held long enough (the rule's state, cooldown or not)


class ClipMaker(Protocol):
    """Makes the clips rules ask for (:class:`agent.pipeline.clips.ClipRecorder`)."""

    def clip_path(self, source: str, ts: float, rule: str) -> str:
        """Where the clip of an event will be, relative to the data folder (put in the event's payload)."""
        ...

    def make_clip(self, source: str, ts: float, before_s: float, path: str) -> None:
        """Write the clip of an event at ``ts`` (committed now) without blocking the caller."""
        ...


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("yes", "true", "no", "false"):
        return value.strip().lower() in ("yes", "true")
    return None


def observation_context(obs: Observation, questions: dict[str, str]) -> dict[str, Any]:
    """The values a predicate sees: the vocabulary of :mod:`agent.events.predicates` plus the answers."""
    local = time.localtime(obs.ts)
    context: dict[str, Any] = {
        "people": obs.people,
        "objects": list(obs.objects),
        "actions": list(obs.actions),
        "summary": obs.summary,
        "changes": obs.changes,
        "gate_score": obs.gate_score,
        "source": obs.source,
        "hour": local.tm_hour,
        "minute": local.tm_min,
        "weekday": WEEKDAYS[local.tm_wday],
        "parsed": obs.parsed,
    }
    for name in questions:
        context[name] = _as_bool(obs.answers.get(name))
    context.update(perception_context(obs))
    return context


def perception_context(obs: Observation) -> dict[str, Any]:
    """The detector's and the tracker's names of the predicates (:mod:`agent.events.predicates`), all
    None when no detector ran on the observation's frame; ``zone_<name>`` only for zones it saw."""
    if obs.detections is None:
        return {name: None for name in ("detected", "entered", "exited", "dwell_s")}
    labels = [item["label"] for item in obs.detections]
    tracks = obs.tracks or []
    in_view = [track for track in tracks if track["state"] != "left"]
    context: dict[str, Any] = {
        "detected": labels,
        "entered": [track["label"] for track in tracks if track["state"] == "entered"],
        "exited": [track["label"] for track in tracks if track["state"] == "left"],
        "dwell_s": max((obs.ts - track["first_ts"] for track in in_view), default=None),
    }
    for label in coco_labels():
        context[count_name(label)] = labels.count(label)
    for track in in_view:
        for zone in track["zones"]:
            context.setdefault(f"zone_{zone}", []).append(track["label"])
    return context


def _observation_payload(obs: Observation) -> dict[str, Any]:
    return {name: value for name, value in obs.to_dict().items() if name not in _NOT_IN_PAYLOAD}


def render_message(template: str, context: dict[str, Any]) -> str:
    """``$name`` placeholders filled with the context's values in words."""

    def words(value: Any) -> str:
        if value is None:
            return "?"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return ", ".join(map(str, value)) or "nothing"
        return f"{value:g}" if isinstance(value, float) else str(value)

    return string.Template(template).safe_substitute({name: words(value) for name, value in context.items()})


class RuleEngine:
    """Evaluates a rules file on every observation; events go through the outbox to the sinks."""

    def __init__(
        self,
        ruleset: RuleSet,
        store: Store,
        settings: Settings,
        *,
        sender: Sender | None = None,
        clips: ClipMaker | None = None,
    ) -> None:
        missing = missing_secrets(ruleset.sinks)
        if missing:
            raise ScenewatchError(
                f"webhook secret not set for sink {', '.join(missing)}: export the variable"
            )
        self.ruleset = ruleset
        self.questions: dict[str, str] = dict(ruleset.questions)
        """The watch questions (the ruleset's, then those of added rules): pass it as ``run_watch``'s
        ``questions`` so that added ones are asked."""
        self.store = store
        self.outbox = Outbox(store)
        self.clips = clips
        self._changing = threading.Lock()  # one writer of ruleset/questions at a time
        self._holds: dict[tuple[str, str], _Hold] = {}
        self._episodes: dict[str, int | None] = {}
        if clips is None and any(rule.clip_s for rule in ruleset.rules):
            log.warning("rules ask for clips but this run records none (`scenewatch serve` does)")
        self.worker = DeliveryWorker(
            self.outbox,
            sender or Sender(public_url=settings.public_url),
            backoff_s=settings.events_backoff_s,
            backoff_max_s=settings.events_backoff_max_s,
            close_s=settings.events_close_s,
        )
        self.worker.start()

    def on_observation(self, obs: Observation) -> None:
        """Evaluate, commit the events and their deliveries, then keep the new state; never raises."""
        try:
            events, holds = self.evaluate(obs)
            if events:
                self.outbox.record(events)
        except Exception:
            log.exception(
                "rules failed on observation %s of %s (evaluated again with the next)", obs.id, obs.source
            )
            return
        self._holds.update(holds)
        if obs.episode_id is not None:
            self._episodes[obs.source] = obs.episode_id
        if events:
            self._make_clips(events)
            self.worker.wake()

    def evaluate(self, obs: Observation) -> tuple[list[NewEvent], dict[tuple[str, str], _Hold]]:
        """The events this observation causes and the holds after it; the engine's state is unchanged."""
        ruleset = self.ruleset  # one consistent set, whatever is added meanwhile
        context = observation_context(obs, dict(self.questions))
        for zone in {zone for source in ruleset.sources.values() for zone in source.zones}:
            context.setdefault(f"zone_{zone}", None if obs.detections is None else [])
        events = self._state_changes(obs)
        holds: dict[tuple[str, str], _Hold] = {}
        for rule in ruleset.rules:
            if rule.source is not None and rule.source != obs.source:
                continue
            key = (rule.name, obs.source)
            hold = holds[key] = replace(self._holds.get(key, _Hold()))
            if self._fires(rule, hold, obs, context):
                events.append(self._rule_event(rule, hold, obs, context))
        return events, holds

    def _fires(self, rule: Rule, hold: _Hold, obs: Observation, context: dict[str, Any]) -> bool:
        """Advance ``hold`` (a copy) by this observation; True when the rule fires now."""
        try:
            holds_now = rule.when(context)
        except Exception as exc:
            log.warning("rule %s could not be evaluated on observation %s: %s", rule.name, obs.id, exc)
            holds_now = False
        if not holds_now:
            hold.count, hold.since, hold.fired, hold.on = 0, None, False, False
            return False
        hold.count += 1
        hold.since = obs.ts if hold.since is None else hold.since
        if hold.count < rule.hold.observations or obs.ts - hold.since < rule.hold.seconds:
            return False
        hold.on = True
        if hold.fired:
            return False
        if hold.last_fired is not None and obs.ts - hold.last_fired < rule.cooldown_s:
            log.debug("rule %s holds on %s but is cooling down", rule.name, obs.source)
            return False
        hold.fired, hold.last_fired = True, obs.ts
        return True

    def _rule_event(self, rule: Rule, hold: _Hold, obs: Observation, context: dict[str, Any]) -> NewEvent:
        template = rule.message or f"{rule.name.replace('_', ' ')}: $summary"
        message = render_message(template, {**context, "rule": rule.name, "severity": rule.severity})
        payload = {
            "when": rule.when.text,
            "for": str(rule.hold),
            "held_since": hold.since,
            "held_observations": hold.count,
            "observation": _observation_payload(obs),
        }
        if rule.clip_s and self.clips is not None:
            payload["clip"] = self.clips.clip_path(obs.source, obs.ts, rule.name)
            payload["clip_s"] = rule.clip_s
        return self._event(obs, rule.name, "rule", rule.severity, message, payload, rule.sinks)

    def _make_clips(self, events: list[NewEvent]) -> None:
        for event in events:
            if self.clips is not None and "clip" in event.payload:
                try:
                    self.clips.make_clip(
                        event.source, event.ts, event.payload["clip_s"], event.payload["clip"]
                    )
                except Exception:  # a clip must not stop the rules
                    log.exception("cannot make the clip of rule %s on %s", event.rule, event.source)

    def add_rule(self, rule: Rule, questions: Mapping[str, str] | None = None) -> None:
        """Evaluate ``rule`` from the next observation on, and ask its ``questions`` (name -> text)
        in the next describe prompts. ScenewatchError when a rule or question of that name exists."""
        questions = dict(questions or {})
        with self._changing:
            if rule.name in {r.name for r in self.ruleset.rules} or rule.name in (EPISODE_RULE, CHANGES_RULE):
                raise ScenewatchError(f"a rule called {rule.name} is already running")
            taken = [name for name, text in questions.items() if self.questions.get(name, text) != text]
            if taken:
                raise ScenewatchError(f"a watch question called {taken[0]} already asks something else")
            unknown = [name for name in rule.sinks if name not in self.ruleset.sinks]
            if unknown:
                raise ScenewatchError(f"unknown sink {unknown[0]} (sinks: {', '.join(self.ruleset.sinks)})")
            self.questions.update(questions)
            self.ruleset = replace(self.ruleset, rules=(*self.ruleset.rules, rule))

    def remove_rule(self, name: str, questions: tuple[str, ...] = ()) -> bool:
        """Stop evaluating rule ``name`` and stop asking ``questions``; False when no such rule runs."""
        with self._changing:
            kept = tuple(rule for rule in self.ruleset.rules if rule.name != name)
            if len(kept) == len(self.ruleset.rules):
                return False
            self.ruleset = replace(self.ruleset, rules=kept)
            for question in questions:
                self.questions.pop(question, None)
            for key in [key for key in list(self._holds) if key[0] == name]:
                self._holds.pop(key, None)
        return True

    def rule_states(self, source: str) -> dict[str, bool]:
        """Each rule that applies to ``source``, and whether its condition holds (has held for its
        ``for``) as of the source's last observation."""
        return {
            rule.name: (hold := self._holds.get((rule.name, source))) is not None and hold.on
            for rule in self.ruleset.rules
            if rule.source is None or rule.source == source
        }

    def _state_changes(self, obs: Observation) -> list[NewEvent]:
        wanted = self.ruleset.state_changes
        events = []
        if wanted.episodes and obs.episode_id is not None:
            previous = self._previous_episode(obs)
            if previous != obs.episode_id:
                payload = {
                    "episode_id": obs.episode_id,
                    "previous_episode_id": previous,
                    "observation": _observation_payload(obs),
                }
                message = f"new state: {obs.summary}"
                events.append(
                    self._event(obs, EPISODE_RULE, "state_change", wanted.severity, message, payload)
                )
        changes = obs.changes.strip()
        if wanted.changes and changes_text(changes):
            payload = {"observation": _observation_payload(obs)}
            events.append(self._event(obs, CHANGES_RULE, "state_change", wanted.severity, changes, payload))
        return events

    def _previous_episode(self, obs: Observation) -> int | None:
        """The episode of the source's previous observation (from the database at first, then kept)."""
        if obs.source not in self._episodes:
            previous = self.store.previous(obs.source, obs.id)
            self._episodes[obs.source] = previous.episode_id if previous else None
        return self._episodes[obs.source]

    def _event(
        self,
        obs: Observation,
        rule: str,
        kind: str,
        severity: str,
        message: str,
        payload: dict[str, Any],
        sinks: tuple[str, ...] | None = None,
    ) -> NewEvent:
        names = self.ruleset.state_changes.sinks if sinks is None else sinks
        return NewEvent(
            ts=obs.ts,
            source=obs.source,
            rule=rule,
            kind=kind,
            severity=severity,
            message=message,
            payload=payload,
            observation_id=obs.id,
            sinks={name: self.ruleset.sinks[name] for name in names},
        )

    def close(self) -> None:
        """Stop the delivery thread after a bounded last attempt; the rest stays in the outbox."""
        self.worker.close()
