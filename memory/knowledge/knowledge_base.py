"""A knowledge base of device manuals, searched by meaning and by exact words at once.

A knowledge base NAME lives in ``settings.kb_dir``: ``NAME/`` is its Chroma folder (offline
MiniLM vectors, cosine distance) and ``NAME.sqlite`` beside it holds the documents, their
chunks and an FTS5 keyword index (see :mod:`memory.knowledge.chunk_store`); the SQLite file is the truth and
the vectors are derived from it. A search ranks the chunks both ways and fuses the two rankings
by reciprocal rank fusion, so an error code such as ``E-104`` is found as reliably as a
paraphrase such as "the light on the front flashes orange".
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from memory.embeddings import minilm_embeddings
from memory.knowledge.chunk_store import KeywordIndex, StoredChunk, code_terms
from memory.knowledge.documents import Chunk, DocumentError, is_supported, read_passages, split_passages

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from langchain_chroma import Chroma

log = logging.getLogger(__name__)

DEFAULT_KB = "default"
RRF_K = 60
"""The constant of reciprocal rank fusion: a chunk at rank r in a ranking scores 1 / (RRF_K + r)."""
WRITE_BATCH = 64
"""How many chunks :meth:`KnowledgeBase.add_file` and :meth:`KnowledgeBase.reindex` embed and write at a
time: memory stays that of one batch whatever the size of a manual."""
COLLECTION = "chunks"
"""The Chroma collection, in a knowledge base's folder, that holds its chunk vectors."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its provenance and scores.

    ``score`` is the fused reciprocal-rank score (for ordering), ``similarity`` the cosine
    similarity of the chunk to the query, ``codes`` the query's error codes or model numbers
    (terms with a digit) that the chunk contains verbatim.
    """

    id: str
    source: str
    section: str
    page: int | None
    text: str
    score: float
    similarity: float
    codes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Where in the source the chunk is: its heading path, else its page."""
        if self.section:
            return self.section
        return f"page {self.page}" if self.page is not None else "text"

    @property
    def citation(self) -> str:
        """How an answer cites this chunk: ``[source § section]``."""
        return f"[{self.source} § {self.label}]"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: source, section, page, score, similarity, codes, text."""
        record = asdict(self)
        del record["id"]
        record["score"] = round(self.score, 5)
        record["similarity"] = round(self.similarity, 4)
        record["codes"] = list(self.codes)
        return record


@dataclass(frozen=True)
class AddResult:
    """What adding one file did: ``added``, ``updated``, ``unchanged`` or ``skipped`` (with a reason)."""

    path: Path
    status: Literal["added", "updated", "unchanged", "skipped"]
    chunks: int = 0
    reason: str = ""


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuse rankings of ids: each id scores the sum of 1 / (k + rank) over the rankings (rank from 1)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)


def knowledge_bases(root: Path) -> list[str]:
    """The names of the knowledge bases in ``root``."""
    return sorted(path.stem for path in root.glob("*.sqlite"))


@dataclass(frozen=True)
class KnowledgeBaseSize:
    """A knowledge base's name and how many documents and chunks it holds."""

    name: str
    documents: int
    chunks: int


def knowledge_base_sizes(root: Path) -> list[KnowledgeBaseSize]:
    """Every knowledge base in ``root``, by name, with its numbers of documents and chunks."""
    sizes = []
    for name in knowledge_bases(root):
        documents = KeywordIndex(root / f"{name}.sqlite").documents()
        sizes.append(KnowledgeBaseSize(name, len(documents), sum(doc.chunks for doc in documents)))
    return sizes


