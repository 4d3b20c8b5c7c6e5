"""Rules files: YAML data checked at load time, every error pointing at its line.

A rules file names its watch questions, its sinks, its rules and the automatic state-change
events it wants::

    questions:
      lights_on: "Are the room lights switched on?"
    sinks:
      console: {type: stdout}
      ops: {type: webhook, url: "https://ops.example/hook", secret_env: OPS_SECRET}
    state_changes: {episodes: true, changes: false, sinks: [console]}
    rules:
      lit_and_empty:
        when: "lights_on and people == 0"
        for: 3 observations        # or a duration of observation time: 30s, 10m
        cooldown: 1h
        severity: warning          # info, warning or critical
        message: "Lights on in an empty room ($source)"
        sinks: [console, ops]      # default: every sink of the file
        clip: 10s                  # an MP4 of the 10 s before the event (and a few after); serve only

A ``sources`` section (optional) gives each watched source its zones and gate options, keyed by
the source as watch names it (a file's name or path, a URL, a webcam index)::

    sources:
      shopfront_cctv.mp4:
        zones:                     # named polygons: fractions of the frame (all numbers <= 1) or pixels
          door: [[0.16, 0.33], [0.52, 0.33], [0.52, 1.0], [0.16, 1.0]]
        gate:
          only_while: [person]     # call the vision model only while a person is in view
          pixels: false            # wake on tracks and the heartbeat, not on pixel change
          heartbeat: 30s
          threshold: 0.02          # changed share of the picture that wakes the model
        text: true                 # read text (OCR) on each analysed frame

Each zone adds a name ``zone_<name>`` to the predicates (the labels of the tracks in it).

The structure is checked with pydantic; its error locations are mapped back to lines through
the YAML node tree (``yaml.compose``). Predicates are compiled by :mod:`agent.events.predicates`.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.core.durations import format_duration, parse_duration
from agent.core.errors import ScenewatchError
from agent.events.predicates import (
    BASE_VOCABULARY,
    BOOL,
    LIST,
    Predicate,
    PredicateError,
    compile_predicate,
)
from agent.events.sinks import SINKS
from tools.perception.labels import check_classes

Severity = Literal["info", "warning", "critical"]
EPISODE_RULE, CHANGES_RULE = "episode", "changes"  # the rule names of automatic state-change events
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # questions, sinks and rules are named like variables
_OBSERVATIONS = re.compile(r"(\d+)\s*(?:obs|observations?)", re.IGNORECASE)
CLIP_MAX_S = 120.0  # the longest clip a rule may ask for
MAX_RULES_BYTES = 1_000_000
"""The largest rules file read (1 MB: a hand-written file is a few KB)."""
MAX_YAML_VALUES = 100_000
"""The most values (mappings, lists, scalars) a rules file may hold once its aliases are followed:
a YAML alias bomb (anchors repeating anchors) is refused before anything expands it."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RuleSpec(_Spec):
    when: str
    hold: str | float | None = Field(default=None, alias="for")
    cooldown: str | float = 0
    severity: Severity = "warning"
    message: str | None = None
    sinks: list[str] | None = None
    clip: str | float | None = None

    @field_validator("hold")
    @classmethod
    def _hold(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_hold(value)
        return value

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: str | float) -> str | float:
        _seconds(value)
        return value

    @field_validator("clip")
    @classmethod
    def _clip(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_clip(value)
        return value


class StateChangesSpec(_Spec):
    episodes: bool = False
    changes: bool = False
    severity: Severity = "info"
    sinks: list[str] | None = None


class GateSpec(_Spec):
    only_while: list[str] = []
    pixels: bool = True
    heartbeat: str | float | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)

    @field_validator("only_while")
    @classmethod
    def _classes(cls, value: list[str]) -> list[str]:
        try:
            check_classes(value)
        except ScenewatchError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("heartbeat")
    @classmethod
    def _heartbeat(cls, value: str | float | None) -> str | float | None:
        if value is not None and _seconds(value) <= 0:
            raise ValueError("the heartbeat must be more than 0 s")
        return value


