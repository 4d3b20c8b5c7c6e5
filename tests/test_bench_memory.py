"""``scenewatch bench memory``: synthetic observations, and a small run's report (no timing asserted)."""

from __future__ import annotations

import itertools
import json

from typer.testing import CliRunner

from agent.bench.memory_store import synthetic_observations
from agent.cli.app import app

KEYS = {
    "index_rate_per_s",
    "recall_p50_ms",
    "recall_p95_ms",
    "recall_filtered_p95_ms",
    "reindex_s",
    "disk_mb",
    "observations",
    "rss_mb",
    "db_open_ms",
}


def test_synthetic_observations_are_distinct_and_spread() -> None:
    observations = list(synthetic_observations(20_000, start_ts=1000.0))
    assert len({obs.summary for obs in observations}) == 20_000
    assert len({obs.source for obs in observations}) == 4
    assert observations[0].ts >= 1000.0 and observations[-1].ts < 1000.0 + 7 * 86400 + 1
    assert all(a.ts < b.ts for a, b in itertools.pairwise(observations))
    assert {obs.people for obs in observations} == {0, 1, 2, 3}


def test_a_small_run_reports_every_measure() -> None:
    result = CliRunner().invoke(
        app, ["bench", "memory", "--observations", "300", "--queries", "10", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report) >= KEYS
    assert report["command"] == "scenewatch bench memory --observations 300 --queries 10 --json"
    assert report["observations"] == 300 and report["recall_out_of_range"] == 0
    assert report["reindex_overlap"] >= 0.8  # near-ties may swap places, the same ones are found
    assert report["watch_rss_mb"] > 0 and report["watch_rss_mb_empty_store"] > 0
    assert len(report["rss_mb_by_quarter"]) == 4
    assert report["index_rate_per_s"] > 0 and report["disk_mb"] > 0
    assert 0 < report["recall_p50_ms"] <= report["recall_p95_ms"]
