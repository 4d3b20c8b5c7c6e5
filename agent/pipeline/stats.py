"""What a watch did: per-source and total counts, latencies, how long it ran."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memory.observation import Observation

LATENCY_HISTORY = 10_000
"""Latencies kept per source for the p95 (the mean covers every request)."""


class _LatencyFigures:
    """Derived figures over ``latencies_ms``, ``latency_total_ms``, ``analysed``, ``skipped``, ``sampled``."""

    @property
    def mean_latency_ms(self) -> float:
        return self.latency_total_ms / self.analysed if self.analysed else 0.0

    @property
    def p95_latency_ms(self) -> float:
        return percentile(self.latencies_ms, 95)

    @property
    def skipped_fraction(self) -> float:
        """Share of sampled frames the change gate kept from the model."""
        return self.skipped / self.sampled if self.sampled else 0.0


@dataclass
class SourceStats(_LatencyFigures):
    """What the watch did with one source."""

    source: str
    live: bool = False
    sampled: int = 0
    analysed: int = 0
    skipped: int = 0
    dropped: int = 0
    failed: int = 0
    abandoned: int = 0
    video_s: float = 0.0
    error: str | None = None
    reasons: Counter[str] = field(default_factory=Counter)  # gate decisions by reason (first, tracks, ...)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))
    latency_total_ms: float = 0.0

    def add_latency(self, ms: float) -> None:
        self.latencies_ms.append(ms)
        self.latency_total_ms += ms

    @property
    def fruitless(self) -> bool:
        """Ended on an error, or every frame it read or sent failed: nothing analysed."""
        return self.error is not None or (self.failed > 0 and self.analysed == 0)


class _Total:
    """A WatchSummary attribute: the sum of the same attribute over its sources."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, summary: WatchSummary | None, owner: type | None = None) -> Any:
        if summary is None:
            return self
        return sum(getattr(stats, self.name) for stats in summary.sources.values())


@dataclass
class WatchSummary(_LatencyFigures):
    """Per-source and total counts of a watch, its latencies and how long it ran."""

    sources: dict[str, SourceStats]
    wall_s: float = 0.0
    model_calls: int = 0

    sampled = _Total()
    analysed = _Total()
    skipped = _Total()
    dropped = _Total()
    failed = _Total()
    abandoned = _Total()
    video_s = _Total()  # seconds of video covered by the file and folder sources
    latency_total_ms = _Total()

    @property
    def reasons(self) -> Counter[str]:
        """Gate decisions by reason, over every source."""
        return sum((stats.reasons for stats in self.sources.values()), Counter())

    @property
    def latencies_ms(self) -> list[float]:
        return [ms for stats in self.sources.values() for ms in stats.latencies_ms]

    @property
    def fruitless(self) -> bool:
        """Every source came to nothing (see :attr:`SourceStats.fruitless`)."""
        return all(stats.fruitless for stats in self.sources.values())

    @property
    def errors(self) -> dict[str, str]:
        """Sources whose thread stopped on an error, with the message."""
        return {name: stats.error for name, stats in self.sources.items() if stats.error}


UpdateCallback = Callable[[SourceStats, Observation | None], None]


def percentile(values: Sequence[float] | deque[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``; 0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]