class KnowledgeBase:
    """One named knowledge base: add, remove and list files, and search their chunks."""

    def __init__(
        self, root: Path, name: str = DEFAULT_KB, *, chunk_size: int = 800, chunk_overlap: int = 120
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ScenewatchError(
                f"bad knowledge base name {name!r}: use letters, digits, '.', '_' and '-' (64 at most)"
            )
        self.root = root
        self.name = name
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.index = KeywordIndex(root / f"{name}.sqlite")
        self._client: ClientAPI | None = None
        self._vectors: Chroma | None = None

    @classmethod
    def open(cls, settings: Settings, name: str = DEFAULT_KB) -> KnowledgeBase:
        """The knowledge base ``name`` in ``settings.kb_dir``, chunked as the settings say."""
        return cls(
            settings.kb_dir, name, chunk_size=settings.kb_chunk_size, chunk_overlap=settings.kb_chunk_overlap
        )

    @property
    def exists(self) -> bool:
        """Whether anything was ever added to this knowledge base."""
        return self.index.path.is_file()

    def require(self) -> KnowledgeBase:
        """This knowledge base, or a :class:`ScenewatchError` naming the ones that exist."""
        if not self.exists:
            known = ", ".join(knowledge_bases(self.root)) or "none yet"
            raise ScenewatchError(
                f"no knowledge base named {self.name!r} (known: {known}); "
                f"add manuals with: scenewatch kb add PATH --kb {self.name}"
            )
        return self

    @property
    def vectors_path(self) -> Path:
        """The Chroma folder that holds this knowledge base's chunk vectors."""
        return self.root / self.name

    @property
    def reindex_command(self) -> str:
        """The command that rebuilds this knowledge base's vectors from its SQLite file."""
        return f"scenewatch kb reindex --kb {self.name}"

    @property
    def vectors(self) -> Chroma:
        """The Chroma collection of chunk vectors, opened on first use (loads the embedding model).

        Opening logs a warning when the collection holds another number of vectors than the SQLite
        file holds chunks (the folder was deleted, or a crash came between the SQLite commit and
        the vector write); a folder Chroma cannot open raises a :class:`ScenewatchError`. Both
        name the command that rebuilds the vectors.
        """
        if self._vectors is None:
            self._vectors = self._open_vectors()
            held = self._client.get_collection(COLLECTION).count() if self._client else 0
            chunks = sum(doc.chunks for doc in self.index.documents())
            if held != chunks:
                log.warning(
                    "knowledge base %r holds %d vectors for %d chunks (a chunk without a vector is "
                    "found by its keywords only); rebuild the vectors with: %s",
                    self.name,
                    held,
                    chunks,
                    self.reindex_command,
                )
        return self._vectors

    def _open_vectors(self) -> Chroma:
        """Open the Chroma collection (created empty in a new folder), without checking it."""
        import chromadb
        from langchain_chroma import Chroma

        embeddings = minilm_embeddings()
        path = str(self.vectors_path)
        try:
            self._client = chromadb.PersistentClient(
                path=path, settings=chromadb.config.Settings(anonymized_telemetry=False)
            )
            return Chroma(
                client=self._client,
                collection_name=COLLECTION,
                embedding_function=embeddings,
                collection_configuration={"hnsw": {"space": "cosine"}},
            )
        except Exception as exc:
            self.close()
            _forget_failed_client(path)
            raise ScenewatchError(
                f"cannot open the vectors of knowledge base {self.name!r} in {path} ({exc}); "
                f"rebuild them with: {self.reindex_command}"
            ) from exc

    def close(self) -> None:
        """Let go of the Chroma folder (the next use opens it again)."""
        if self._client is not None:
            self._client.close()
        self._client = None
        self._vectors = None

    def add(
        self,
        paths: Iterable[Path],
        *,
        replace: bool = False,
        progress: Callable[[Path, int, int], None] | None = None,
    ) -> list[AddResult]:
        """Add files and folders (searched recursively for .md, .txt and .pdf files), one result per file.

        A file is skipped with a reason, and the others still added, when it cannot be read, when
        another path among ``paths`` has its name (checked before anything is written), or when
        the knowledge base holds its name from another path and ``replace`` is not set.
        ``progress(path, chunks written, chunks)`` follows each file as :meth:`add_file` writes it.
        """
        files = _expand(paths)
        twins = _same_names(files)
        return [
            AddResult(path, "skipped", reason=twins[path])
            if path in twins
            else self._add_or_skip(path, replace, progress)
            for path in files
        ]

    def _add_or_skip(
        self, path: Path, replace: bool, progress: Callable[[Path, int, int], None] | None
    ) -> AddResult:
        """:meth:`add_file`, or a skipped result that says why the file cannot go in."""
        try:
            return self.add_file(
                path,
                replace=replace,
                progress=None if progress is None else lambda done, total: progress(path, done, total),
            )
        except DocumentError as exc:
            log.debug("skipped %s", exc)
            return AddResult(path, "skipped", reason=str(exc))

    def add_file(
        self, path: Path, *, replace: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> AddResult:
        """Add one file, or replace its chunks if its content changed (a no-op when it did not).

        Files are known by name. A file whose name the knowledge base holds from another path
        raises a :class:`DocumentError`, unless ``replace``, where it takes that file's place.

        The chunks are embedded and written :data:`WRITE_BATCH` at a time, ``progress(written,
        chunks)`` after each batch; the SQLite file (the truth) commits when all are written, and
        the old chunks' vectors go last. A failure on the way (Ctrl-C included) removes the vectors
        already written, so the knowledge base stays as it was.
        """
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DocumentError(f"cannot read {path}: {exc.strerror or exc}") from exc
        source, resolved = path.name, path.resolve()
        sha256 = hashlib.sha256(data).hexdigest()
        stored = self.index.document(source)
        if stored is not None and stored.path != str(resolved):
            if not replace:
                raise DocumentError(
                    f"{source} is already in knowledge base {self.name!r}, added from {stored.path}; "
                    f"to replace it with {resolved} pass --replace, or rename one of them"
                )
            log.info("%s replaces the file of the same name added from %s", resolved, stored.path)
        elif stored is not None and stored.sha256 == sha256:
            return AddResult(path, "unchanged", chunks=stored.chunks)
        chunks = split_passages(read_passages(path, data), self.chunk_size, self.chunk_overlap)
        del data
        ids = _chunk_ids(source, sha256, len(chunks))
        vectors = self.vectors  # opened before the SQLite write starts
        with self.index.replacing(source, resolved, sha256, list(zip(ids, chunks, strict=True))) as old_ids:
            if progress is not None:
                progress(0, len(chunks))
            end = 0  # the chunks up to here are written, or being written
            try:
                for start in range(0, len(chunks), WRITE_BATCH):
                    end = min(start + WRITE_BATCH, len(chunks))
                    _write_vectors(vectors, ids[start:end], [source] * (end - start), chunks[start:end])
                    if progress is not None:
                        progress(end, len(chunks))
            except BaseException:
                kept = set(old_ids)  # the same content from another path has the same ids
                _forget_vectors(vectors, [cid for cid in ids[:end] if cid not in kept])
                raise
            stale = sorted(set(old_ids).difference(ids))
            if stale:
                vectors.delete(ids=stale)
        return AddResult(path, "added" if stored is None else "updated", chunks=len(chunks))

    def remove(self, source: str) -> int:
        """Remove a file (by name, or a path whose name is stored) and return how many chunks went."""
        name = Path(source).name
        if self.index.document(name) is None:
            known = ", ".join(doc.source for doc in self.index.documents()) or "it is empty"
            raise ScenewatchError(f"{source!r} is not in knowledge base {self.name!r} ({known})")
        vectors = self.vectors
        with self.index.removing(name) as ids:
            if ids:
                vectors.delete(ids=ids)
        return len(ids)

    def reindex(
        self, progress: Callable[[int, int], None] | None = None, batch_size: int = WRITE_BATCH
    ) -> int:
        """Rebuild the vector of every chunk from the SQLite file (the truth); return how many were written.

        The collection is dropped and created again (a folder Chroma cannot open is deleted
        first), then the chunks are embedded and written ``batch_size`` at a time, with the ids
        and metadata :meth:`add` gives them; ``progress(done, total)`` after each batch. Until it
        ends, search finds the chunks without a vector by their keywords only.
        """
        self.require()
        if self._vectors is None:
            try:
                self._vectors = self._open_vectors()
            except ScenewatchError as exc:
                log.warning(
                    "deleting %s, which Chroma cannot open (%s), to build it again",
                    self.vectors_path,
                    exc.__cause__ or exc,
                )
                shutil.rmtree(self.vectors_path, ignore_errors=True)
                self._vectors = self._open_vectors()
        self._vectors.reset_collection()
        documents = self.index.documents()
        ids = [cid for doc in documents for cid in _chunk_ids(doc.source, doc.sha256, doc.chunks)]
        done = 0
        for start in range(0, len(ids), batch_size):
            found = self.index.chunks(ids[start : start + batch_size])
            chunks = list(found.values())
            _write_vectors(self._vectors, list(found), [chunk.source for chunk in chunks], chunks)
            done += len(found)
            if progress is not None:
                progress(done, len(ids))
        if done != len(ids):
            log.warning(
                "knowledge base %r: %d of %d chunks were not found by id; add their files again",
                self.name,
                len(ids) - done,
                len(ids),
            )
        return done

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` chunks that best match the query, best first.

        Three rankings are fused: by meaning (vectors), by keywords (FTS5 bm25), and the keyword
        matches whose heading path names the query's codes (the section about ``E-104``, or every
        section of the ``HR-450`` manual), those naming the most codes first; so an exact error
        code or model number outweighs a paraphrase that merely sounds alike.
        """
        if not query.strip() or not self.exists:
            return []
        pool = max(4 * k, 20)
        query_vector = np.asarray(minilm_embeddings().embed_query(query))
        try:
            vectors: Chroma | None = self.vectors
        except ScenewatchError as exc:
            log.warning("%s; until then search uses keywords only", exc)
            vectors = None
        by_meaning = (
            vectors.similarity_search_by_vector_with_relevance_scores(query_vector.tolist(), k=pool)
            if vectors is not None
            else []
        )
        similarity = {doc.id: 1.0 - distance for doc, distance in by_meaning}
        by_keywords = self.index.search(query, pool)
        stored = self.index.chunks(list({doc.id: None for doc, _ in by_meaning} | dict.fromkeys(by_keywords)))
        wanted = {term for term in code_terms(query) if any(ch.isdigit() for ch in term)}
        codes = {
            cid: tuple(sorted(wanted.intersection(code_terms(f"{chunk.section} {chunk.text}"))))
            for cid, chunk in stored.items()
        }
        named = {cid: len(wanted.intersection(code_terms(stored[cid].section))) for cid in by_keywords}
        by_heading = sorted((cid for cid in by_keywords if named[cid]), key=lambda cid: -named[cid])
        fused = reciprocal_rank_fusion([[doc.id for doc, _ in by_meaning], by_keywords, by_heading])
        top = [(cid, score) for cid, score in fused if cid in stored][:k]
        unscored = [cid for cid, _ in top if cid not in similarity]
        similarity.update(_similarities(vectors, [stored[cid] for cid in unscored], query_vector))
        return [
            Hit(
                id=cid,
                source=stored[cid].source,
                section=stored[cid].section,
                page=stored[cid].page,
                text=stored[cid].text,
                score=score,
                similarity=float(similarity[cid]),
                codes=codes[cid],
            )
            for cid, score in top
        ]


def _vector_text(chunk: Chunk | StoredChunk) -> str:
    """What a chunk's vector embeds: its heading path, then its text."""
    return f"{chunk.section}\n{chunk.text}" if chunk.section else chunk.text


def _chunk_ids(source: str, sha256: str, count: int) -> list[str]:
    """The ids of a file's chunks: its name, the start of its content hash, the chunk's ordinal."""
    return [f"{source}:{sha256[:12]}:{i}" for i in range(count)]


def _write_vectors(
    vectors: Chroma, ids: Sequence[str], sources: Sequence[str], chunks: Sequence[Chunk | StoredChunk]
) -> None:
    """Embed chunks and store their vectors under their ids, each with its source file as metadata."""
    vectors.add_texts(
        [_vector_text(chunk) for chunk in chunks],
        metadatas=[{"source": source} for source in sources],
        ids=list(ids),
    )


def _forget_vectors(vectors: Chroma, ids: Sequence[str]) -> None:
    """Remove the vectors an interrupted add wrote (its SQLite rows were never committed)."""
    if not ids:
        return
    try:
        vectors.delete(ids=list(ids))
    except Exception as exc:  # the add's own error is the one to report
        log.warning("could not remove %d vectors of an interrupted add (%s)", len(ids), exc)


def _similarities(
    vectors: Chroma | None, chunks: Sequence[StoredChunk], query_vector: np.ndarray
) -> dict[str, float]:
    """Cosine similarities (the vectors are normalised) of chunks to the query vector: from their
    stored vectors, else (no vector stored, or no readable collection) from their text embedded now."""
    found: dict[str, Any] = {}
    if vectors is not None and chunks:
        got = vectors.get(ids=[chunk.id for chunk in chunks], include=["embeddings"])
        found = dict(zip(got["ids"], got["embeddings"], strict=True))
    missing = [chunk for chunk in chunks if chunk.id not in found]
    if missing:
        embedded = minilm_embeddings().embed_documents([_vector_text(chunk) for chunk in missing])
        found.update(zip([chunk.id for chunk in missing], embedded, strict=True))
    return {chunk.id: float(np.dot(np.asarray(found[chunk.id]), query_vector)) for chunk in chunks}


def _forget_failed_client(path: str) -> None:
    """Let ``path`` be opened again after its Chroma client failed to start.

    chromadb caches a client's system per path before starting it and keeps it when starting
    fails, so every later client of that path would get the broken one; it is dropped here
    unless a live client holds it.
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    if path not in SharedSystemClient._identifier_to_refcount:
        SharedSystemClient._identifier_to_system.pop(path, None)


def _same_names(files: Sequence[Path]) -> dict[Path, str]:
    """Why each file whose name another path among ``files`` has is refused (a name holds one file)."""
    paths: dict[str, dict[Path, None]] = {}
    for file in files:
        paths.setdefault(file.name, {})[file.resolve()] = None
    return {
        file: _given_twice(file.name, list(paths[file.name])) for file in files if len(paths[file.name]) > 1
    }


def _given_twice(name: str, paths: Sequence[Path]) -> str:
    """The reason a name given from several paths in one call is refused."""
    return (
        f"{name} is given from {len(paths)} paths ({', '.join(map(str, paths))}), but a knowledge base "
        "holds one file of a name: add one of them, or rename the others"
    )


def _expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and the supported files inside folders; a missing path stays (it is reported)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_supported(p)))
        else:
            files.append(path)
    return files
