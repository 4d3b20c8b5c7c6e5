"""The memory against a real Chroma server (``SCENEWATCH_CHROMA_URL``): a watch indexes into it,
recall, reindex, stats and prune go through it, and a server that is down loses nothing."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import UseBackend
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.config import load_settings
from agent.core.errors import ScenewatchError
from memory.indexer import Indexer
from memory.observation import Observation
from memory.store import Store
from memory.vectors import VectorIndex
from tools.vision.scripted import ScriptedBackend

CHROMA = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
pytestmark = pytest.mark.skipif(
    CHROMA is None, reason="the `chroma` executable (chromadb's server) is missing"
)

runner = CliRunner()
NOW = time.time()
OLD = [  # 40 days ago, left unindexed by an earlier run
    "A courier leaves a parcel on the doorstep.",
    "A courier rings the bell holding a parcel.",
]
CLIP = [  # the watch's answers for the synthetic clip (a red box from 5 s to 12 s), in order
    "An empty driveway in front of a closed garage.",
    "A red box has been left in the middle of the driveway.",
    "The red box is still lying on the driveway.",
    "The driveway is empty again; someone took the box away.",
    "A grey cat walks across the empty driveway.",
]


class ChromaServer:
    """``chroma run`` on a free localhost port with its own data folder; stop and start it again."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log = data, log
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server and wait until it answers its heartbeat."""
        args = [str(CHROMA), "run", "--path", str(self.data), "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"chroma run exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(
                        f"chroma run did not answer within {timeout_s:.0f}s: {self.log.read_text()[-2000:]}"
                    )
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


class StallingProxy:
    """A TCP proxy on 127.0.0.1 to a local port that can fall silent: once stalled it still accepts
    connections but forwards nothing either way, as a server that hangs; ``resume`` lifts that."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.stalled = threading.Event()
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client = self._sock.accept()[0]
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        while not self._stop.is_set():
            if self.stalled.is_set():
                time.sleep(0.05)
                continue
            try:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except TimeoutError:
                continue
            except OSError:
                return

    def stall(self) -> None:
        self.stalled.set()

    def resume(self) -> None:
        self.stalled.clear()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for conn in self._conns:
            conn.close()
        self._sock.close()


@pytest.fixture
def chroma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChromaServer]:
    """A running Chroma server that ``SCENEWATCH_CHROMA_URL`` points at (stopped at the end)."""
    server = ChromaServer(tmp_path / "chroma-server", tmp_path / "chroma-server.log")
    server.start()
    monkeypatch.setenv("SCENEWATCH_CHROMA_URL", server.url)
    try:
        yield server
    finally:
        server.stop()


def _commit(store: Store, texts: list[str], ts: float, step_s: float = 60.0) -> list[Observation]:
    found = []
    for i, text in enumerate(texts):
        obs = Observation(source="door", ts=ts + step_s * i, summary=text)
        store.add(obs)
        found.append(obs)
    return found


def _wait_for(condition: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s:.0f}s"
        time.sleep(0.05)


def _json(args: list[str]) -> object:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _recall(query: str, *args: str) -> list[tuple[int, float]]:
    return [(item["id"], round(item["score"], 3)) for item in _json(["recall", query, "--json", *args])]


def test_watch_recall_reindex_stats_and_prune_through_a_server(
    chroma: ChromaServer, synthetic_clip: Path, monkeypatch: pytest.MonkeyPatch, use_backend: UseBackend
) -> None:
    settings = load_settings()
    store = Store(settings.db_path)
    old = _commit(store, OLD, NOW - 40 * 86400)
    answers = [json.dumps({"summary": text, "people": 0, "changes": ""}) for text in CLIP]
    use_backend(ScriptedBackend(answers))
    watched = runner.invoke(app, ["watch", str(synthetic_clip), "--heartbeat", "5s"])
    assert watched.exit_code == 0, watched.output
    rows = store.between(source=str(synthetic_clip))
    assert [obs.summary for obs in rows] == CLIP
    assert store.unindexed_count() == 0  # the watch's indexer wrote the clip and swept the old rows

    parcels = _recall("a parcel delivery", "-k", "2")
    assert {i for i, _ in parcels} == {obs.id for obs in old}
    assert {i for i, _ in _recall("a red box on the driveway", "-k", "2")} == {rows[1].id, rows[2].id}
    since, until = rows[2].ts, rows[3].ts
    in_range = _recall("a red box", "--since", repr(since), "--until", repr(until), "-k", "10")
    assert sorted(i for i, _ in in_range) == [rows[2].id, rows[3].id]
    later = _recall("a cat", "--since", repr(since), "-k", "10")
    assert later[0][0] == rows[4].id and sorted(i for i, _ in later) == [obs.id for obs in rows[2:]]

    queries = [
        ("a parcel delivery",),
        ("a red box", "--since", repr(since)),
        ("a cat", "--until", repr(until)),
    ]
    before = [_recall(*query) for query in queries]
    reindexed = runner.invoke(app, ["memory", "reindex"])
    assert reindexed.exit_code == 0, reindexed.output
    assert "reindexed 7 observations" in reindexed.output
    assert [_recall(*query) for query in queries] == before

    stats = _json(["memory", "stats", "--json"])
    assert (stats["observations"], stats["indexed"], stats["unindexed"], stats["vectors"]) == (7, 7, 0, 7)
    assert stats["vectors_bytes"] == 0  # the vectors live on the server
    assert not settings.chroma_dir.exists()  # nothing was written to the local vector folder

    pruned = runner.invoke(app, ["memory", "prune", "--older-than", "30d", "--yes"])
    assert pruned.exit_code == 0, pruned.output
    assert "removed 2 observations, 2 vectors" in pruned.output
    assert _json(["memory", "stats", "--json"])["vectors"] == 5
    assert {i for i, _ in _recall("a parcel delivery", "-k", "10")} == {obs.id for obs in rows}
    store.close()