class SourceSpec(_Spec):
    zones: dict[Annotated[str, Field(pattern=_NAME)], list[tuple[float, float]]] = {}
    gate: GateSpec = GateSpec()
    text: bool | None = None

    @field_validator("zones")
    @classmethod
    def _polygons(cls, value: dict[str, list[tuple[float, float]]]) -> dict[str, list[tuple[float, float]]]:
        for name, points in value.items():
            if len(points) < 3:
                raise ValueError(f"zone {name} needs at least 3 points [x, y]")
            if any(coordinate < 0 for point in points for coordinate in point):
                raise ValueError(f"zone {name} has a negative coordinate")
        return value


class RulesFileSpec(_Spec):
    questions: dict[Annotated[str, Field(pattern=_NAME)], str] = {}
    sinks: dict[Annotated[str, Field(pattern=_NAME)], dict[str, Any]] = {}
    state_changes: StateChangesSpec = StateChangesSpec()
    rules: dict[Annotated[str, Field(pattern=_NAME)], RuleSpec] = {}
    sources: dict[str, SourceSpec] = {}


_FIELDS = {
    "": RulesFileSpec,
    "rules.*": RuleSpec,
    "state_changes": StateChangesSpec,
    "sources.*": SourceSpec,
    "sources.*.gate": GateSpec,
}


@dataclass(frozen=True)
class Hold:
    """How long a rule's condition must hold before it fires: a count of observations, or seconds."""

    observations: int = 1
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.seconds:
            return format_duration(self.seconds)
        return "1 observation" if self.observations == 1 else f"{self.observations} observations"


@dataclass(frozen=True)
class Rule:
    """One checked rule; ``source`` set: it applies to that source only (a watch); ``clip_s``: seconds
    of video before its events to keep as a clip (0: none)."""

    name: str
    when: Predicate
    hold: Hold
    cooldown_s: float
    severity: str
    message: str | None
    sinks: tuple[str, ...]
    clip_s: float = 0.0
    source: str | None = None


@dataclass(frozen=True)
class StateChanges:
    """Which automatic state-change events to emit, and where."""

    episodes: bool = False
    changes: bool = False
    severity: str = "info"
    sinks: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceRules:
    """One source's zones (name -> polygon) and gate options; None: the settings' value."""

    zones: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    only_while: tuple[str, ...] = ()
    pixels: bool = True
    heartbeat_s: float | None = None
    threshold: float | None = None
    text: bool | None = None


@dataclass(frozen=True)
class RuleSet:
    """A loaded rules file: watch questions, sinks (name -> target dict), rules, state changes, and
    the sources' zones and gate options (by source as watch names it)."""

    questions: dict[str, str]
    sinks: dict[str, dict[str, Any]]
    rules: tuple[Rule, ...]
    state_changes: StateChanges
    sources: dict[str, SourceRules] = field(default_factory=dict)

    def with_sink(self, name: str, target: dict[str, Any]) -> RuleSet:
        """These rules with one more sink that every rule and the state changes send to (the service's
        MQTT broker from the settings, :func:`agent.events.mqtt.mqtt_target`)."""
        if name in self.sinks:
            raise ScenewatchError(f"the rules already have a sink called {name}")
        return replace(
            self,
            sinks={**self.sinks, name: target},
            rules=tuple(replace(rule, sinks=(*rule.sinks, name)) for rule in self.rules),
            state_changes=replace(self.state_changes, sinks=(*self.state_changes.sinks, name)),
        )


def parse_hold(value: str | float) -> Hold:
    """``3 observations`` or a duration (``30s``, ``10m``); a bare number is ambiguous."""
    text = f"{value:g}" if isinstance(value, float) else str(value).strip()
    if match := _OBSERVATIONS.fullmatch(text):
        count = int(match.group(1))
        if count < 1:
            raise ValueError("a rule must hold for at least 1 observation")
        return Hold(observations=count)
    if re.fullmatch(r"[\d.]+", text):
        raise ValueError(f"'for: {text}' is ambiguous: write '{text} observations' or '{text}s'")
    return Hold(seconds=_seconds(text))


def parse_clip(value: str | float) -> float:
    """A clip's length in seconds (``10s``), more than 0 and at most :data:`CLIP_MAX_S`."""
    seconds = _seconds(value)
    if not 0 < seconds <= CLIP_MAX_S:
        raise ValueError(f"a clip lasts more than 0 s and at most {format_duration(CLIP_MAX_S)}")
    return seconds


