"""The vector index: documents and metadata, recall with filters, shards, rebuilding."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from agent.core.config import Settings
from memory import vectors
from memory.indexer import Indexer, reindex
from memory.observation import Observation
from memory.store import Store
from memory.vectors import VectorIndex, document_text, metadata, where_filter

SCENES = [
    "A courier leaves a parcel on the doorstep.",
    "An empty street at night under the lamps.",
    "A grey cat sleeps on the sofa.",
    "A red car parks in front of the garage.",
    "Two people talk at the shop counter.",
    "The office lights switch off.",
    "A child rides a bicycle along the pavement.",
    "Rain falls on an empty car park.",
    "A man carries boxes into the loading bay.",
    "A woman waters the plants by the window.",
]


def _fill(store: Store, n: int = 60) -> list[Observation]:
    """``n`` observations, distinct texts, over two sources, 10 s apart from ts 1000."""
    found = []
    for i in range(n):
        scene = SCENES[i % len(SCENES)]
        obs = Observation(source=f"cam{i % 2}", ts=1000.0 + 10 * i, summary=f"{scene} Frame {i}.")
        store.add(obs)
        found.append(obs)
    return found


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


@pytest.fixture
def store(settings: Settings) -> Store:
    store = Store(settings.db_path)
    yield store
    store.close()


def _index(store: Store, settings: Settings, observations: list[Observation], **options) -> VectorIndex:
    index = VectorIndex(store, settings, shard_size=16, **options)
    index.add(observations)
    store.mark_indexed([obs.id for obs in observations])
    return index


def test_document_and_metadata_have_no_missing_values() -> None:
    obs = Observation(source="door", ts=5.0, summary="A man at the door.", changes="none", id=3)
    assert document_text(obs) == "A man at the door."
    assert metadata(obs) == {"source": "door", "ts": 5.0, "video_t": -1.0, "episode": -1}
    obs.changes, obs.video_t, obs.episode_id = "he rang the bell", 2.5, 7
    assert document_text(obs) == "A man at the door. Changes: he rang the bell"
    assert metadata(obs) == {"source": "door", "ts": 5.0, "video_t": 2.5, "episode": 7}
    unparsed = Observation(source="door", ts=1.0, summary="", raw="x " * 500, parsed=False)
    assert len(document_text(unparsed)) <= vectors.MAX_DOCUMENT_CHARS
    assert where_filter(since=1.0, until=2.0) == {"$and": [{"ts": {"$gte": 1.0}}, {"ts": {"$lte": 2.0}}]}
    assert where_filter() is None


def test_recall_finds_by_meaning_across_shards(store: Store, settings: Settings) -> None:
    observations = _fill(store)
    index = _index(store, settings, observations)
    assert index.shards() == [0, 1, 2, 3] and index.count() == 60
    found = index.recall("a package delivered to the front door", k=3)
    assert len(found) == 3
    assert all("parcel" in item.summary for item in found)
    assert found[0].score >= found[1].score >= found[2].score
    index.add(observations[:10])  # the observation id is the Chroma id: adding again changes nothing
    assert index.count() == 60
    index.close()


def test_time_filter_never_returns_anything_outside_the_range(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = _index(store, settings, _fill(store))
    rng = random.Random(0)
    windows = [(None, None, "cam1")]
    for _ in range(12):
        since = rng.uniform(990, 1600)
        windows.append((since, since + rng.choice([5, 30, 120, 400]), rng.choice([None, "cam0"])))
    windows += [(1000.0, 1000.0, None), (2000.0, 3000.0, None), (1200.0, None, None), (None, 1100.0, None)]
    reference = {}
    for since, until, source in windows:
        for query in ("someone at the door", "a vehicle", "animals"):
            found = index.recall(query, source=source, since=since, until=until, k=5, plan="where")
            reference[(since, until, source, query)] = [item.id for item in found]
    # Each plan (exact comparison, over-fetching, a graph walk limited to ids) returns what Chroma's
    # own where filter returns, and never anything outside the range.
    for exact_max, wide in ((300, 0.2), (0, 0.0), (0, 1.1)):
        monkeypatch.setattr(vectors, "EXACT_MAX", exact_max)
        monkeypatch.setattr(vectors, "WIDE_FRACTION", wide)
        for (since, until, source, query), expected in reference.items():
            found = index.recall(query, source=source, since=since, until=until, k=5)
            assert [item.id for item in found] == expected
            for item in found:
                assert since is None or item.ts >= since
                assert until is None or item.ts <= until
                assert source is None or item.source == source
    assert index.recall("anything", since=2000.0, until=1000.0) == []
    index.close()


def test_recall_survives_a_vector_missing_for_an_indexed_row(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    observations = _fill(store, 40)
    index = _index(store, settings, observations)
    index.delete([observations[5].id])  # SQLite still says indexed
    monkeypatch.setattr(vectors, "EXACT_MAX", 0)
    monkeypatch.setattr(vectors, "WIDE_FRACTION", 1.1)
    found = index.recall("a grey cat", since=1000.0, until=1300.0, k=3)
    assert found and all(1000.0 <= item.ts <= 1300.0 for item in found)
    assert observations[5].id not in {item.id for item in found}
    index.close()


def test_reindex_gives_the_same_results_as_the_live_index(store: Store, settings: Settings) -> None:
    live_index = VectorIndex(store, settings, shard_size=16, release_shards=True)
    indexer = Indexer(store, settings, index=live_index)
    for obs in _fill(store):
        indexer.on_observation(obs)  # as the watch loop does, after each commit
    indexer.close()
    live_index.close()
    assert not store.unindexed_count()
    index = VectorIndex(store, settings.model_copy(update={"index_batch": 7}), shard_size=16)
    queries = ["a parcel", "cars", "a cat", "people talking", "plants", "night"]

    def answers() -> list[list[tuple[int, float]]]:
        found = [index.recall(q, since=since, k=4) for q in queries for since in (None, 1100.0)]
        return [[(r.id, round(r.score, 3)) for r in items] for items in found]

    live = answers()
    assert reindex(index) == 60
    assert index.count() == 60 and not store.unindexed_count()
    assert answers() == live
    index.close()


def test_a_long_lived_reader_sees_what_another_process_indexed(store: Store, settings: Settings) -> None:
    index = _index(store, settings, _fill(store, 10))
    assert index.recall("a parcel", k=1)  # the reader has loaded the graph
    obs = Observation(source="cam0", ts=5000.0, summary="A hot air balloon lands in the garden.")
    store.add(obs)
    vector = index.embed([obs])[0]
    writer = (  # another process (a watch) indexes the new observation
        "import json, sys; from agent.core.config import Settings; from memory.store import Store; "
        "from memory.vectors import VectorIndex; store = Store(sys.argv[1]); "
        "index = VectorIndex(store, Settings(db=sys.argv[1])); [obs] = store.get_many([int(sys.argv[2])]); "
        "index.add([obs], [json.loads(sys.argv[3])]); store.mark_indexed([obs.id]); index.close()"
    )
    args = [str(settings.db_path), str(obs.id), json.dumps(vector)]
    subprocess.run([sys.executable, "-c", writer, *args], check=True, timeout=120)
    assert [item.id for item in index.recall("a balloon landing", k=1)] == [obs.id]
    index.close()
