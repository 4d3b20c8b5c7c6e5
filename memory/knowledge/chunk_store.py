"""A knowledge base's SQLite file: its documents, their chunks, and FTS5 keyword search over them.

This file is the knowledge base's source of truth (the Chroma vectors are derived from it).
The FTS5 table tokenizes words with ``porter unicode61``, which splits ``E-104`` into ``e`` and
``104``; so that error codes, model numbers and LED names stay findable as one term, every chunk
also carries its code-like tokens with separators removed (``E-104`` → ``e104``, ``HR-450`` →
``hr450``, ``2.4G`` → ``24g``, ``Wi-Fi`` → ``wifi``): those of the heading path in the ``section``
column (weighted most, so the section named after a code ranks first), those of the text in the
``codes`` column. Queries are normalised the same way, so ``E104``, ``e-104`` and ``E-104`` match.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from memory.folders import make_folder
from memory.knowledge.documents import Chunk
from memory.store import database_error, is_file_problem

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    source TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL REFERENCES documents(source) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    section TEXT NOT NULL,
    page INTEGER,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_source ON chunks(source);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    id UNINDEXED, section, text, codes, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""

# Weights of the section, text and codes columns in bm25 (the id column is not indexed).
_BM25 = "bm25(chunks_fts, 0.0, 5.0, 1.0, 2.0)"

_CODE = re.compile(r"[A-Za-z0-9]+(?:[-_./][A-Za-z0-9]+)+|[A-Za-z]+\d[A-Za-z0-9]*|\d+[A-Za-z][A-Za-z0-9]*")
_WORD = re.compile(r"\w+")
_COMMON_WORDS = """a an and are as at be but by can could do does doing for from has have how i if in into is
it its me my no not of on or our should so that the their then there these this to was we were what when where
which while who why will with would you your please help"""
_STOPWORDS = frozenset(_COMMON_WORDS.split())


def code_terms(text: str) -> list[str]:
    """Code-like tokens (error codes, model numbers, LED names) with separators removed, lowercased."""
    return list(dict.fromkeys(re.sub(r"[-_./]", "", token).lower() for token in _CODE.findall(text)))


def query_terms(text: str) -> list[str]:
    """The terms a keyword query searches for: content words plus normalised codes."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]
    return list(dict.fromkeys([*words, *code_terms(text)]))


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as the knowledge base keeps it."""

    id: str
    source: str
    section: str
    page: int | None
    text: str


@dataclass(frozen=True)
class Document:
    """A file in the knowledge base."""

    source: str
    path: str
    sha256: str
    added_at: float
    chunks: int


class KeywordIndex:
    """The documents, chunks and FTS5 index of one knowledge base, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._created = False

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection per operation (safe across threads); commits on success, rolls back on error.

        A folder or file that cannot be written, a full disk or a damaged file is a ScenewatchError
        that says so (naming the path).
        """
        make_folder(self.path.parent, "the knowledge base folder")
        try:
            with closing(sqlite3.connect(self.path)) as db:
                db.execute("PRAGMA foreign_keys = ON")
                if not self._created:
                    db.executescript(_SCHEMA)
                    self._created = True
                with db:
                    yield db
        except sqlite3.Error as exc:
            if not is_file_problem(exc):
                raise
            raise database_error(self.path, exc) from exc

    def document(self, source: str) -> Document | None:
        """The stored document named ``source``, if there is one."""
        found = self.documents(source)
        return found[0] if found else None

    def documents(self, source: str | None = None) -> list[Document]:
        """Every document (or the one named ``source``), by name, with its number of chunks."""
        where, params = ("WHERE d.source = ?", (source,)) if source is not None else ("", ())
        with self._db() as db:
            rows = db.execute(
                "SELECT d.source, d.path, d.sha256, d.added_at, COUNT(c.id) FROM documents d "
                f"LEFT JOIN chunks c ON c.source = d.source {where} GROUP BY d.source ORDER BY d.source",
                params,
            ).fetchall()
        return [Document(*row) for row in rows]

    @contextmanager
    def replacing(
        self, source: str, path: Path, sha256: str, chunks: Sequence[tuple[str, Chunk]]
    ) -> Iterator[list[str]]:
        """Replace a document's chunks; yields the ids of the old chunks, commits when the block ends.

        The caller updates the vector store inside the block, so a failure there leaves this file
        (the truth) as it was.
        """
        with self._db() as db:
            old_ids = self._delete(db, source)
            db.execute(
                "INSERT INTO documents(source, path, sha256, added_at) VALUES (?, ?, ?, ?)",
                (source, str(path), sha256, time.time()),
            )
            db.executemany(
                "INSERT INTO chunks(id, source, ordinal, section, page, text) VALUES (?, ?, ?, ?, ?, ?)",
                [(cid, source, i, c.section, c.page, c.text) for i, (cid, c) in enumerate(chunks)],
            )
            db.executemany(
                "INSERT INTO chunks_fts(id, section, text, codes) VALUES (?, ?, ?, ?)",
                [
                    (cid, " ".join([c.section, *code_terms(c.section)]), c.text, " ".join(code_terms(c.text)))
                    for cid, c in chunks
                ],
            )
            yield old_ids

    @contextmanager
    def removing(self, source: str) -> Iterator[list[str]]:
        """Remove a document; yields the ids of its chunks, commits when the block ends."""
        with self._db() as db:
            yield self._delete(db, source)

    @staticmethod
    def _delete(db: sqlite3.Connection, source: str) -> list[str]:
        ids = [row[0] for row in db.execute("SELECT id FROM chunks WHERE source = ?", (source,))]
        db.executemany("DELETE FROM chunks_fts WHERE id = ?", [(cid,) for cid in ids])
        db.execute("DELETE FROM documents WHERE source = ?", (source,))
        return ids

    def search(self, query: str, limit: int) -> list[str]:
        """Chunk ids matching any query term, best bm25 first."""
        terms = query_terms(query)
        if not terms:
            return []
        match = " OR ".join('"' + term.replace('"', "") + '"' for term in terms)
        with self._db() as db:
            rows = db.execute(
                f"SELECT id FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY {_BM25} LIMIT ?",
                (match, limit),
            ).fetchall()
        return [row[0] for row in rows]

    def chunks(self, ids: Sequence[str]) -> dict[str, StoredChunk]:
        """The stored chunks with these ids (unknown ids are left out)."""
        with self._db() as db:
            marks = ",".join("?" * len(ids))
            rows = db.execute(
                f"SELECT id, source, section, page, text FROM chunks WHERE id IN ({marks})", list(ids)
            ).fetchall()
        return {row[0]: StoredChunk(*row) for row in rows}
