"""Same-named files in a knowledge base (refused unless --replace), listing knowledge bases, empty search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.config import Settings
from memory.knowledge.knowledge_base import KnowledgeBase

KETTLE = "# Kettle K1\n## Errors\n### K-11 Dry boil\nThe zebra kettle was switched on while empty.\n"
FAN = "# Fan F2\n## Errors\n### F-22 Blade blocked\nThe walrus fan blade is blocked by a cable.\n"
OTHER = "# Lamp L3\n## Lights\n### Blinking\nThe otter lamp blinks when the bulb is loose.\n"


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two vendor folders that each hold a different ``manual.md``; the second also holds ``lamp.md``."""
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    d1.mkdir()
    d2.mkdir()
    (d1 / "manual.md").write_text(KETTLE)
    (d2 / "manual.md").write_text(FAN)
    (d2 / "lamp.md").write_text(OTHER)
    return d1, d2


def kb(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["kb", *map(str, args)])


def stored(name: str) -> dict[str, str]:
    """The files of a knowledge base in the scratch home, by name, with the paths they were added from."""
    listed = kb("list", "--kb", name, "--json")
    assert listed.exit_code == 0, listed.output
    return {doc["source"]: doc["path"] for doc in json.loads(listed.output)}


def top_text(query: str, name: str) -> str:
    found = kb("search", query, "--kb", name, "-k", "1", "--json")
    assert found.exit_code == 0, found.output
    return json.loads(found.output)[0]["text"]


def test_same_name_from_another_folder_is_refused_and_the_first_kept(folders: tuple[Path, Path]) -> None:
    d1, d2 = folders
    assert kb("add", d1 / "manual.md", "--kb", "dup").exit_code == 0
    refused = kb("add", d2 / "manual.md", d2 / "lamp.md", "--kb", "dup")
    assert refused.exit_code == 1
    assert str(refused.exception) == "1 of 2 files skipped"
    message = (
        f"manual.md is already in knowledge base 'dup', added from {(d1 / 'manual.md').resolve()}; "
        f"to replace it with {(d2 / 'manual.md').resolve()} pass --replace, or rename one of them"
    )
    assert message in refused.output
    assert "added     lamp.md" in refused.output
    assert stored("dup") == {
        "manual.md": str((d1 / "manual.md").resolve()),
        "lamp.md": str((d2 / "lamp.md").resolve()),
    }
    assert "zebra kettle" in top_text("K-11 dry boil", "dup")
    assert "walrus" not in top_text("fan blade blocked F-22", "dup")


def test_replace_lets_a_file_of_another_folder_take_the_name(
    folders: tuple[Path, Path], scratch_home: Path
) -> None:
    d1, d2 = folders
    assert kb("add", d1 / "manual.md", "--kb", "dup").exit_code == 0
    replaced = kb("add", d2 / "manual.md", "--kb", "dup", "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert "updated   manual.md (1 chunks)" in replaced.output
    assert stored("dup") == {"manual.md": str((d2 / "manual.md").resolve())}
    assert "walrus fan" in top_text("F-22 blade blocked", "dup")
    base = KnowledgeBase(Settings(home=scratch_home).kb_dir, "dup")
    assert all("zebra" not in hit.text for hit in base.search("zebra kettle K-11", k=5))
    assert len(base.vectors.get()["ids"]) == 1
    base.close()
    again = kb("add", d2 / "manual.md", "--kb", "dup")  # now the stored path: no --replace needed
    assert again.exit_code == 0 and "unchanged manual.md" in again.output


def test_readding_the_same_path_is_unchanged_or_updated(folders: tuple[Path, Path], tmp_path: Path) -> None:
    d1, _ = folders
    base = KnowledgeBase(tmp_path / "kb", "same")
    assert [r.status for r in base.add([d1 / "manual.md"])] == ["added"]
    assert [r.status for r in base.add([d1 / ".." / "d1" / "manual.md"])] == ["unchanged"]
    (d1 / "manual.md").write_text(KETTLE + "### K-12 Lid open\nClose the lid.\n")
    assert [(r.status, r.chunks) for r in base.add([d1])] == [("updated", 2)]
    base.close()


def test_two_same_names_in_one_call_are_refused_before_writing(folders: tuple[Path, Path]) -> None:
    d1, d2 = folders
    both = kb("add", d1, d2, "--kb", "fresh", "--replace")
    assert both.exit_code == 1 and str(both.exception) == "2 of 3 files skipped"
    paths = f"({(d1 / 'manual.md').resolve()}, {(d2 / 'manual.md').resolve()})"
    assert both.output.count(f"manual.md is given from 2 paths {paths}") == 2
    assert stored("fresh") == {"lamp.md": str((d2 / "lamp.md").resolve())}

    assert kb("add", d1 / "manual.md", "--kb", "fresh").exit_code == 0
    again = kb("add", d1 / "manual.md", d2 / "manual.md", "--kb", "fresh")
    assert again.exit_code == 1 and str(again.exception) == "2 of 2 files skipped"
    assert stored("fresh")["manual.md"] == str((d1 / "manual.md").resolve())


def test_list_without_kb_lists_the_knowledge_bases(folders: tuple[Path, Path]) -> None:
    d1, d2 = folders
    empty = kb("list")
    assert empty.exit_code == 0 and "no knowledge bases in " in empty.output
    assert json.loads(kb("list", "--json").output) == []
    assert kb("add", d1, "--kb", "t1").exit_code == 0
    assert kb("add", d2, "--kb", "t2").exit_code == 0
    listed = kb("list")
    assert listed.exit_code == 0, listed.output
    assert "knowledge bases" in listed.output and "t1" in listed.output and "t2" in listed.output
    assert json.loads(kb("list", "--json").output) == [
        {"name": "t1", "documents": 1, "chunks": 1},
        {"name": "t2", "documents": 2, "chunks": 2},
    ]
    assert set(stored("t2")) == {"lamp.md", "manual.md"}


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_search_is_an_error(query: str) -> None:
    done = kb("search", query, "--kb", "nope")
    assert done.exit_code == 1
    assert str(done.exception) == "empty query: say what to look for, e.g. scenewatch kb search E-104"
