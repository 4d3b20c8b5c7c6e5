"""Troubleshooting from a photo: tolerant reading, cited answers, the not-covered path, the tool, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage
from PIL import Image

from agent.core.config import Settings
from memory.knowledge.knowledge_base import Hit, KnowledgeBase
from tools.troubleshoot import (
    build_query,
    check_citations,
    make_troubleshoot_tool,
    not_covered_message,
    parse_reading,
    troubleshoot,
)
from tools.vision.base import VisionRequest
from tools.vision.scripted import ScriptedBackend

DEMO_MANUALS = Path(__file__).resolve().parents[1] / "demos" / "troubleshoot" / "manuals"
CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]
ROUTER = "router_nordlink_hr450.md"

ROUTER_READING = """Here is what I see:
```json
{"device": "home router", "brand": "Nordlink", "model": "HR-450",
 "lights": [{"name": "Power", "colour": "green", "state": "solid"},
            {"name": "Internet", "colour": "amber", "state": "blinking"}],
 "error_codes": ["E-104"], "text": [], "cables": null}
```"""
CAT_READING = (
    '{"device": "a cat asleep on a sofa", "brand": null, "model": null, "lights": [], "error_codes": []}'
)
_EXCERPT_HEADER = re.compile(r"^(\[[^\]\n]+ § [^\]\n]+\])$", re.MULTILINE)


@pytest.fixture(scope="module")
def kb_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose knowledge base ``demo`` holds the demo manuals."""
    home = tmp_path_factory.mktemp("home")
    assert {r.status for r in KnowledgeBase(home / "kb", "demo").add([DEMO_MANUALS])} == {"added"}
    return home


@pytest.fixture
def cfg(kb_home: Path) -> Settings:
    return Settings(home=kb_home)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (320, 200), "black").save(path)
    return path


def answer_citing_excerpts(request: VisionRequest) -> str:
    """The scripted model: a reading for the photo; for the answer, steps citing the prompt's excerpts."""
    if request.images:
        return ROUTER_READING
    prompt = request.messages[-1]["content"][-1]["text"]
    excerpts = _EXCERPT_HEADER.findall(prompt)
    return "\n".join(
        [
            f"1. Check the PPPoE user name and password. {excerpts[0]}",
            f"2. Set the VLAN ID if your provider needs one [{ROUTER} § E-104 PPPoE authentication failed].",
            f"3. Restart the modem first. [{ROUTER} § Made-up section]",
            "4. Call the provider. [some_other_manual.md § Support]",
        ]
    )


def test_parse_reading_is_tolerant() -> None:
    fenced = parse_reading(ROUTER_READING)
    assert fenced.parsed and fenced.fields["model"] == "HR-450"
    wrapped = parse_reading('Sure! {"device": "printer", "error_codes": ["J-02"]} Hope this helps.')
    assert wrapped.fields == {"device": "printer", "error_codes": ["J-02"]}
    truncated = parse_reading('{"device": "router", "lights": [{"name": "Internet", "colour": "amb')
    assert truncated.fields == {"device": "router", "lights": [{"name": "Internet", "colour": "amb"}]}
    for bad in ("the router has a blinking light", '["not", "an", "object"]', "{broken: json,,}", ""):
        reading = parse_reading(bad)
        assert not reading.parsed and reading.to_dict() == {"raw": bad}


def test_query_joins_question_and_reading() -> None:
    query = build_query(parse_reading(ROUTER_READING), "No internet since this morning")
    assert query == (
        "No internet since this morning. home router; Nordlink; HR-450; "
        "Power green solid, Internet amber blinking; E-104"
    )
    assert build_query(parse_reading("  blurry\n photo  "), "") == "blurry photo"


def test_check_citations_keeps_retrieved_and_removes_others() -> None:
    hit = Hit("i", ROUTER, "Router > LED indicators > Internet LED", None, "text", 0.03, 0.5)
    page = Hit("j", "kettle.pdf", "", 3, "text", 0.02, 0.4)
    answer = (
        f"1. Look at the light [{ROUTER} § Router > LED indicators > Internet LED].\n"
        f"2. Same, short form [{ROUTER.upper()} §  internet led].\n"
        "3. From the PDF [kettle.pdf § page 3].\n"
        f"4. Invented [{ROUTER} § LED indicators > Power LED].\n"
        "5. Unknown file [manual.md § Internet LED]."
    )
    cleaned, cited, rejected = check_citations(answer, [hit, page])
    assert cited == [hit, page]
    assert rejected == [f"[{ROUTER} § LED indicators > Power LED]", "[manual.md § Internet LED]"]
    assert cleaned.splitlines()[3:] == ["4. Invented.", "5. Unknown file."]


