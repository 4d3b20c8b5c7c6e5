"""The vector index over observations: Chroma through langchain-chroma, offline MiniLM embeddings.

SQLite is the truth; this index is derived from it and can be rebuilt (:meth:`VectorIndex.reindex`).

- **Where**: a local persistent Chroma at ``settings.chroma_dir``, or a Chroma server at
  ``settings.chroma_url``; telemetry off, and always the explicit MiniLM embedding function. A
  server that does not answer (down, or silent for ``chroma_timeout_s``: every HTTP call has that
  timeout) is a ScenewatchError naming it (opening, recall, count, delete, clear); the indexer
  leaves what it could not write ``indexed = 0`` and retries.
- **Shards**: observations are split by id into collections of ``shard_size`` (``observations-00000``,
  ...). Chroma loads the whole HNSW graph of a collection it writes to (about 2 KB a vector); a watch
  process writes only to the newest shard, so its memory does not depend on how much is stored.
  Opened with ``release_shards=True`` it closes its client when it moves to the next shard; Chroma
  still keeps part of what a process wrote (measured: 0.5-1.4 KB a vector), so a watch meant to run
  for weeks is better pointed at a Chroma server (``chroma_url``).
- **Documents**: the summary (the raw answer when it did not parse) plus the changes when there are
  any, clipped to :data:`MAX_DOCUMENT_CHARS`. Objects and actions are left out: the summary names
  what matters, and short texts keep embedding fast.
- **Metadata**: ``source`` (str), ``ts`` (epoch float), ``video_t`` (float, -1 when none),
  ``episode`` (int, -1 when none). The Chroma id is the observation id, so re-adding is idempotent.
- **Recall with filters**: Chroma's own ``where`` filter costs 40-300 ms over 100,000 vectors
  (evaluating the metadata, then a filtered graph walk), so the range is planned through SQLite
  (covering indexes on ``ts`` and ``source, ts``) shard by shard: a few candidates are compared
  exactly, a wide range over-fetches from the graph and keeps what is in range, anything between
  searches the graph limited to the candidate ids. Results are never outside the range.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar
from urllib.parse import urlsplit

import numpy as np
from langchain_core.embeddings import Embeddings

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from memory.embeddings import MemoryEmbeddings
from memory.observation import Observation, changes_text
from memory.store import Store, range_sql

if TYPE_CHECKING:
    from langchain_chroma import Chroma

log = logging.getLogger(__name__)

SHARD_SIZE = 20_000
MAX_DOCUMENT_CHARS = 240
EXACT_MAX = 300  # candidates in a shard compared exactly (fetching their vectors beats a filtered walk)
WIDE_FRACTION = 0.2  # a shard this much in range is searched unfiltered, over-fetching
OVERFETCH_MAX = 400
_PREFIX = "observations-"
_CONFIGURATION: Any = {"hnsw": {"space": "cosine"}}  # every shard: cosine distance
Plan = Literal["auto", "where"]
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Recalled:
    """An observation found by meaning; ``score`` is the cosine similarity (1 is identical)."""

    id: int
    source: str
    ts: float
    video_t: float | None
    summary: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def document_text(obs: Observation) -> str:
    """The text embedded for an observation: summary (or raw answer) plus its changes, clipped."""
    text = " ".join((obs.summary or obs.raw).split())
    changes = changes_text(obs.changes)
    if changes and changes.lower() not in text.lower():
        text = f"{text} Changes: {changes}" if text else changes
    if len(text) > MAX_DOCUMENT_CHARS:
        text = text[:MAX_DOCUMENT_CHARS].rsplit(" ", 1)[0]
    return text


def metadata(obs: Observation) -> dict[str, str | float | int]:
    """Chroma metadata for an observation: numbers and strings only (sentinels for missing values)."""
    return {
        "source": obs.source,
        "ts": float(obs.ts),
        "video_t": float(obs.video_t) if obs.video_t is not None else -1.0,
        "episode": int(obs.episode_id) if obs.episode_id is not None else -1,
    }


def where_filter(
    source: str | None = None, since: float | None = None, until: float | None = None
) -> dict[str, Any] | None:
    """The Chroma ``where`` filter for a source and an inclusive epoch range (None: no filter)."""
    clauses: list[dict[str, Any]] = []
    if source is not None:
        clauses.append({"source": source})
    if since is not None:
        clauses.append({"ts": {"$gte": float(since)}})
    if until is not None:
        clauses.append({"ts": {"$lte": float(until)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


_HTTP_TIMEOUT_S: ContextVar[float | None] = ContextVar("chroma_http_timeout_s", default=None)


def _bound_chroma_http() -> None:
    """Give the HTTP session of every Chroma server client built under :data:`_HTTP_TIMEOUT_S` a timeout.

    chromadb 1.5's ``FastAPI`` client builds its ``httpx.Client`` with ``timeout=None`` and has no
    setting for one (its ``*_request_timeout_seconds`` settings belong to the server), and
    ``chromadb.HttpClient(...)`` already sends requests (the user identity, the tenant, the
    database): so the session gets its timeout in the constructor, before the first request. Every
    later call goes through that session. Installed once; clients built without a timeout set are
    left as chromadb builds them.
    """
    from chromadb.api.fastapi import FastAPI

    if getattr(FastAPI.__init__, "_scenewatch_timeout", False):
        return
    build = FastAPI.__init__

    @wraps(build)
    def __init__(self: Any, system: Any) -> None:
        build(self, system)
        seconds = _HTTP_TIMEOUT_S.get()
        if seconds is not None:
            import httpx

            self._session.timeout = httpx.Timeout(seconds)

    __init__._scenewatch_timeout = True  # type: ignore[attr-defined]
    FastAPI.__init__ = __init__  # type: ignore[method-assign]


def _no_answer(exc: BaseException) -> BaseException | None:
    """The HTTP transport error (refused, reset, timed out) behind ``exc``, if there is one."""
    import httpx  # chromadb's HTTP client: loaded with it

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, httpx.TransportError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _timed_out(error: BaseException) -> bool:
    import httpx

    return isinstance(error, httpx.TimeoutException)


def _why(settings: Settings, error: BaseException) -> str:
    """What a transport error says, in words (a timeout names the setting that bounds it)."""
    if _timed_out(error):
        return f"no answer within {settings.chroma_timeout_s:g}s (SCENEWATCH_CHROMA_TIMEOUT_S)"
    return str(error) or type(error).__name__


def chroma_client(settings: Settings) -> Any:
    """A Chroma client: the server at ``chroma_url``, else the local folder; telemetry off.

    Every HTTP call to a server (the client's own start included) waits at most
    ``chroma_timeout_s`` for it: a server that accepts connections and never answers is a
    ScenewatchError, as one that is down.
    """
    import chromadb

    client_settings = chromadb.config.Settings(anonymized_telemetry=False)
    try:
        if settings.chroma_url:
            url = urlsplit(settings.chroma_url)
            if not url.hostname:
                raise ScenewatchError(f"not a Chroma server URL: {settings.chroma_url!r}")
            https = url.scheme == "https"
            _bound_chroma_http()
            bound = _HTTP_TIMEOUT_S.set(settings.chroma_timeout_s)
            try:
                return chromadb.HttpClient(
                    host=url.hostname,
                    port=url.port or (443 if https else 8000),
                    ssl=https,
                    settings=client_settings,
                )
            finally:
                _HTTP_TIMEOUT_S.reset(bound)
        settings.chroma_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=client_settings)
    except ScenewatchError:
        raise
    except Exception as exc:
        where = settings.chroma_url or settings.chroma_dir
        error = _no_answer(exc) if settings.chroma_url else None
        detail = _why(settings, error) if error is not None and _timed_out(error) else exc
        raise ScenewatchError(f"cannot open the vector index at {where}: {detail}") from exc


def _server_errors(
    method: Callable[Concatenate[VectorIndex, P], R],
) -> Callable[Concatenate[VectorIndex, P], R]:
    """A Chroma server that stopped answering (down, or silent past ``chroma_timeout_s``), as a
    ScenewatchError naming it (not an httpx traceback)."""

    @wraps(method)
    def wrapper(index: VectorIndex, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(index, *args, **kwargs)
        except Exception as exc:
            error = _no_answer(exc)
            if error is None:
                raise
            url, why = index.settings.chroma_url, _why(index.settings, error)
            raise ScenewatchError(f"the Chroma server at {url} did not answer: {why}") from exc

    return wrapper


def _one_at_a_time(
    method: Callable[Concatenate[VectorIndex, P], R],
) -> Callable[Concatenate[VectorIndex, P], R]:
    """Run ``method`` holding the index's lock (it changes the shard and client caches)."""

    @wraps(method)
    def wrapper(index: VectorIndex, *args: P.args, **kwargs: P.kwargs) -> R:
        with index._lock:
            return method(index, *args, **kwargs)

    return wrapper


class VectorIndex:
    """The observation vectors of one store: add, delete, recall, rebuild.

    ``recall`` has the signature the agent's recall tool expects.

    Threads: ``embed`` runs on several threads at once (the background indexer's workers embed
    side by side). Everything else (``add``, ``delete``, ``clear``, ``count``, ``recall``,
    ``shards``, ``close``) changes the shard and client caches, so the index runs one of them at a
    time (its own lock): one index may be shared by every thread of a process (the service's API,
    agent and MCP tools). :class:`~memory.indexer.Indexer` also holds its write lock around ``add``
    and the ``mark_indexed`` that follows.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        embeddings: Embeddings | None = None,
        shard_size: int = SHARD_SIZE,
        release_shards: bool = False,
    ) -> None:
        self.store = store
        self.settings = settings
        self.embeddings = embeddings or MemoryEmbeddings()
        self.shard_size = shard_size
        self._release_shards = release_shards
        self._client = chroma_client(settings)
        self._shards: dict[int, Chroma] = {}
        self._last_written: int | None = None
        self._newest: tuple[int, int] | None = None  # (shard, vectors) when recall last looked
        self._lock = threading.RLock()

    # -- shards ---------------------------------------------------------------------------------

    def shard_of(self, observation_id: int) -> int:
        return (observation_id - 1) // self.shard_size

    def _shard(self, shard: int) -> Chroma:
        if shard not in self._shards:
            from langchain_chroma import Chroma

            self._shards[shard] = Chroma(
                collection_name=f"{_PREFIX}{shard:05d}",
                embedding_function=self.embeddings,
                client=self._client,
                collection_configuration=_CONFIGURATION,
            )
        return self._shards[shard]

    def _collections(self) -> dict[int, Any]:
        return {
            int(c.name.removeprefix(_PREFIX)): c
            for c in self._client.list_collections()
            if c.name.startswith(_PREFIX)
        }

    @_one_at_a_time
    def shards(self) -> list[int]:
        """The shards that exist, in order."""
        return sorted(self._collections())

    def _reopen(self) -> None:
        """Close the client and open another (Chroma frees most of a graph once no client holds it)."""
        self._shards.clear()
        close = getattr(self._client, "close", None)
        if close is not None:
            close()
        self._client = chroma_client(self.settings)

    # -- writing --------------------------------------------------------------------------------

    def embed(self, observations: Sequence[Observation]) -> list[list[float]]:
        """The vectors of observations' documents (thread-safe: workers embed side by side)."""
        return self.embeddings.embed_documents([document_text(obs) for obs in observations])

    @_one_at_a_time
    def add(self, observations: Sequence[Observation], vectors: Sequence[list[float]] | None = None) -> int:
        """Upsert committed observations (ids set), embedding them unless ``vectors`` are given."""
        if any(obs.id is None for obs in observations):
            raise ValueError("only committed observations (with an id) can be indexed")
        vectors = self.embed(observations) if vectors is None else vectors
        by_shard: dict[int, list[tuple[Observation, list[float]]]] = {}
        for obs, vector in zip(observations, vectors, strict=True):
            by_shard.setdefault(self.shard_of(obs.id or 0), []).append((obs, vector))
        for shard, group in sorted(by_shard.items()):
            if self._release_shards and self._last_written not in (None, shard):
                self._reopen()
            self._last_written = shard
            collection = self._client.get_or_create_collection(  # as langchain-chroma opens it
                name=f"{_PREFIX}{shard:05d}", embedding_function=None, configuration=_CONFIGURATION
            )
            step = self._client.get_max_batch_size()
            for start in range(0, len(group), step):
                chunk = group[start : start + step]
                collection.upsert(  # the vectors are precomputed: chromadb's own collection, no langchain
                    ids=[str(obs.id) for obs, _ in chunk],
                    embeddings=[vector for _, vector in chunk],
                    metadatas=[metadata(obs) for obs, _ in chunk],
                    documents=[document_text(obs) for obs, _ in chunk],
                )
        return len(observations)

    @_server_errors
    @_one_at_a_time
    def delete(self, ids: Iterable[int]) -> None:
        """Remove vectors by observation id; shards left empty are dropped."""
        by_shard: dict[int, list[str]] = {}
        for i in ids:
            by_shard.setdefault(self.shard_of(i), []).append(str(i))
        existing = set(self.shards())
        for shard, group in by_shard.items():
            if shard not in existing:
                continue
            collection = self._shard(shard)
            collection.delete(ids=group)
            if not collection.get(limit=1, include=[])["ids"]:
                collection.delete_collection()
                del self._shards[shard]

    @_server_errors
    @_one_at_a_time
    def clear(self) -> None:
        """Drop every shard."""
        for shard in self.shards():
            self._shard(shard).delete_collection()
        self._shards.clear()

    # -- reading --------------------------------------------------------------------------------

    @_server_errors
    @_one_at_a_time
    def count(self) -> int:
        """How many vectors the index holds."""
        return sum(collection.count() for collection in self._collections().values())

    @_server_errors
    @_one_at_a_time
    def recall(
        self,
        query: str,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        k: int = 5,
        *,
        plan: Plan = "auto",
    ) -> list[Recalled]:
        """The ``k`` observations closest in meaning to ``query``, best first, within the filters.

        ``plan="where"`` leaves the filtering to Chroma's ``where`` filter (slower on large
        indexes; kept to compare against).
        """
        shards = self._current_shards()
        if not shards or k <= 0 or (since is not None and until is not None and since > until):
            return []
        vector = self.embeddings.embed_query(query)
        filtered = source is not None or since is not None or until is not None
        hits: list[tuple[int, float]] = []
        if not filtered or plan == "where":
            where = where_filter(source, since, until)
            for shard in shards:
                hits += self._search(shard, vector, k, where=where)
        else:
            clause, params = range_sql("ts", "ts", since, until, source)
            in_range = self.store.execute(
                f"SELECT (id - 1) / {int(self.shard_size)} AS shard, COUNT(*) FROM observations"
                f" WHERE {clause} GROUP BY shard",
                params,
            )
            for shard, count in in_range:
                if shard in shards:
                    hits += self._search_range(shard, vector, k, clause, params, count)
        hits.sort(key=lambda hit: hit[1])
        return self._hydrate(hits, k, source, since, until)

    def _current_shards(self) -> list[int]:
        """The shards, after reopening the client if the newest grew since this index last looked.

        A client keeps the graphs it has loaded: vectors another process (a watch) added since
        then would be missing from its searches. Only the newest shard grows.
        """
        collections = self._collections()
        if collections:
            newest = max(collections)
            count = collections[newest].count()
            if self._newest not in (None, (newest, count)):
                self._reopen()
            self._newest = (newest, count)
        return sorted(collections)

    def _search(
        self,
        shard: int,
        vector: list[float],
        k: int,
        *,
        where: dict[str, Any] | None = None,
        ids: list[int] | None = None,
    ) -> list[tuple[int, float]]:
        kwargs: dict[str, Any] = {"ids": [str(i) for i in ids]} if ids is not None else {}
        found = self._shard(shard).similarity_search_by_vector_with_relevance_scores(
            vector, k=k, filter=where, **kwargs
        )
        return [(int(doc.id), distance) for doc, distance in found if doc.id is not None]

    def _search_range(
        self, shard: int, vector: list[float], k: int, clause: str, params: list[Any], in_range: int
    ) -> list[tuple[int, float]]:
        """The best ``k`` of one shard among its ``in_range`` rows that match ``clause``."""
        low, high = shard * self.shard_size + 1, (shard + 1) * self.shard_size
        if in_range <= EXACT_MAX:
            return self._exact(shard, vector, k, self._ids(clause, params, low, high))
        total = self.store.execute("SELECT COUNT(*) FROM observations WHERE id BETWEEN ? AND ?", (low, high))
        fraction = in_range / max(total[0][0], 1)
        if fraction >= WIDE_FRACTION:
            fetch = min(OVERFETCH_MAX, math.ceil(3 * k / fraction) + k)
            found = self._search(shard, vector, fetch)
            kept = self._keep_in_range([i for i, _ in found], clause, params)
            hits = [hit for hit in found if hit[0] in kept]
            if len(hits) >= k or len(found) < fetch:
                return hits[:k]
        candidates = self._ids(f"{clause} AND indexed = 1", params, low, high)
        try:
            return self._search(shard, vector, k, ids=candidates)
        except Exception as exc:  # a vector SQLite counts as indexed is missing: compare exactly
            log.warning(
                "vector index out of step with the database (%s): run `scenewatch memory reindex`", exc
            )
            return self._exact(shard, vector, k, candidates)

    def _ids(self, clause: str, params: list[Any], low: int, high: int) -> list[int]:
        rows = self.store.execute(
            f"SELECT id FROM observations WHERE {clause} AND id BETWEEN ? AND ?", [*params, low, high]
        )
        return [row[0] for row in rows]

    def _keep_in_range(self, ids: list[int], clause: str, params: list[Any]) -> set[int]:
        if not ids:
            return set()
        rows = self.store.execute(
            f"SELECT id FROM observations WHERE {clause} AND id IN ({', '.join('?' * len(ids))})",
            [*params, *ids],
        )
        return {row[0] for row in rows}

    def _exact(self, shard: int, vector: list[float], k: int, ids: list[int]) -> list[tuple[int, float]]:
        got = self._shard(shard).get(ids=[str(i) for i in ids], include=["embeddings"])
        if not got["ids"]:
            return []
        distances = 1.0 - np.asarray(got["embeddings"], dtype=np.float32) @ np.asarray(vector, np.float32)
        best = np.argsort(distances)[:k]
        return [(int(got["ids"][i]), float(distances[i])) for i in best]

    def _hydrate(
        self,
        hits: list[tuple[int, float]],
        k: int,
        source: str | None,
        since: float | None,
        until: float | None,
    ) -> list[Recalled]:
        """Rows from SQLite (the truth) for the best hits (sorted); vectors whose row is gone are skipped."""
        distance = dict(hits)
        found: list[Recalled] = []
        for obs in self.store.get_many([i for i, _ in hits]):
            if obs.id is None or not _in_range(obs, source, since, until):
                continue
            score = 1.0 - distance[obs.id]
            found.append(Recalled(obs.id, obs.source, obs.ts, obs.video_t, obs.summary or obs.raw, score))
            if len(found) == k:
                break
        return found

    # -- upkeep ---------------------------------------------------------------------------------

    def disk_bytes(self) -> int:
        """Size of the local vector folder (0 for a Chroma server)."""
        return 0 if self.settings.chroma_url else folder_bytes(self.settings.chroma_dir)

    @_one_at_a_time
    def close(self) -> None:
        self._shards.clear()
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


def _in_range(obs: Observation, source: str | None, since: float | None, until: float | None) -> bool:
    return (
        (source is None or obs.source == source)
        and (since is None or obs.ts >= since)
        and (until is None or obs.ts <= until)
    )


def folder_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (0 if it does not exist)."""
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@contextmanager
def open_vectors(store: Store, settings: Settings, **options: Any) -> Iterator[VectorIndex]:
    """A :class:`VectorIndex` over ``store``, closed at the end."""
    index = VectorIndex(store, settings, **options)
    try:
        yield index
    finally:
        index.close()
