"""Prometheus metrics at ``/metrics``, names prefixed ``scenewatch_``, one registry per service.

Two kinds of series:

- **from the pipeline**, counted since the service started: frames sampled, gated (kept from the
  model by the gate), analysed, dropped and failed per source; gate decisions per source and
  reason; source reconnects; the model's latency and batch sizes (every batch the engine runs:
  watch, agent and API alike, measured by :class:`MeteredBackend`); the engine's queue depth;
  sources by state;
- **from the database** at scrape time, so they match it exactly: observations stored per
  source, indexed and waiting to be indexed; events raised per source and rule; deliveries
  delivered and pending per sink.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from memory.events import Outbox
from memory.store import Store
from tools.vision.base import VisionBackend, VisionRequest, VisionResult

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The text format every Prometheus version reads."""

FRAME_COUNTS = {
    "sampled": "Frames sampled from the source",
    "skipped": "Frames the gate kept from the model",
    "analysed": "Frames analysed and committed as observations",
    "dropped": "Frames dropped for missing their deadline",
    "failed": "Frames unreadable or failed by the model",
}
METRIC_NAMES = {"skipped": "gated"}  # the counter of skipped frames is scenewatch_frames_gated_total


class Figures(Protocol):
    """One source's figures: frame counts by :data:`FRAME_COUNTS` field, gate reasons, reconnects."""

    frames: Counter[str]
    reasons: Counter[str]
    reconnects: int


class Measured(Protocol):
    """What the metrics read from the service (:class:`~agent.service.runtime.Service`)."""

    reader: Store
    outbox: Outbox

    def source_counts(self) -> Mapping[str, Figures]: ...

    def state_counts(self) -> dict[str, int]: ...

    def queue_depth(self) -> int: ...


class MeteredBackend:
    """A vision backend that times each batch and records its size (the engine's only backend)."""

    def __init__(self, backend: VisionBackend, latency: Histogram, batch_size: Histogram) -> None:
        self.backend = backend
        self.model_name = backend.model_name
        self._latency, self._batch_size = latency, batch_size

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        started = time.perf_counter()
        try:
            return self.backend.generate(requests)
        finally:
            self._latency.observe(time.perf_counter() - started)
            self._batch_size.observe(len(requests))


class _ServiceCollector(Collector):
    """The series read from the running service and its database at each scrape."""

    def __init__(self, service: Measured) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        yield from self._frames()
        yield from self._database()
        queue = GaugeMetricFamily("scenewatch_engine_queue_depth", "Requests waiting for the model")
        queue.add_metric([], self.service.queue_depth())
        yield queue

    def _frames(self) -> Iterator[Metric]:
        counts = self.service.source_counts()
        for field, text in FRAME_COUNTS.items():
            family = CounterMetricFamily(
                f"scenewatch_frames_{METRIC_NAMES.get(field, field)}", text, labels=["source"]
            )
            for name, figures in counts.items():
                family.add_metric([name], figures.frames[field])
            yield family
        reasons = CounterMetricFamily(
            "scenewatch_gate_decisions", "Sampled frames by the gate's reason", labels=["source", "reason"]
        )
        reconnects = CounterMetricFamily(
            "scenewatch_source_reconnects", "Reconnect attempts of live sources", labels=["source"]
        )
        for name, figures in counts.items():
            for reason, n in sorted(figures.reasons.items()):
                reasons.add_metric([name, reason], n)
            reconnects.add_metric([name], figures.reconnects)
        yield reasons
        yield reconnects
        states = GaugeMetricFamily("scenewatch_sources", "Sources by state", labels=["state"])
        for state, n in sorted(self.service.state_counts().items()):
            states.add_metric([state], n)
        yield states

    def _database(self) -> Iterator[Metric]:
        reader, outbox = self.service.reader, self.service.outbox
        totals = reader.totals()
        stored = GaugeMetricFamily(
            "scenewatch_observations_stored", "Observations in the database", labels=["source"]
        )
        for name, n in totals["sources"].items():
            stored.add_metric([name], n)
        yield stored
        indexed = GaugeMetricFamily("scenewatch_observations_indexed", "Observations in the vector index")
        indexed.add_metric([], totals["observations"] - totals["unindexed"])
        yield indexed
        waiting = GaugeMetricFamily("scenewatch_observations_waiting", "Observations waiting to be indexed")
        waiting.add_metric([], totals["unindexed"])
        yield waiting
        raised = CounterMetricFamily("scenewatch_events_raised", "Events raised", labels=["source", "rule"])
        for source, rule, n in outbox.raised():
            raised.add_metric([source, rule], n)
        yield raised
        delivered = CounterMetricFamily(
            "scenewatch_events_delivered", "Event deliveries a sink accepted", labels=["sink"]
        )
        pending = GaugeMetricFamily(
            "scenewatch_events_pending", "Event deliveries waiting in the outbox", labels=["sink"]
        )
        for sink, done, left in outbox.deliveries_by_sink():
            delivered.add_metric([sink], done)
            pending.add_metric([sink], left)
        yield delivered
        yield pending


class ServiceMetrics:
    """The service's registry: the model's histograms and the collector of everything else."""

    def __init__(self, service: Measured) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.model_latency = Histogram(
            "scenewatch_model_latency_seconds",
            "Time the model took for one batch",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "scenewatch_model_batch_size",
            "Requests in one batch of the model",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.registry.register(_ServiceCollector(service))

    def instrument(self, backend: VisionBackend) -> VisionBackend:
        """``backend`` measured into this registry (``open_pipeline(instrument=...)``)."""
        return MeteredBackend(backend, self.model_latency, self.batch_size)

    def exposition(self) -> bytes:
        """The text exposition of every series."""
        return generate_latest(self.registry)
