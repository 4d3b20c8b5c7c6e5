"""``scenewatch bench memory``: the vector memory at scale, measured in a scratch store.

A temporary store is filled with N synthetic observations: distinct, realistic summaries (no two
alike, so nothing is answered from a cache) over four sources and a week. Then:

- **indexing**: observations are committed one batch at a time and handed to the background
  :class:`~memory.indexer.Indexer`, as a watch does, until all are in the index (embedding
  included); the longest ``on_observation`` call shows it never blocks;
- **watch memory**: a fresh watch-like process (episode tracker and indexer, 200 new observations)
  over an empty store and over the full one: its RSS must not grow with the number stored;
- **recall**: latency p50/p95 without a filter, with a time filter (random windows from a minute to
  half the week, half of them for one source; every result checked to be in range), and with
  Chroma's own ``where`` filter for comparison;
- **reindex**: the time to rebuild the index from SQLite, and whether recall answers the same;
- **disk**: database and vector folder sizes;
- **opening**: the time a command takes to open the full database (its ``quick_check`` included).
"""

from __future__ import annotations

import itertools
import operator
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from agent.core.config import Settings
from memory.embeddings import minilm_embeddings
from memory.episodes import EpisodeTracker
from memory.indexer import Indexer, reindex
from memory.observation import Observation
from memory.store import Store
from memory.vectors import Plan, VectorIndex, folder_bytes

Progress = Callable[[str, int, int], None]  # phase, done, total

SPAN_S = 7 * 86400.0
EPISODE_SAMPLE = 200  # observations run through the episode tracker (its cost is per observation)
WATCH_PROBE = 200  # observations a probe watch process indexes
COLORS = ("red", "blue", "green", "black", "white", "grey", "yellow", "orange", "brown", "purple")
SUBJECTS = (  # (people, phrase); every phrase takes a colour, so each combination reads differently
    (1, "A man in a {c} jacket"),
    (1, "A woman in a {c} coat"),
    (1, "A courier in a {c} uniform"),
    (1, "An elderly man with a {c} walking stick"),
    (1, "A teenager on a {c} bicycle"),
    (2, "Two women with {c} shopping bags"),
    (1, "A child in a {c} raincoat"),
    (2, "A couple pushing a {c} pram"),
    (1, "A jogger in {c} shorts"),
    (1, "A postman carrying a {c} sack"),
    (3, "Three students with {c} backpacks"),
    (1, "A security guard in a {c} vest"),
    (0, "A {c} van"),
    (0, "A {c} hatchback"),
    (0, "A stray dog with a {c} collar"),
    (0, "A {c} umbrella"),
)
PLACES = {
    "front-door": (
        "stands at the front door",
        "leaves a parcel on the step",
        "waits by the doorbell",
        "looks through the glass panel",
        "comes up the garden path",
        "knocks on the door",
        "lingers near the porch",
        "walks away from the door",
    ),
    "shop-floor": (
        "browses the shelves",
        "pays at the counter",
        "queues by the till",
        "tries on a hat near the mirror",
        "carries a basket down the aisle",
        "talks with the cashier",
        "looks at the window display",
        "leaves through the shop door",
    ),
    "car-park": (
        "crosses the car park",
        "waits near the ticket machine",
        "loads bags into a boot",
        "stands beside the barrier",
        "walks between the parked cars",
        "is parked across two bays",
        "passes the entrance ramp",
        "stops by the charging point",
    ),
    "loading-bay": (
        "unloads boxes from a pallet",
        "waits by the shutter",
        "moves a trolley across the bay",
        "checks a clipboard by the dock",
        "stacks crates near the wall",
        "is reversing towards the dock",
        "drags a bin to the gate",
        "stands next to the forklift",
    ),
}
CONTEXTS = (
    "in light rain",
    "in bright sunshine",
    "under the street lamps",
    "at dusk",
    "on a grey morning",
    "in heavy rain",
    "while traffic passes behind",
    "in thin fog",
    "in the late afternoon",
    "just after dawn",
    "in a strong wind",
    "under a clear night sky",
)
DETAILS = (
    "",
    "; the door behind is closed",
    "; the lights are on",
    "; a bicycle leans on the wall",
    "; puddles cover the ground",
    "; a cone blocks one side",
)
QUERIES = (
    "someone at the door",
    "a parcel delivery",
    "a person on a bicycle",
    "a van parked near the entrance",
    "people paying at the counter",
    "a dog wandering around",
    "someone in a red jacket",
    "boxes being unloaded",
    "children outside in the rain",
    "a security guard on patrol",
    "a car blocking two spaces",
    "nobody around at night",
    "a courier knocking",
    "shoppers with bags",
    "a forklift in the loading bay",
    "an old man with a stick",
    "someone looking through the window",
    "a jogger passing by",
    "foggy morning",
    "crates stacked by the wall",
)


