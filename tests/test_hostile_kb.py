"""``kb add`` on a hostile home and with a large manual (issue 12, hostile probe): a home that is a file
or cannot be written is a one-line error; a large manual is embedded and written in batches, with
progress, and an add stopped half-way leaves the knowledge base as it was.

Tests run as root here (root ignores file permissions): the unwritable home is a folder under
``/sys``, where nothing can be created, even by root (or a read-only folder for another user).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import unwritable_folder
from typer.testing import CliRunner

from agent.bench.knowledge import manual_text
from agent.cli.app import app
from agent.core.errors import ScenewatchError
from memory.knowledge import knowledge_base as kb_module
from memory.knowledge.knowledge_base import COLLECTION, KnowledgeBase

runner = CliRunner()


@pytest.fixture
def manual(tmp_path: Path) -> Path:
    path = tmp_path / "manual.md"
    path.write_text("# Kettle K1\n## Errors\n### K-11 Dry boil\nThe kettle was switched on while empty.\n")
    return path


def test_kb_add_into_a_home_that_is_a_file(tmp_path: Path, manual: Path) -> None:
    home = tmp_path / "home.txt"
    home.write_text("a file")
    for args in (["kb", "add", str(manual)], ["kb", "list"], ["kb", "search", "kettle"]):
        result = runner.invoke(app, ["--home", str(home), *args])
        assert isinstance(result.exception, ScenewatchError), result.output
        assert str(result.exception).startswith(f"the scenewatch home {home} is a file, not a folder")
    assert home.read_text() == "a file"


def test_kb_add_into_a_home_that_cannot_be_written(tmp_path: Path, manual: Path) -> None:
    home = unwritable_folder(tmp_path)
    result = runner.invoke(app, ["--home", str(home), "kb", "add", str(manual)])
    assert isinstance(result.exception, ScenewatchError), result.output
    message = str(result.exception)
    assert message.startswith(f"cannot create the knowledge base folder {home / 'kb'}: ")
    assert message.endswith(("Permission denied", "Operation not permitted", "Read-only file system"))


BATCH = 8  # WRITE_BATCH for these tests: several batches from a short manual


@pytest.fixture
def long_manual(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A text manual of about 40 short chunks (chunk_size 100 below), written 8 at a time."""
    monkeypatch.setattr(kb_module, "WRITE_BATCH", BATCH)
    path = tmp_path / "long.txt"
    path.write_text(manual_text(3_500), encoding="utf-8")
    return path


def _small_chunks(root: Path) -> KnowledgeBase:
    return KnowledgeBase(root, "long", chunk_size=100, chunk_overlap=0)


def _vectors_held(base: KnowledgeBase) -> int:
    base.vectors  # noqa: B018 - opens the collection
    assert base._client is not None
    return base._client.get_collection(COLLECTION).count()


def test_a_long_manual_is_written_in_batches_with_progress(
    long_manual: Path, scratch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    write = kb_module._write_vectors
    monkeypatch.setattr(
        kb_module, "_write_vectors", lambda v, i, s, c: (batches.append(len(c)), write(v, i, s, c))
    )
    base = _small_chunks(scratch_home / "kb")
    seen: list[tuple[Path, int, int]] = []
    (result,) = base.add([long_manual], progress=lambda path, done, total: seen.append((path, done, total)))
    chunks = result.chunks
    assert result.status == "added" and chunks > 3 * BATCH
    assert max(batches) == BATCH and sum(batches) == chunks  # never all at once
    assert seen[0] == (long_manual, 0, chunks) and seen[-1] == (long_manual, chunks, chunks)
    assert [done for _, done, _ in seen] == sorted({done for _, done, _ in seen})
    assert len(seen) == 1 + -(-chunks // BATCH)
    assert _vectors_held(base) == chunks
    base.close()


def test_an_add_stopped_half_way_leaves_the_knowledge_base_as_it_was(
    long_manual: Path, manual: Path, scratch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = _small_chunks(scratch_home / "kb")
    (kept,) = base.add([manual])
    write, calls = kb_module._write_vectors, [0]

    def interrupted(*args: object) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(kb_module, "_write_vectors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        base.add([long_manual])
    assert [doc.source for doc in base.index.documents()] == ["manual.md"]
    assert _vectors_held(base) == kept.chunks  # the two batches written were taken back

    monkeypatch.setattr(kb_module, "_write_vectors", write)
    (again,) = base.add([long_manual])
    assert again.status == "added" and _vectors_held(base) == kept.chunks + again.chunks
    base.close()


def test_replacing_a_file_with_the_same_content_keeps_its_vectors(manual: Path, scratch_home: Path) -> None:
    base = KnowledgeBase(scratch_home / "kb", "same")
    (first,) = base.add([manual])
    twin = manual.parent / "elsewhere" / manual.name
    twin.parent.mkdir()
    twin.write_bytes(manual.read_bytes())
    (second,) = base.add([twin], replace=True)
    assert second.status == "updated" and second.chunks == first.chunks
    assert _vectors_held(base) == first.chunks  # the same ids: written, and not deleted as old ones
    assert base.search("kettle dry boil", k=1)[0].source == manual.name
    base.close()


def test_bench_kb_reports_its_measures() -> None:
    result = runner.invoke(app, ["bench", "kb", "--size-mb", "0.01", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["command"] == "scenewatch bench kb --size-mb 0.01 --json"
    assert report["chunks"] > 1 and report["chunks_per_s"] > 0 and report["write_batch"] == 64
    assert report["peak_rss_mib"] >= report["rss_before_mib"] > 0