def _seconds(value: str | float) -> float:
    try:
        return parse_duration(value)
    except ScenewatchError as exc:
        raise ValueError(str(exc)) from None


def watch_rule(
    name: str,
    question: str,
    *,
    source: str,
    when: str | None = None,
    hold: str | None = None,
    severity: str = "warning",
    questions: Iterable[str] = (),
    sinks: Iterable[str] = (),
) -> Rule:
    """The rule of a watch set up at run time (a yes/no ``question`` named ``name`` on one source),
    checked as a rules file's rule is: ``when`` (default: the answer is yes) is a predicate over the
    observation's vocabulary, ``name`` and the other ``questions``; ``hold`` as a rule's ``for``.

    A bad value raises ScenewatchError saying which and why (the agent's tool returns it to the model).
    """
    if not re.fullmatch(_NAME, name):
        raise ScenewatchError(f"name {name!r}: use letters, digits and _ (starting with a letter)")
    if name in BASE_VOCABULARY or name in ("true", "false", "none", EPISODE_RULE, CHANGES_RULE):
        raise ScenewatchError(f"name {name!r} is reserved; choose another")
    if not question.strip():
        raise ScenewatchError("the question is empty: ask a yes/no question about the picture")
    if severity not in ("info", "warning", "critical"):
        raise ScenewatchError(f"severity {severity!r}: use info, warning or critical")
    vocabulary = dict(BASE_VOCABULARY) | dict.fromkeys([*questions, name], BOOL)
    try:
        predicate = compile_predicate(when or name, vocabulary)
    except PredicateError as exc:
        raise ScenewatchError(f"when {when!r}: {exc.reason}") from None
    if name not in predicate.names:
        raise ScenewatchError(f"when {when!r} does not use the answer to the question; name it {name}")
    try:
        rule_hold = parse_hold(hold) if hold else Hold()
    except ValueError as exc:
        raise ScenewatchError(f"for {hold!r}: {exc}") from None
    return Rule(
        name=name,
        when=predicate,
        hold=rule_hold,
        cooldown_s=0.0,
        severity=severity,
        message=None,
        sinks=tuple(sinks),
        source=source,
    )


