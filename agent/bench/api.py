"""``scenewatch bench api``: the HTTP API over a large store, and many clients on the live stream.

A scratch store is filled with N synthetic observations
(:func:`agent.bench.memory_store.synthetic_observations`: distinct summaries over four sources and
a week), their episodes (the real tracker, with a cheap hash embedding so that it costs nothing:
every observation starts an episode, the timeline's worst case), one event per hundred
observations, and their vectors (the real indexer and embeddings). A service is started on it on a
free 127.0.0.1 port, in this process, and measured:

- **latency**: p50/p95/max of ``GET /api/observations`` (a page of 50, newest first, in a random
  window, half of them of one source, and the next page by cursor), ``GET /api/timeline`` (a
  random window from a minute to a day) and ``GET /api/recall`` (a query in a random window),
  each request after the previous one, over HTTP with keep-alive;
- **the live stream**: ``clients`` SSE clients connect, a synthetic clip is added as a source and
  watched (a scripted model that changes its answer every frame: every frame is an observation
  and raises an event); each client must receive every observation and event committed after it
  connected, once, in order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from langchain_core.embeddings import DeterministicFakeEmbedding

from agent.bench.clips import write_clip
from agent.bench.memory_store import PLACES, QUERIES, SPAN_S, synthetic_observations
from agent.core.config import Settings
from agent.events.ruleset import load_rules
from agent.service.runtime import Service
from agent.service.server import ServerThread
from memory.episodes import EpisodeTracker
from memory.events import NewEvent, Outbox
from memory.indexer import index_all
from memory.store import Store
from memory.vectors import VectorIndex
from tools.vision.base import VisionRequest
from tools.vision.scripted import ScriptedBackend

Progress = Callable[[str, int, int], None]  # phase, done, total

FILL_BATCH = 1000
EVENT_EVERY = 100
STREAM_RULES = "state_changes:\n  changes: true\n"  # every observation whose changes are not empty


def _fill(store: Store, settings: Settings, n: int, start_ts: float, progress: Progress) -> None:
    """Observations, their episodes and an event every :data:`EVENT_EVERY`, committed in batches."""
    tracker = EpisodeTracker(store, settings, embeddings=DeterministicFakeEmbedding(size=16))
    outbox = Outbox(store)
    observations = synthetic_observations(n, start_ts)
    done = 0
    while batch := list(itertools.islice(observations, FILL_BATCH)):
        events = []
        with store.transaction():
            for obs in batch:
                store.add(obs)
                tracker.on_observation(obs)
                if obs.id is not None and obs.id % EVENT_EVERY == 0:
                    events.append(
                        NewEvent(
                            obs.ts,
                            obs.source,
                            "synthetic",
                            "rule",
                            "info",
                            obs.summary,
                            observation_id=obs.id,
                        )
                    )
        outbox.record(events)
        done += len(batch)
        progress("storing", done, n)
    tracker.close()


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50_ms": at(0.5), "p95_ms": at(0.95), "max_ms": round(ordered[-1], 2), "requests": len(ordered)}


def _window(
    rng: random.Random, span: tuple[float, float], shortest: float, longest: float
) -> tuple[float, float]:
    width = shortest * (longest / shortest) ** rng.random()
    since = rng.uniform(span[0], span[1] - width)
    return since, since + width


def _time_requests(client: httpx.Client, span: tuple[float, float], requests: int) -> dict[str, Any]:
    """Latencies of observations pages, timelines and recalls in random windows."""
    rng = random.Random(7)
    sources = list(PLACES)
    timings: dict[str, list[float]] = {
        "observations": [],
        "observations_next_page": [],
        "timeline": [],
        "recall": [],
    }

    def timed(kind: str, path: str, params: dict[str, Any]) -> Any:
        tick = time.perf_counter()
        answer = client.get(path, params=params)
        timings[kind].append((time.perf_counter() - tick) * 1000)
        answer.raise_for_status()
        return answer.json()

    for i in range(requests):
        since, until = _window(rng, span, 60.0, SPAN_S / 2)
        params: dict[str, Any] = {"since": str(since), "until": str(until), "limit": 50}
        if i % 2:
            params["source"] = rng.choice(sources)
        page = timed("observations", "/api/observations", params)
        if page["next_cursor"]:
            timed("observations_next_page", "/api/observations", {**params, "cursor": page["next_cursor"]})
        since, until = _window(rng, span, 60.0, 86400.0)
        timed("timeline", "/api/timeline", {"since": str(since), "until": str(until)})
        since, until = _window(rng, span, 60.0, SPAN_S / 2)
        recall = {"q": QUERIES[i % len(QUERIES)], "since": str(since), "until": str(until), "k": 5}
        if i % 2:
            recall["source"] = rng.choice(sources)
        timed("recall", "/api/recall", recall)
    return {kind: _percentiles(values) for kind, values in timings.items() if values}


async def _receive(url: str, after: str, timeout: float, into: list[tuple[str, int]]) -> None:
    """One SSE client from ``after``: (kind, id) of each message into ``into``, until cancelled."""
    async with (
        httpx.AsyncClient(timeout=timeout) as client,
        client.stream("GET", f"{url}/api/stream", params={"after": after}) as response,
    ):
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                into.append((kind, json.loads(line[5:])["id"]))


async def _watch_a_clip(url: str, clip: Path, timeout: float) -> None:
    """Add ``clip`` as a source through the API and wait until it is watched to its end."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        added = await client.post("/api/sources", json={"source": str(clip)})
        added.raise_for_status()
        source_id = added.json()["id"]
        while (await client.get(f"/api/sources/{source_id}")).json()["state"] != "finished":
            await asyncio.sleep(0.2)