def test_troubleshoot_answer_cites_only_retrieved_chunks(cfg: Settings, photo: Path) -> None:
    backend = ScriptedBackend(answer_citing_excerpts)
    kb = KnowledgeBase.open(cfg, "demo")
    result = troubleshoot(backend, Image.open(photo), kb, cfg, "No internet")
    assert result.covered and result.reading.parsed
    sections = [hit.section for hit in result.chunks]
    assert any("E-104 PPPoE" in s for s in sections) and any("Internet LED" in s for s in sections)
    assert result.citations and all(hit in result.chunks for hit in result.citations)
    assert result.rejected_citations == [f"[{ROUTER} § Made-up section]", "[some_other_manual.md § Support]"]
    assert "Made-up" not in result.answer and "some_other_manual" not in result.answer
    assert result.answer.startswith("1. Check the PPPoE")
    read, answer = backend.requests
    assert read.images and not answer.images
    prompt = answer.messages[-1]["content"][-1]["text"]
    assert '"model": "HR-450"' in prompt and "No internet" in prompt
    record = result.to_dict()
    assert {"reading", "query", "chunks", "answer", "citations"} <= record.keys()
    assert {"source", "section", "page", "score"} <= record["chunks"][0].keys()
    json.dumps(record)


def test_not_covered_is_deterministic_without_asking_for_an_answer(cfg: Settings, photo: Path) -> None:
    backend = ScriptedBackend([CAT_READING])
    kb = KnowledgeBase.open(cfg, "demo")
    result = troubleshoot(backend, Image.open(photo), kb, cfg, "What breed is this cat?")
    assert not result.covered and result.citations == []
    assert result.answer == not_covered_message("demo", result.query)
    assert "do not cover this case" in result.answer
    assert len(backend.requests) == 1  # the photo was read; no answer was generated
    assert all(hit.similarity < cfg.kb_min_score and not hit.codes for hit in result.chunks)


def test_model_saying_not_covered_gives_the_same_answer(cfg: Settings, photo: Path) -> None:
    backend = ScriptedBackend([ROUTER_READING, "NOT COVERED"])
    result = troubleshoot(backend, Image.open(photo), KnowledgeBase.open(cfg, "demo"), cfg)
    assert not result.covered and result.answer == not_covered_message("demo", result.query)


def test_unparsed_reading_still_retrieves(cfg: Settings, photo: Path) -> None:
    backend = ScriptedBackend(["the printer display says Paper Jam J-02 Inside", "1. Open the front cover."])
    result = troubleshoot(backend, Image.open(photo), KnowledgeBase.open(cfg, "demo"), cfg)
    assert not result.reading.parsed and result.covered
    assert "J-02" in result.chunks[0].section and result.citations == []


def test_tool_has_typed_args_and_returns_answer_and_artifact(cfg: Settings, photo: Path) -> None:
    backend = ScriptedBackend(answer_citing_excerpts)
    tool = make_troubleshoot_tool(lambda requests: backend.generate(requests), cfg)
    assert tool.name == "troubleshoot"
    assert set(tool.args) == {"photo", "question", "kb"}
    call = {"photo": str(photo), "question": "internet light blinks amber", "kb": "demo"}
    message = tool.invoke({"type": "tool_call", "id": "call-1", "name": "troubleshoot", "args": call})
    assert isinstance(message, ToolMessage)
    assert message.content.startswith("Photo reading: home router; Nordlink; HR-450")
    assert "1. Check the PPPoE" in message.content
    assert message.artifact["covered"] and message.artifact["citations"]
    failed = tool.invoke({"photo": str(photo), "kb": "nope"})
    assert "no knowledge base named 'nope'" in failed


def test_cli_troubleshoot_with_tiny_checkpoint(tiny_checkpoint: Path, kb_home: Path, photo: Path) -> None:
    done = subprocess.run(
        [
            *CLI,
            "--home",
            str(kb_home),
            "troubleshoot",
            str(photo),
            "--model",
            str(tiny_checkpoint),
            "--kb",
            "demo",
            "--question",
            "The internet light blinks amber",
            "--max-new-tokens",
            "12",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert {"reading", "query", "chunks", "answer", "citations", "covered"} <= record.keys()
    assert record["query"].startswith("The internet light blinks amber")
    assert record["chunks"] and {"source", "section", "page", "score"} <= record["chunks"][0].keys()
    assert isinstance(record["answer"], str) and isinstance(record["citations"], list)