def load_rules(path: str | Path) -> RuleSet:
    """Read and check a rules file (at most :data:`MAX_RULES_BYTES`); raises ScenewatchError naming
    the file and line. Relative paths in it (a JSONL sink's) are relative to the file's folder, so a
    rules file means the same from wherever a watch starts."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_RULES_BYTES + 1)
        text = data.decode("utf-8")
    except OSError as exc:
        raise ScenewatchError(f"cannot read rules file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ScenewatchError(f"rules file {file} is not UTF-8 text: {exc.reason}") from None
    return parse_rules(text, name=str(file), base=file.resolve().parent)


def parse_rules(text: str, *, name: str = "<rules>", base: Path | None = None) -> RuleSet:
    """Check rules-file ``text``; relative JSONL paths are resolved against ``base``."""
    if len(text.encode("utf-8")) > MAX_RULES_BYTES:
        raise ScenewatchError(f"{name} is larger than {MAX_RULES_BYTES:,} bytes: that is not a rules file")
    lines = _LineMap(name)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            _count_values(root, name)
        data = yaml.safe_load(text)
        if root is not None:
            lines.index(root, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ScenewatchError(f"{name}, line {line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ScenewatchError(f"{name}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ScenewatchError(f"{name}: the YAML nests too deeply to be a rules file") from None
    if root is None or data is None:
        raise ScenewatchError(f"{name}: the rules file is empty")
    if not isinstance(data, dict):
        raise ScenewatchError(
            f"{name}, line 1: expected a mapping of questions, sinks, state_changes and rules"
        )
    try:
        spec = RulesFileSpec.model_validate(data)
    except ValidationError as exc:
        raise lines.error_from(exc) from None
    return _build(spec, lines, base or Path.cwd())


def _build(spec: RulesFileSpec, lines: _LineMap, base: Path) -> RuleSet:
    vocabulary = dict(BASE_VOCABULARY)
    for question in spec.questions:
        if question in BASE_VOCABULARY or question in ("true", "false", "none"):
            raise lines.error(
                ("questions", question), f"'{question}' is a reserved name; name the question otherwise"
            )
        vocabulary[question] = BOOL
    for zone in sorted({zone for source in spec.sources.values() for zone in source.zones}):
        vocabulary[f"zone_{zone}"] = LIST
    sinks = {name: _sink_target(name, entry, lines, base) for name, entry in spec.sinks.items()}
    rules = []
    for rule_name, rule in spec.rules.items():
        where = ("rules", rule_name)
        if rule_name in (EPISODE_RULE, CHANGES_RULE):
            raise lines.error(
                where, f"'{rule_name}' is the name of automatic state-change events; rename the rule"
            )
        try:
            when = compile_predicate(rule.when, vocabulary)
        except PredicateError as exc:
            raise lines.error((*where, "when"), exc.reason, offset=exc.line - 1) from None
        _check_message(rule.message, {*vocabulary, "rule", "severity"}, lines, (*where, "message"))
        rules.append(
            Rule(
                name=rule_name,
                when=when,
                hold=parse_hold(rule.hold) if rule.hold is not None else Hold(),
                cooldown_s=_seconds(rule.cooldown),
                severity=rule.severity,
                message=rule.message,
                sinks=_sink_names(rule.sinks, sinks, lines, (*where, "sinks")),
                clip_s=parse_clip(rule.clip) if rule.clip is not None else 0.0,
            )
        )
    changes = spec.state_changes
    state_changes = StateChanges(
        episodes=changes.episodes,
        changes=changes.changes,
        severity=changes.severity,
        sinks=_sink_names(changes.sinks, sinks, lines, ("state_changes", "sinks")),
    )
    sources = {
        name: SourceRules(
            zones={zone: tuple(points) for zone, points in source.zones.items()},
            only_while=tuple(source.gate.only_while),
            pixels=source.gate.pixels,
            heartbeat_s=_seconds(source.gate.heartbeat) if source.gate.heartbeat is not None else None,
            threshold=source.gate.threshold,
            text=source.text,
        )
        for name, source in spec.sources.items()
    }
    return RuleSet(dict(spec.questions), sinks, tuple(rules), state_changes, sources)


def _sink_names(
    names: list[str] | None, sinks: dict[str, dict[str, Any]], lines: _LineMap, where: tuple[Any, ...]
) -> tuple[str, ...]:
    if names is None:
        return tuple(sinks)
    for index, sink in enumerate(names):
        if sink not in sinks:
            known = ", ".join(sinks) or "none defined"
            raise lines.error((*where, index), f"unknown sink '{sink}' (sinks of this file: {known})")
    return tuple(dict.fromkeys(names))


def _sink_target(name: str, entry: dict[str, Any], lines: _LineMap, base: Path) -> dict[str, Any]:
    """A sink's entry checked against its type's spec (:data:`~agent.events.sinks.SINKS`), as a target."""
    where = ("sinks", name)
    types = ", ".join(SINKS.names())
    kind = entry.get("type")
    if kind is None:
        raise lines.error(where, f"a sink needs a type: {types}", at_key=True)
    if not isinstance(kind, str) or kind not in SINKS.names():
        raise lines.error(where, f"unknown sink type {kind!r} (use {types})", at_key=True)
    spec = SINKS.get(kind).Spec
    try:
        return spec.model_validate(entry).target(base)
    except ValidationError as exc:
        raise lines.error_from(exc, prefix=where, fields={"": spec}) from None


def _check_message(message: str | None, names: set[str], lines: _LineMap, where: tuple[Any, ...]) -> None:
    if message is None:
        return
    template = string.Template(message)
    if not template.is_valid():
        raise lines.error(where, "bad placeholder: write $name or ${name}, and $$ for a dollar sign")
    for name in template.get_identifiers():
        if name not in names:
            known = ", ".join(sorted(names))
            raise lines.error(where, f"unknown placeholder ${name} (known: {known})")


def _count_values(root: yaml.Node, name: str) -> int:
    """How many values the YAML holds once every alias is followed (each shared node is counted once
    per place it appears, but sized once); a ScenewatchError past :data:`MAX_YAML_VALUES` or for an
    alias inside its own anchor."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ScenewatchError(
                f"{name}, line {node.start_mark.line + 1}: a YAML alias refers to the value that holds it"
            )
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_YAML_VALUES:
                raise ScenewatchError(
                    f"{name}, line {node.start_mark.line + 1}: the YAML holds more than {MAX_YAML_VALUES:,} "
                    "values once its aliases are followed (aliases of aliases?): that is not a rules file"
                )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)


