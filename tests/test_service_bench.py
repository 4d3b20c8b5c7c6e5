"""``scenewatch bench api`` on a small store: the report's shape and a stream that misses nothing.

The latency figures are measured by the command itself (docs/PERFORMANCE.md), never asserted here.
"""

from __future__ import annotations

from agent.bench.api import run_api_bench
from agent.core.config import load_settings


def test_the_api_bench_reports_latencies_and_a_complete_stream() -> None:
    phases: set[str] = set()
    report = run_api_bench(
        300, load_settings(), requests=10, clients=4, progress=lambda phase, done, total: phases.add(phase)
    )
    assert report["observations"] == 300
    assert set(report["latency"]) >= {"observations", "timeline", "recall"}
    assert all(
        figures["requests"] == 10
        for kind, figures in report["latency"].items()
        if kind != "observations_next_page"
    )
    stream = report["stream"]
    assert stream["observations"] > 0 and stream["events"] == stream["observations"]
    assert stream["clients_complete"] == stream["clients"] == 4
    assert stream["missed"] == stream["duplicates"] == 0
    assert phases >= {"storing", "indexing", "requests", "stream"}
