"""The describe prompt (recent observations + watch questions) and its tolerant JSON parser.

The model is asked for one line of compact JSON: ``summary``, ``people``, ``objects``,
``actions``, ``changes`` (versus the previous observation) and ``answers`` (one boolean per
watch question, keyed by the question's name). Models wrap JSON in code fences or prose, use
single quotes, leave trailing commas, answer "yes" for true, or get cut off by the token cap;
:func:`parse_description` copes with all of that. An answer with no usable JSON object is
kept as text (``parsed=False``, summary = the raw text trimmed), never dropped.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from memory.observation import Observation
from prompts import load_prompt, render_prompt
from tools.perception.findings import Findings
from tools.vision.base import VisionRequest
from tools.vision.images import frame_to_image

DESCRIBE_MAX_NEW_TOKENS = 160
"""Decode time dominates a look: the JSON asked for fits well within this."""

SUMMARY_CHARS = 500
WINDOW_CHARS = 160
"""The most of a previous summary a prompt's window repeats: the one short sentence the prompt asks
for fits; a rambling or unparsed answer does not grow every later prompt."""
_FIELDS = ("summary", "people", "objects", "actions", "changes", "answers")
_SUMMARY_ALIASES = ("summary", "description", "caption", "scene")
_TRUE = {"true", "yes", "y", "1", "present", "open", "on"}
_FALSE = {"false", "no", "n", "0", "none", "absent", "closed", "off"}
_NUMBER_WORDS = {
    "no": 0, "none": 0, "zero": 0, "nobody": 0, "one": 1, "a": 1, "single": 1, "two": 2, "three": 3,
    "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "several": 3, "many": 10,
}  # fmt: skip
_LITERAL = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|\b(true|false|null)\b')
_FENCE = re.compile(r"```[a-zA-Z]*")


@dataclass
class Description:
    """What one describe answer said, normalised to the observation's fields."""

    summary: str
    raw: str
    parsed: bool = True
    people: int | None = None
    objects: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    changes: str = ""
    answers: dict[str, bool] = field(default_factory=dict)


def describe_prompt(
    previous: Sequence[Observation],
    questions: Mapping[str, str],
    now_ts: float,
    findings: Findings | None = None,
) -> str:
    """The describe prompt text for a frame taken at ``now_ts`` (with the detector's ``findings``)."""
    if previous:
        lines = "\n".join(f"- {_ago(now_ts - obs.ts)}: {trim(obs.summary, WINDOW_CHARS)}" for obs in previous)
    else:
        lines = "(none: this is the first observation)"
    if questions:
        asked = "\nWatch questions:\n" + "\n".join(f"- {name}: {text}" for name, text in questions.items())
        rule = "true or false for each watch question, keyed by its name (" + ", ".join(questions) + ")."
    else:
        asked, rule = "", "{} (no watch questions)."
    example = {
        "summary": "...",
        "people": 0,
        "objects": ["..."],
        "actions": ["..."],
        "changes": "...",
        "answers": dict.fromkeys(questions, False),
    }
    perceived = f"\n{load_prompt('describe_detector')}\n{findings.prompt_text()}\n" if findings else ""
    return render_prompt(
        "describe",
        previous=lines,
        questions=asked,
        perception=perceived,
        example=json.dumps(example, separators=(",", ":")),
        answers_rule=rule,
    )


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def describe_request(
    frame: np.ndarray,
    *,
    previous: Sequence[Observation],
    questions: Mapping[str, str],
    now_ts: float,
    max_side: int,
    max_new_tokens: int = DESCRIBE_MAX_NEW_TOKENS,
    findings: Findings | None = None,
) -> VisionRequest:
    """A describe request for one BGR frame, with the source's recent observations and the questions,
    and what the detector stage found on it (quoted in the prompt, and travelling with the request
    for the ``detector`` backend)."""
    request = VisionRequest.ask(
        describe_prompt(previous, questions, now_ts, findings),
        [frame_to_image(frame, max_side)],
        max_new_tokens=max_new_tokens,
    )
    return replace(request, findings=findings) if findings is not None else request


def parse_description(text: str, questions: Mapping[str, str] | None = None) -> Description:
    """Turn a describe answer into a Description, as tolerantly as possible (never raises)."""
    raw = text or ""
    data = _extract_object(raw)
    if data is None or not any(key in data for key in (*_FIELDS, *_SUMMARY_ALIASES)):
        return Description(summary=trim(raw), raw=raw, parsed=False)
    objects, actions = _words(data.get("objects")), _words(data.get("actions"))
    summary = next((_text(data[k]) for k in _SUMMARY_ALIASES if _text(data.get(k))), "")
    return Description(
        summary=summary or "; ".join(actions + objects),
        raw=raw,
        people=_count(data.get("people")),
        objects=objects,
        actions=actions,
        changes=_text(data.get("changes")),
        answers=_answers(data.get("answers"), questions or {}),
    )