def synthetic_observations(n: int, start_ts: float, seed: int = 0) -> Iterator[Observation]:
    """``n`` distinct observations spread evenly over :data:`SPAN_S` from ``start_ts``.

    Each index maps to its own combination (a bijection over the combinations of its source),
    so no summary repeats.
    """
    sources = list(PLACES)
    per_source = len(SUBJECTS) * len(COLORS) * len(PLACES[sources[0]]) * len(CONTEXTS) * len(DETAILS)
    if n > per_source * len(sources):
        raise ValueError(f"at most {per_source * len(sources)} distinct synthetic observations")
    stride = 7919  # a prime sharing no factor with per_source: j * stride mod per_source is one-to-one
    rng = random.Random(seed)
    for i in range(n):
        source = sources[i % len(sources)]
        combo = (i // len(sources)) * stride % per_source
        combo, detail = divmod(combo, len(DETAILS))
        combo, context = divmod(combo, len(CONTEXTS))
        combo, action = divmod(combo, len(PLACES[source]))
        subject, color = divmod(combo, len(COLORS))
        people, phrase = SUBJECTS[subject]
        who = phrase.format(c=COLORS[color])
        summary = f"{who} {PLACES[source][action]} {CONTEXTS[context]}{DETAILS[detail]}."
        yield Observation(
            source=source,
            ts=start_ts + i * SPAN_S / n + rng.random(),
            summary=summary,
            people=people,
            objects=[],
            changes=f"{who.lower()} appeared" if rng.random() < 0.3 else "none",
            answers={"person_present": people > 0},
            model="synthetic",
        )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _overlap(before: list[int], after: list[int]) -> float:
    """Share of the results found both times (1.0 when both are empty)."""
    return len(set(before) & set(after)) / max(len(before), len(after), 1)


def _rss_mb() -> float:
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def _episode_p95_ms(settings: Settings, start_ts: float) -> float:
    """The episode tracker's cost per observation (it runs on the watch loop: one small embedding)."""
    store = Store(settings.data_dir / "episodes.db")
    tracker = EpisodeTracker(store, settings)
    latencies = []
    for obs in synthetic_observations(EPISODE_SAMPLE, start_ts, seed=1):
        store.add(obs)
        tick = time.perf_counter()
        tracker.on_observation(obs)
        latencies.append((time.perf_counter() - tick) * 1000)
    tracker.close()
    store.close()
    return _percentile(latencies, 0.95)


def _fill_and_index(store: Store, settings: Settings, n: int, start_ts: float, progress: Progress) -> dict:
    """Commit observations as a watch does, handing each to the indexer, until all are indexed."""
    indexer = Indexer(store, settings)
    enqueue_ms, rss = [], []
    started = time.perf_counter()
    observations = synthetic_observations(n, start_ts)
    while batch := list(itertools.islice(observations, 100)):
        with store.transaction():
            for obs in batch:
                store.add(obs)
        for obs in batch:
            tick = time.perf_counter()
            indexer.on_observation(obs)
            enqueue_ms.append((time.perf_counter() - tick) * 1000)
    quarter = 1
    while True:
        left = store.unindexed_count()
        progress("indexing", n - left, n)
        while quarter <= 4 and n - left >= quarter * n / 4:
            rss.append(_rss_mb())
            quarter += 1
        if not left:
            break
        time.sleep(0.25)
    indexer.close()
    index_s = time.perf_counter() - started
    return {
        "index_rate_per_s": round(n / index_s, 1),
        "index_s": round(index_s, 1),
        "enqueue_max_ms": round(max(enqueue_ms), 3),
        "rss_mb_by_quarter": rss,
        "rss_mb": max(rss),
    }


def watch_probe(db: str, start_ts: float) -> None:
    """Print the resident set (MiB) of a watch-like process: the store opened with the episode tracker
    and the indexer, :data:`WATCH_PROBE` new observations committed and indexed. Run it in a fresh
    process, once over an empty store and once over a full one."""
    settings = Settings(db=Path(db), chroma_url=None)
    store = Store(settings.db_path)
    listeners = [EpisodeTracker(store, settings), Indexer(store, settings)]
    for obs in synthetic_observations(WATCH_PROBE, start_ts, seed=2):
        store.add(obs)
        for listener in listeners:
            listener.on_observation(obs)
    while store.unindexed_count():
        time.sleep(0.1)
    for listener in listeners:
        listener.close()
    print(_rss_mb())


def _watch_rss_mb(db: Path, start_ts: float) -> float:
    code = f"from agent.bench.memory_store import watch_probe; watch_probe({str(db)!r}, {start_ts!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"the watch probe failed: {done.stderr.strip()[-500:]}")
    return float(done.stdout.split()[-1])


def _time_recalls(
    index: VectorIndex, n_queries: int, span: tuple[float, float], filtered: bool, plan: Plan = "auto"
) -> tuple[list[float], int]:
    """Latencies (ms) of ``n_queries`` recalls, and how many results fell outside their range."""
    rng = random.Random(1 if filtered else 2)
    sources = list(PLACES)
    latencies, outside = [], 0
    for i in range(n_queries):
        query = QUERIES[i % len(QUERIES)]
        since = until = source = None
        if filtered:
            width = 60 * (SPAN_S / 2 / 60) ** rng.random()  # from a minute to half the span
            since = rng.uniform(span[0], span[1] - width)
            until = since + width
            source = rng.choice(sources) if i % 2 else None
        tick = time.perf_counter()
        found = index.recall(query, source=source, since=since, until=until, k=5, plan=plan)
        latencies.append((time.perf_counter() - tick) * 1000)
        if filtered:
            outside += sum(not (since <= r.ts <= until) or r.source != (source or r.source) for r in found)
    return latencies, outside


def run_memory_bench(
    n: int,
    settings: Settings,
    *,
    queries: int = 100,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fill a scratch store with ``n`` observations and measure the memory; returns the report."""
    report_progress = progress or (lambda phase, done, total: None)
    minilm_embeddings()  # load the model before the clock starts
    with tempfile.TemporaryDirectory(prefix="scenewatch-bench-memory-") as scratch:
        cfg = settings.model_copy(update={"home": Path(scratch), "db": None, "chroma_url": None})
        store = Store(cfg.db_path)
        start_ts = time.time() - SPAN_S
        span = (start_ts, start_ts + SPAN_S)
        report: dict[str, Any] = {"observations": n, "sources": len(PLACES), "index_batch": cfg.index_batch}
        report["watch_rss_mb_empty_store"] = _watch_rss_mb(Path(scratch) / "empty.db", start_ts)
        report |= _fill_and_index(store, cfg, n, start_ts, report_progress)
        tick = time.perf_counter()
        Store(cfg.db_path).close()  # what every command pays to open it: quick_check (warm page cache)
        report["db_open_ms"] = round((time.perf_counter() - tick) * 1000, 1)
        report["watch_rss_mb"] = _watch_rss_mb(cfg.db_path, start_ts + SPAN_S)
        report["episode_p95_ms"] = _episode_p95_ms(cfg, start_ts)
        index = VectorIndex(store, cfg)
        try:
            index.recall(QUERIES[0])  # open every shard once
            report_progress("recall", 0, 3)
            plain, _ = _time_recalls(index, queries, span, filtered=False)
            report_progress("recall", 1, 3)
            ranged, outside = _time_recalls(index, queries, span, filtered=True)
            report_progress("recall", 2, 3)
            where, _ = _time_recalls(index, max(5, queries // 10), span, filtered=True, plan="where")
            report_progress("recall", 3, 3)
            before = [[r.id for r in index.recall(q, k=5)] for q in QUERIES]
            tick = time.perf_counter()
            reindex(index, progress=lambda done: report_progress("reindex", done, n))
            reindex_s = time.perf_counter() - tick
            after = [[r.id for r in index.recall(q, k=5)] for q in QUERIES]
        finally:
            index.close()
        db_bytes = sum(p.stat().st_size for p in cfg.db_path.parent.glob(cfg.db_path.name + "*"))
        vector_bytes = folder_bytes(cfg.chroma_dir)
        store.close()
    return report | {
        "recall_p50_ms": _percentile(plain, 0.5),
        "recall_p95_ms": _percentile(plain, 0.95),
        "recall_filtered_p50_ms": _percentile(ranged, 0.5),
        "recall_filtered_p95_ms": _percentile(ranged, 0.95),
        "recall_where_filter_p95_ms": _percentile(where, 0.95),
        "recall_out_of_range": outside,
        "recall_mean_ms": round(statistics.fmean(plain), 2),
        "reindex_s": round(reindex_s, 1),
        "reindex_same_results": round(sum(map(operator.eq, before, after)) / len(before), 3),
        "reindex_overlap": round(statistics.fmean(map(_overlap, before, after)), 3),
        "disk_mb": round((db_bytes + vector_bytes) / 2**20, 1),
        "db_mb": round(db_bytes / 2**20, 1),
        "vectors_mb": round(vector_bytes / 2**20, 1),
    }
