"""Rebuilding a knowledge base's vectors from its SQLite file, and searching while they are lost."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from memory.knowledge.knowledge_base import KnowledgeBase

ROOT = Path(__file__).resolve().parents[1]
ROUTER = ROOT / "demos" / "troubleshoot" / "manuals" / "router_nordlink_hr450.md"
THERMOSTAT = Path(__file__).parent / "data" / "unseen_manuals" / "thermostat_hestia_t3.md"
NAME = "manuals"
QUERIES = [
    "What does error E-104 mean?",
    "The internet light on my router is blinking amber",
    "The thermostat shows H3",
    "My boiler won't start",
]
HINT = f"scenewatch kb reindex --kb {NAME}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose knowledge base ``manuals`` holds two small manuals (embedded once per module)."""
    root = tmp_path_factory.mktemp("kb")
    kb = KnowledgeBase(root, NAME)
    assert [r.status for r in kb.add([ROUTER, THERMOSTAT])] == ["added", "added"]
    kb.close()
    return root


@pytest.fixture
def kb(built: Path, tmp_path: Path) -> Iterator[KnowledgeBase]:
    """A copy of the built knowledge base that a test may damage."""
    base = KnowledgeBase(shutil.copytree(built, tmp_path / "kb"), NAME)
    yield base
    base.close()


def results(kb: KnowledgeBase) -> dict[str, list[str]]:
    return {query: [hit.id for hit in kb.search(query, k=5)] for query in QUERIES}


def stored_vectors(kb: KnowledgeBase) -> dict[str, tuple[str, dict]]:
    got = kb.vectors.get(include=["documents", "metadatas"])
    return {
        cid: (text, meta)
        for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
    }


def reopened(kb: KnowledgeBase) -> KnowledgeBase:
    """The knowledge base opened afresh, as the next command would."""
    kb.close()
    return KnowledgeBase(kb.root, kb.name)


def warnings(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_reindex_after_losing_the_vectors_gives_the_same_results(
    kb: KnowledgeBase, caplog: pytest.LogCaptureFixture
) -> None:
    chunks = sum(doc.chunks for doc in kb.index.documents())
    before, vectors_before = results(kb), stored_vectors(kb)
    assert len(vectors_before) == chunks and all(before.values())
    kb.close()
    shutil.rmtree(kb.vectors_path)

    kb = KnowledgeBase(kb.root, NAME)
    keyword_only = kb.search("E-104", k=3)
    assert keyword_only and "E-104" in keyword_only[0].section
    assert f"holds 0 vectors for {chunks} chunks" in warnings(caplog) and HINT in warnings(caplog)

    steps: list[tuple[int, int]] = []
    assert kb.reindex(progress=lambda done, total: steps.append((done, total)), batch_size=16) == chunks
    assert steps == [(min(n, chunks), chunks) for n in range(16, chunks + 16, 16)]
    assert stored_vectors(kb) == vectors_before
    assert results(kb) == before

    caplog.clear()
    assert results(reopened(kb)) == before
    assert not warnings(caplog)


def test_chunks_without_a_vector_are_still_found_with_their_similarity(
    kb: KnowledgeBase, caplog: pytest.LogCaptureFixture
) -> None:
    top = kb.search("What does error E-104 mean?", k=3)
    kb.vectors.delete(ids=[hit.id for hit in top])  # as if a crash came before the vector write
    kb = reopened(kb)
    again = kb.search("What does error E-104 mean?", k=3)
    assert HINT in warnings(caplog)
    assert again[0].id == top[0].id and "E-104" in again[0].section
    lost = {hit.id: hit.similarity for hit in top}
    for hit in again:
        if hit.id in lost:  # scored from its text, embedded now, as its stored vector scored it
            assert hit.similarity == pytest.approx(lost[hit.id], abs=1e-4)
    kb.reindex()
    assert [hit.id for hit in kb.search("What does error E-104 mean?", k=3)] == [hit.id for hit in top]


def test_damaged_vectors_give_keyword_search_a_clear_error_and_a_rebuild(
    kb: KnowledgeBase, caplog: pytest.LogCaptureFixture
) -> None:
    before = results(kb)
    kb.close()
    (kb.vectors_path / "chroma.sqlite3").write_bytes(b"not a database" * 100)

    kb = KnowledgeBase(kb.root, NAME)
    hits = kb.search("E-104", k=3)
    assert hits and "E-104" in hits[0].section
    assert "cannot open the vectors of knowledge base 'manuals'" in warnings(caplog)
    assert "search uses keywords only" in warnings(caplog) and HINT in warnings(caplog)
    with pytest.raises(ScenewatchError, match=f"rebuild them with: {HINT}"):
        kb.remove(ROUTER.name)
    assert [doc.source for doc in kb.index.documents()] == [ROUTER.name, THERMOSTAT.name]

    assert kb.reindex() == sum(doc.chunks for doc in kb.index.documents())
    assert results(kb) == before


def test_cli_reindex(built: Path, scratch_home: Path) -> None:
    kb_dir = Settings(home=scratch_home).kb_dir
    shutil.copytree(built, kb_dir)
    shutil.rmtree(kb_dir / NAME)
    runner = CliRunner()
    done = runner.invoke(app, ["kb", "reindex", "--kb", NAME])
    assert done.exit_code == 0, done.output
    chunks = sum(doc.chunks for doc in KnowledgeBase(kb_dir, NAME).index.documents())
    assert f"reindexed {chunks} chunks of 2 documents in " in done.output

    KnowledgeBase(kb_dir, "empty").index.documents()  # a knowledge base with no documents
    empty = runner.invoke(app, ["kb", "reindex", "--kb", "empty"])
    assert empty.exit_code == 1
    assert "knowledge base 'empty' has no documents" in str(empty.exception)
    assert "scenewatch kb add PATH --kb empty" in str(empty.exception)
    missing = runner.invoke(app, ["kb", "reindex", "--kb", "nope"])
    assert missing.exit_code == 1 and "no knowledge base named 'nope'" in str(missing.exception)
