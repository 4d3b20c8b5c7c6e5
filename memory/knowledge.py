"""A knowledge base of device manuals, searched by meaning and by exact words at once.

A knowledge base NAME lives in ``settings.kb_dir``: ``NAME/`` is its Chroma folder (offline
MiniLM vectors, cosine distance) and ``NAME.sqlite`` beside it holds the documents, their
chunks and an FTS5 keyword index (see :mod:`memory.keywords`); the SQLite file is the truth and
the vectors are derived from it. A search ranks the chunks both ways and fuses the two rankings
by reciprocal rank fusion, so an error code such as ``E-104`` is found as reliably as a
paraphrase such as "the light on the front flashes orange".
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from agent.config import Settings
from agent.errors import ScenewatchError
from memory.documents import DocumentError, is_supported, read_passages, split_passages
from memory.embeddings import minilm_embeddings
from memory.keywords import KeywordIndex, code_terms

if TYPE_CHECKING:
    from langchain_chroma import Chroma

log = logging.getLogger(__name__)

DEFAULT_KB = "default"
RRF_K = 60
"""The constant of reciprocal rank fusion: a chunk at rank r in a ranking scores 1 / (RRF_K + r)."""

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
    def vectors(self) -> Chroma:
        """The Chroma collection of chunk vectors, opened on first use (loads the embedding model)."""
        if self._vectors is None:
            import chromadb
            from langchain_chroma import Chroma

            self._vectors = Chroma(
                collection_name="chunks",
                embedding_function=minilm_embeddings(),
                persist_directory=str(self.root / self.name),
                client_settings=chromadb.config.Settings(anonymized_telemetry=False),
                collection_configuration={"hnsw": {"space": "cosine"}},
            )
        return self._vectors

    def add(self, paths: Iterable[Path]) -> list[AddResult]:
        """Add files and folders (searched recursively for .md, .txt and .pdf files), one result per file.

        A file that cannot be read is skipped with a reason; the others are still added.
        """
        results = []
        for path in _expand(paths):
            try:
                results.append(self.add_file(path))
            except DocumentError as exc:
                log.debug("skipped %s", exc)
                results.append(AddResult(path, "skipped", reason=str(exc)))
        return results

    def add_file(self, path: Path) -> AddResult:
        """Add one file, or replace its chunks if its content changed (a no-op when it did not).

        Files are known by name: adding ``manual.pdf`` again, from anywhere, replaces it.
        """
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DocumentError(f"cannot read {path}: {exc.strerror or exc}") from exc
        source = path.name
        sha256 = hashlib.sha256(data).hexdigest()
        stored = self.index.document(source)
        if stored is not None and stored.sha256 == sha256:
            return AddResult(path, "unchanged", chunks=stored.chunks)
        chunks = split_passages(read_passages(path, data), self.chunk_size, self.chunk_overlap)
        ids = [f"{source}:{sha256[:12]}:{i}" for i in range(len(chunks))]
        with self.index.replacing(
            source, path.resolve(), sha256, list(zip(ids, chunks, strict=True))
        ) as old_ids:
            if old_ids:
                self.vectors.delete(ids=old_ids)
            self.vectors.add_texts(
                [f"{c.section}\n{c.text}" if c.section else c.text for c in chunks],
                metadatas=[{"source": source} for _ in chunks],
                ids=ids,
            )
        if stored is not None and stored.path != str(path.resolve()):
            log.info("%s replaces the file of the same name added from %s", path, stored.path)
        return AddResult(path, "added" if stored is None else "updated", chunks=len(chunks))

    def remove(self, source: str) -> int:
        """Remove a file (by name, or a path whose name is stored) and return how many chunks went."""
        name = Path(source).name
        if self.index.document(name) is None:
            known = ", ".join(doc.source for doc in self.index.documents()) or "it is empty"
            raise ScenewatchError(f"{source!r} is not in knowledge base {self.name!r} ({known})")
        with self.index.removing(name) as ids:
            if ids:
                self.vectors.delete(ids=ids)
        return len(ids)

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
        query_vector = np.asarray(self.vectors.embeddings.embed_query(query))
        by_meaning = self.vectors.similarity_search_by_vector_with_relevance_scores(
            query_vector.tolist(), k=pool
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
        similarity.update(self._similarities([cid for cid, _ in top if cid not in similarity], query_vector))
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

    def _similarities(self, ids: list[str], query_vector: np.ndarray) -> dict[str, float]:
        """Cosine similarities of stored chunk vectors (normalised) to the query vector."""
        if not ids:
            return {}
        got = self.vectors.get(ids=ids, include=["embeddings"])
        return {
            cid: float(np.dot(np.asarray(vector), query_vector))
            for cid, vector in zip(got["ids"], got["embeddings"], strict=True)
        }


def _expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and the supported files inside folders; a missing path stays (it is reported)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_supported(p)))
        else:
            files.append(path)
    return files