def trim(text: str, limit: int = SUMMARY_CHARS) -> str:
    """Whitespace collapsed, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _extract_object(text: str) -> dict[str, Any] | None:
    """The first JSON-like object in ``text`` (fences, prose, quotes, commas, truncation repaired)."""
    cleaned = _FENCE.sub("", text)
    start = cleaned.find("{")
    while start != -1:
        candidate, complete = _balanced(cleaned, start)
        for attempt in _repairs(candidate, complete):
            value = _load(attempt)
            if isinstance(value, dict):
                return value
        start = cleaned.find("{", start + 1)
    return None


def _outside_strings(text: str) -> tuple[list[tuple[int, str]], str]:
    """The (index, character) pairs outside string literals, and the quote left open at the end."""
    found, quote, escaped = [], "", False
    for index, char in enumerate(text):
        if not quote:
            found.append((index, char))
            if char in "\"'":
                quote = char
        elif escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == quote:
            quote = ""
    return found, quote


def _balanced(text: str, start: int) -> tuple[str, bool]:
    """The text from ``start`` to the bracket that closes it; False when it never closes."""
    depth = 0
    for index, char in _outside_strings(text[start:])[0]:
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return text[start : start + index + 1], True
    return text[start:], False


def _repairs(candidate: str, complete: bool) -> list[str]:
    """The candidate itself, or for a cut-off object, versions closed after each of its last commas."""
    if complete:
        return [candidate]
    attempts, cut = [], len(candidate)
    for _ in range(4):
        attempts.append(_close(candidate[:cut]))
        cut = candidate.rfind(",", 0, cut)
        if cut == -1:
            break
    return attempts


def _close(fragment: str) -> str:
    """Close an unfinished string, drop a dangling comma or colon, close open brackets."""
    found, quote = _outside_strings(fragment)
    stack: list[str] = []
    for _, char in found:
        if char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and stack:
            stack.pop()
    text = re.sub(r"[,:\s]+$", "", fragment + quote)
    return text + "".join(reversed(stack))


def _load(text: str) -> Any:
    """json.loads, then a Python-literal reading (single quotes, trailing commas, True/None)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    pythonic = _LITERAL.sub(
        lambda m: (
            {"true": "True", "false": "False", "null": "None"}[m.group(1)] if m.group(1) else m.group(0)
        ),
        text,
    )
    try:
        with warnings.catch_warnings():  # the parser warns about odd literals in a garbled answer
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.literal_eval(pythonic)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple):
        return "; ".join(_text(item) for item in value if _text(item))
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _words(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = re.split(r"[,;\n]", value)
    elif isinstance(value, dict):
        items = [f"{key}: {item}" if not isinstance(item, bool | int) else key for key, item in value.items()]
    elif isinstance(value, list | tuple | set):
        items = list(value)
    else:
        items = [value]
    words = [_text(item) for item in items]
    return [word for word in words if word and word.lower() not in ("none", "nothing", "n/a")]


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return round(value) if value >= 0 else None
    if isinstance(value, list | tuple):
        return len(value)
    if isinstance(value, dict):
        return _count(value.get("count"))
    match = re.search(r"\d+", str(value))
    if match:
        return int(match.group())
    first = str(value).strip().lower().split()
    return _NUMBER_WORDS.get(first[0]) if first else None


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        word = re.split(r"[\s,.;:!]", value.strip().lower(), maxsplit=1)[0]
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def _answers(value: Any, questions: Mapping[str, str]) -> dict[str, bool]:
    """Booleans keyed by question name; keys may also be the question text or its number."""
    if isinstance(value, list | tuple) and questions:
        value = dict(zip(questions, value, strict=False))
    if not isinstance(value, dict):
        return {}
    by_text = {text.strip().lower().rstrip("?"): name for name, text in questions.items()}
    names = list(questions)
    answers = {}
    for key, item in value.items():
        label = str(key).strip()
        name = label if label in questions or not questions else by_text.get(label.lower().rstrip("?"))
        if name is None and label.lower().lstrip("q").isdigit():
            index = int(label.lower().lstrip("q")) - 1
            name = names[index] if 0 <= index < len(names) else None
        answer = _boolean(item)
        if name is not None and answer is not None:
            answers[name] = answer
    return answers
