"""Change-aware narratives: the model tells the story of a time range from its episodes and events.

Each episode becomes one log line (span, duration, what was seen, what changed, the state); events
are lines of their own, and so is each object the detector's tracker followed (when it entered,
when it left, the zones it was in). When the log does not fit in
``settings.narrate_token_budget`` (counted with :func:`estimate_tokens`), it is summarised
hierarchically: packed into chunks that fit, each chunk summarised by the model
(``prompts/narrate_chunk.md``), and the summaries, with their time spans, become the log of the
next level, until it fits in one ``prompts/narrate.md`` prompt. Every prompt stays under the
budget, however long the range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from agent.core.config import Settings, load_settings
from agent.core.durations import format_duration
from memory.store import Store
from memory.timeline import TimelineEntry, TrackSpan, timeline, track_spans
from prompts import render_prompt
from tools.vision.base import VisionRequest, VisionResult

CHARS_PER_TOKEN = 3.5  # generous: English averages about 4 characters per BPE token
NARRATIVE_TOKENS = 512  # longest narrative the model may write
_NOTHING = "Nothing was observed in this time range."


class Generator(Protocol):
    """A vision backend or the engine: anything that answers requests in order."""

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]: ...


def estimate_tokens(text: str) -> int:
    """A cheap, generous token count (characters / 3.5)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass
class Narrative:
    """The story of a range and how it was written."""

    text: str
    since: float | None
    until: float | None
    source: str | None
    episodes: int
    events: int
    model_calls: int = 0
    levels: int = 0  # 1: one prompt; more: chunk summaries first
    max_prompt_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Item:
    """One log line with the time span it covers."""

    start: float
    end: float
    text: str


def narrate(
    store: Store,
    generator: Generator,
    since: float | None = None,
    until: float | None = None,
    source: str | None = None,
    settings: Settings | None = None,
) -> Narrative:
    """A narrative of the range (epoch seconds) from its episodes and events, written by ``generator``."""
    settings = settings or load_settings()
    entries = timeline(store, since, until, source)
    episodes = sum(entry.kind == "episode" for entry in entries)
    narrative = Narrative(_NOTHING, since, until, source, episodes, len(entries) - episodes)
    if not entries:
        return narrative
    start = since if since is not None else entries[0].start
    end = until if until is not None else max(entry.end for entry in entries)
    clock = _clock_format(start, end)
    items = [_Item(entry.start, entry.end, log_line(entry, clock)) for entry in entries]
    spans = track_spans(store, since, until, source)
    items += [_Item(span.first_ts, span.last_ts, track_line(span, clock)) for span in spans]
    items.sort(key=lambda item: item.start)
    writer = _Writer(generator, settings, narrative)

    def prompt(log: str) -> str:
        since_text, until_text = _clock(start, clock), _clock(end, clock)
        return render_prompt(
            "narrate", source=source or "all cameras", since=since_text, until=until_text, log=log
        )

    room = settings.narrate_token_budget - estimate_tokens(prompt(""))
    while True:
        narrative.levels += 1
        if len(items) == 1:  # each level at least halves the items; a last one too long is clipped
            items = [_clip(items[0], room - 1)]
        if sum(estimate_tokens(item.text) + 1 for item in items) <= room:
            log = "\n".join(item.text for item in items)
            narrative.text = writer.ask([prompt(log)], NARRATIVE_TOKENS)[0]
            return narrative
        items = writer.summarise(items, clock)