def _stream_clients(url: str, service: Service, clients: int, clip: Path, timeout: float) -> dict[str, Any]:
    """``clients`` SSE clients on one stream while a clip is watched: what each missed or got twice."""
    first_observation, first_event = service.reader.last_id(), service.outbox.last_id()
    received: list[list[tuple[str, int]]] = [[] for _ in range(clients)]

    async def run() -> None:
        after = f"{first_observation}-{first_event}"
        tasks = [asyncio.create_task(_receive(url, after, timeout, got)) for got in received]
        await asyncio.sleep(1.0)  # every client is connected
        await _watch_a_clip(url, clip, timeout)
        await asyncio.sleep(2.0)  # the last commits reach every client
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    events = service.outbox.after(first_event, limit=10**6)
    expected: list[tuple[str, int]] = []
    for obs in service.reader.page(after_id=first_observation, limit=10**6):
        expected.append(("observation", obs.id or 0))
        expected += [("event", event["id"]) for event in events if event["observation_id"] == obs.id]
    return {
        "clients": clients,
        "observations": sum(kind == "observation" for kind, _ in expected),
        "events": sum(kind == "event" for kind, _ in expected),
        "clients_complete": sum(got == expected for got in received),
        "missed": sum(len(set(expected) - set(got)) for got in received),
        "duplicates": sum(len(got) - len(set(got)) for got in received),
    }


def run_api_bench(
    n: int,
    settings: Settings,
    *,
    requests: int = 200,
    clients: int = 50,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fill a scratch store with ``n`` observations, serve it, measure; returns the report."""
    report_progress = progress or (lambda phase, done, total: None)
    with tempfile.TemporaryDirectory(prefix="scenewatch-bench-api-") as scratch:
        cfg = settings.model_copy(
            update={
                "home": Path(scratch),
                "db": None,
                "chroma_url": None,
                "gate_threshold": 0.0,
                "every_s": 0.5,
            }
        )
        start_ts = time.time() - SPAN_S
        store = Store(cfg.db_path)
        _fill(store, cfg, n, start_ts, report_progress)
        index = VectorIndex(store, cfg, release_shards=True)
        try:
            index_all(store, cfg, index, progress=lambda done: report_progress("indexing", done, n))
        finally:
            index.close()
            store.close()
        clip = write_clip(Path(scratch) / "stream.mp4", duration_s=30.0)
        counter = itertools.count()

        def answer(request: VisionRequest) -> str:
            number = next(counter)
            return json.dumps({"summary": f"frame {number}", "people": 0, "changes": f"change {number}"})

        rules = Path(scratch) / "rules.yaml"
        rules.write_text(STREAM_RULES)
        service = Service(cfg, backend=ScriptedBackend(answer), ruleset=load_rules(rules))
        with ServerThread(service) as url, httpx.Client(base_url=url, timeout=60) as client:
            if not service.wait_ready(120):
                raise RuntimeError(f"the service did not start: {service.failure}")
            client.get("/api/recall", params={"q": QUERIES[0]}).raise_for_status()  # loads the embedder
            report_progress("requests", 0, 1)
            latency = _time_requests(client, (start_ts, start_ts + SPAN_S), requests)
            report_progress("requests", 1, 1)
            report_progress("stream", 0, 1)
            stream = _stream_clients(url, service, clients, clip, timeout=120.0)
            report_progress("stream", 1, 1)
    return {"observations": n, "requests_each": requests, "latency": latency, "stream": stream}