def test_a_server_that_is_down_is_a_clear_error_and_loses_nothing(
    chroma: ChromaServer, synthetic_clip: Path
) -> None:
    settings = load_settings()
    store = Store(settings.db_path)
    observations = _commit(store, OLD, NOW - 600)
    chroma.stop()
    message = f"cannot open the vector index at {chroma.url}"
    with pytest.raises(ScenewatchError, match=message):
        Indexer(store, settings)
    for args in (["recall", "a parcel"], ["memory", "stats"], ["watch", str(synthetic_clip)]):
        result = runner.invoke(app, args)
        assert isinstance(result.exception, ScenewatchError) and message in str(result.exception), args
    # The watch stopped before analysing anything; what SQLite holds waits for the server.
    assert store.count() == len(OLD) and store.unindexed_count() == len(OLD)

    chroma.start()
    indexer = Indexer(store, settings)  # the sweep at start indexes what was left
    _wait_for(lambda: not store.unindexed_count(), "indexing after the server came back")
    indexer.close()
    assert {i for i, _ in _recall("a parcel", "-k", "5")} == {obs.id for obs in observations}
    store.close()


def test_rows_written_while_the_server_is_away_are_indexed_when_it_returns(chroma: ChromaServer) -> None:
    settings = load_settings(index_batch=4)
    store = Store(settings.db_path)
    reader = VectorIndex(store, settings, shard_size=4)  # a long-lived reader, as the assistant holds one
    index = VectorIndex(store, settings, shard_size=4, release_shards=True)  # as a watch writes
    indexer = Indexer(store, settings, index=index, max_wait_s=0.1)
    for obs in _commit(store, OLD, NOW - 600):
        indexer.on_observation(obs)
    _wait_for(lambda: not store.unindexed_count(), "indexing")
    assert len(reader.recall("a parcel", k=5)) == len(OLD)

    chroma.stop()
    away = _commit(store, CLIP, NOW - 300)  # crosses into the next shards while the server is down
    for obs in away:
        indexer.on_observation(obs)
    _wait_for(lambda: indexer.last_error is not None, "a failed index write")
    assert store.count() == len(OLD) + len(CLIP)
    assert store.unindexed_ids(limit=100) == [obs.id for obs in away]
    with pytest.raises(ScenewatchError, match=f"the Chroma server at {chroma.url} did not answer"):
        reader.recall("a parcel", k=5)  # not a raw connection error out of the HTTP client

    chroma.start()
    _wait_for(lambda: not store.unindexed_count(), "indexing after the server came back")
    indexer.close()
    index.close()
    assert indexer.last_error is None and reader.count() == len(OLD) + len(CLIP)
    found = reader.recall("a cat on the driveway", since=away[0].ts, k=1)
    assert [item.id for item in found] == [away[4].id]
    reader.close()
    store.close()


@pytest.mark.timeout(120)
def test_a_server_that_stops_answering_is_a_server_that_is_down(chroma: ChromaServer) -> None:
    """Calls on clients opened before the server fell silent give up after chroma_timeout_s: recall
    is an error, the indexer leaves the rows unindexed and catches up once the server answers."""
    proxy = StallingProxy(chroma.port)
    settings = load_settings(chroma_url=proxy.url, chroma_timeout_s=1, index_batch=4)
    store = Store(settings.db_path)
    reader = VectorIndex(store, settings)
    indexer = Indexer(store, settings, max_wait_s=0.1)
    for obs in _commit(store, OLD, NOW - 600):
        indexer.on_observation(obs)
    _wait_for(lambda: not store.unindexed_count(), "indexing")
    assert len(reader.recall("a parcel", k=5)) == len(OLD)

    proxy.stall()
    away = _commit(store, CLIP, NOW - 300)
    for obs in away:
        indexer.on_observation(obs)
    _wait_for(lambda: indexer.last_error is not None, "a write that gives up", timeout_s=15)
    assert store.unindexed_ids(limit=100) == [obs.id for obs in away]
    started = time.monotonic()
    with pytest.raises(ScenewatchError) as raised:
        reader.recall("a parcel", k=5)
    assert str(raised.value) == (
        f"the Chroma server at {proxy.url} did not answer: no answer within 1s (SCENEWATCH_CHROMA_TIMEOUT_S)"
    )
    assert time.monotonic() - started < 10

    proxy.resume()
    _wait_for(lambda: not store.unindexed_count(), "indexing after the server answers again", timeout_s=60)
    indexer.close()
    assert reader.count() == len(OLD) + len(CLIP)
    reader.close()
    proxy.close()
    store.close()