class _Writer:
    """Sends prompts to the generator in batches and keeps the narrative's counters."""

    def __init__(self, generator: Generator, settings: Settings, narrative: Narrative) -> None:
        self.generator = generator
        self.settings = settings
        self.narrative = narrative

    def ask(self, prompts: list[str], max_tokens: int) -> list[str]:
        answers: list[str] = []
        step = self.settings.batch_size
        for first in range(0, len(prompts), step):
            group = prompts[first : first + step]
            requests = [VisionRequest.ask(prompt, max_new_tokens=max_tokens) for prompt in group]
            answers += [result.text.strip() for result in self.generator.generate(requests)]
            self.narrative.model_calls += len(group)
            longest = max(estimate_tokens(prompt) for prompt in group)
            self.narrative.max_prompt_tokens = max(self.narrative.max_prompt_tokens, longest)
        return answers

    def summarise(self, items: list[_Item], clock: str) -> list[_Item]:
        """One level down: chunks of items that fit the budget, each replaced by its summary."""
        budget = self.settings.narrate_token_budget
        template = render_prompt("narrate_chunk", since="00:00:00", until="00:00:00", words=9999, log="")
        room = budget - estimate_tokens(template) - 8  # the times and word count filled in
        answer_tokens = max(48, room // 8)
        chunks = _pack([_clip(item, room // 2) for item in items], room)
        prompts = [
            render_prompt(
                "narrate_chunk",
                since=_clock(chunk[0].start, clock),
                until=_clock(chunk[-1].end, clock),
                words=int(answer_tokens * 0.7),
                log="\n".join(item.text for item in chunk),
            )
            for chunk in chunks
        ]
        answers = self.ask(prompts, answer_tokens)
        summaries = []
        for chunk, answer in zip(chunks, answers, strict=True):
            span_start, span_end = chunk[0].start, max(item.end for item in chunk)
            span = _span(span_start, span_end, clock)
            text = f"{span} (summary): {' '.join(answer.split())}"
            summaries.append(_clip(_Item(span_start, span_end, text), answer_tokens + 16))
        return summaries


def _pack(items: list[_Item], room: int) -> list[list[_Item]]:
    """Consecutive items in chunks of at most ``room`` tokens (each item is at most half of it)."""
    chunks: list[list[_Item]] = [[]]
    used = 0
    for item in items:
        cost = estimate_tokens(item.text) + 1
        if chunks[-1] and used + cost > room:
            chunks.append([])
            used = 0
        chunks[-1].append(item)
        used += cost
    return chunks


def _clip(item: _Item, tokens: int) -> _Item:
    limit = int(tokens * CHARS_PER_TOKEN)
    if len(item.text) <= limit:
        return item
    return _Item(item.start, item.end, item.text[: limit - 1].rstrip() + "…")


def log_line(entry: TimelineEntry, clock: str = "%H:%M:%S") -> str:
    """One line of the narrative's log for an episode or an event."""
    if entry.kind == "event":
        return f"{_clock(entry.start, clock)} EVENT [{entry.source}] {entry.detail}: {entry.text}"
    span = _span(entry.start, entry.end, clock)
    seen = f"{format_duration(entry.duration_s)}, {entry.observations} obs"
    state = f" ({entry.detail})" if entry.detail else ""
    changed = f" Changed: {entry.changes}." if entry.changes else ""
    return f"{span} ({seen}) [{entry.source}] {entry.text}{changed}{state}"


def track_line(span: TrackSpan, clock: str = "%H:%M:%S") -> str:
    """One line of the narrative's log for a tracked object: its entry, its exit, its zones."""
    where = f", was in {', '.join(span.zones)}" if span.zones else ""
    end = "left" if span.left else "was last seen"
    return (
        f"{_clock(span.first_ts, clock)} TRACK [{span.source}] {span.label} {span.track} entered{where}, "
        f"{end} at {_clock(span.last_ts, clock)} ({format_duration(span.duration_s)} in view)"
    )


def _clock_format(start: float, end: float) -> str:
    return "%H:%M:%S" if _same_day(start, end) else "%Y-%m-%d %H:%M:%S"


def _same_day(a: float, b: float) -> bool:
    return datetime.fromtimestamp(a).date() == datetime.fromtimestamp(b).date()


def _clock(ts: float, clock: str) -> str:
    return datetime.fromtimestamp(ts).strftime(clock)


def _span(start: float, end: float, clock: str) -> str:
    """``start–end``, the end without its date when it is the start's day."""
    return f"{_clock(start, clock)}–{_clock(end, '%H:%M:%S' if _same_day(start, end) else clock)}"