class _LineMap:
    """Lines (1-based) of the YAML nodes, by their path of keys and list indexes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: dict[tuple[Any, ...], int] = {}
        self.key_lines: dict[tuple[Any, ...], int] = {}
        self.block: set[tuple[Any, ...]] = set()

    def index(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            self.block.add(path)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*path, key_node.value)
                if key in self.lines:
                    raise ScenewatchError(
                        f"{self.name}, line {key_node.start_mark.line + 1}: duplicate key '{key_node.value}'"
                    )
                self.key_lines[key] = key_node.start_mark.line + 1
                self.index(value_node, key)
        elif isinstance(node, yaml.SequenceNode):
            for number, item in enumerate(node.value):
                self.index(item, (*path, number))

    def _nearest(self, loc: tuple[Any, ...]) -> tuple[Any, ...]:
        """The longest path of ``loc`` in the file, skipping parts (union tags) that are not."""
        path: tuple[Any, ...] = ()
        for part in loc:
            for candidate in ((*path, part), (*path, str(part))):
                if candidate in self.lines:
                    path = candidate
                    break
        return path

    def _where(self, loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str]:
        """The path found in the file, and ``loc`` in dotted words (a missing last field kept)."""
        path = self._nearest(loc)
        shown = path
        if loc and loc[-1] not in path[-1:] and isinstance(loc[-1], str) and not loc[-1].startswith("["):
            shown = (*path, loc[-1])
        return path, ".".join(str(part) for part in shown) or "top level"

    def error(
        self, loc: tuple[Any, ...], reason: str, offset: int = 0, *, at_key: bool = False
    ) -> ScenewatchError:
        """An error at ``loc`` (the line of its value, or of its key with ``at_key``)."""
        path, dotted = self._where(loc)
        if at_key and path in self.key_lines:
            return ScenewatchError(f"{self.name}, line {self.key_lines[path]}: {dotted}: {reason}")
        line = self.lines.get(path, 1) + offset + (1 if path in self.block else 0)
        return ScenewatchError(f"{self.name}, line {line}: {dotted}: {reason}")

    def error_from(
        self,
        exc: ValidationError,
        *,
        prefix: tuple[Any, ...] = (),
        fields: dict[str, type[BaseModel]] | None = None,
    ) -> ScenewatchError:
        """The first (by line) of pydantic's errors, in words, with its line. ``prefix``: where in the
        file the validated part is; ``fields``: its models by dotted path (default: the whole file's)."""
        found = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            path, dotted = self._where((*prefix, *loc))
            line = self.key_lines.get(path) or self.lines.get(path, 1)
            found.append((line, dotted, _reason(err, loc, _FIELDS if fields is None else fields)))
        found.sort(key=lambda item: item[0])
        line, dotted, reason = found[0]
        more = len(found) - 1
        tail = f" ({more} more problem{'s' if more > 1 else ''} after this one)" if more else ""
        return ScenewatchError(f"{self.name}, line {line}: {dotted}: {reason}{tail}")


def _reason(err: Any, loc: tuple[Any, ...], fields: dict[str, type[BaseModel]]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1], fields)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
        return f"unknown field '{loc[-1]}' ({hint})"
    if kind == "missing":
        return f"missing field '{loc[-1]}'"
    if kind == "string_pattern_mismatch":
        if loc[-1] == "url":
            return f"{err['input']!r} is not a URL (it starts with http:// or https://)"
        return f"{err['input']!r} is not a valid name (letters, digits and _)"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def _allowed_fields(parent: tuple[Any, ...], fields: dict[str, type[BaseModel]]) -> list[str]:
    key = ".".join("*" if index == 1 and len(parent) > 1 else str(part) for index, part in enumerate(parent))
    model = fields.get(key)
    if model is None:
        return []
    return [info.alias or field for field, info in model.model_fields.items()]
