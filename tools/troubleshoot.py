"""Troubleshoot a device from a photo, with steps taken from a knowledge base of manuals.

1. The vision model reads the photo into JSON: device kind, brand, model, lights (colour and
   state), error codes, visible text, cables. The answer is parsed tolerantly (code fences,
   prose around the JSON, a truncated object); an answer that is no JSON at all is kept as
   raw text and used as the reading.
2. OCR (:mod:`tools.perception.ocr`) reads the text on the photo: labels, model numbers, the
   codes on a display. The retrieval query joins the user's question, the reading and that text,
   so a code read on the device finds its manual section by exact match; the knowledge base's
   hybrid search (:mod:`memory.knowledge.knowledge_base`) returns the best chunks.
3. If no chunk is relevant (cosine similarity below ``kb_min_score`` and no error code or
   model number of the query found verbatim), the answer says so without asking the model:
   that path is deterministic. Otherwise the model answers in numbered steps citing
   ``[source § section]``; it may also answer ``NOT COVERED``. Citations that refer to no
   retrieved chunk are removed from the answer and reported in ``rejected_citations``.

Vision calls go through any object with ``generate(requests) -> results`` (a backend, or the
process's ``Engine`` so the tool shares the one loaded model) or a plain callable doing the same.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langchain_core.utils.json import parse_partial_json
from PIL import Image
from pydantic import BaseModel, Field

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from memory.knowledge.knowledge_base import DEFAULT_KB, Hit, KnowledgeBase
from prompts import quote, render_prompt
from tools.perception.ocr import shared_reader
from tools.vision.base import VisionRequest, VisionResult
from tools.vision.images import load_image

log = logging.getLogger(__name__)

NOT_COVERED = "NOT COVERED"
"""What the model answers when the excerpts do not cover the case."""

_CITATION = re.compile(r"\[([^\[\]§\n]+?)\s*§\s*([^\[\]\n]+?)\]")
_FENCED = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL)
_EMPTY = {"", "null", "none", "unknown", "n/a", "-"}
_RAW_QUERY_CHARS = 400


class Generates(Protocol):
    """Anything that answers a batch of vision requests: a backend or the engine."""

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]: ...


Generator = Generates | Callable[[Sequence[VisionRequest]], list[VisionResult]]


@dataclass(frozen=True)
class Reading:
    """What the model read from the photo: its JSON fields, or only its raw text when it gave no JSON."""

    raw: str
    fields: dict[str, Any] | None = None

    @property
    def parsed(self) -> bool:
        return self.fields is not None

    def summary(self) -> str:
        """The reading as one line of plain words: field values, or the start of the raw text."""
        if self.fields is None:
            return " ".join(self.raw.split())[:_RAW_QUERY_CHARS]
        return "; ".join(", ".join(words) for words in (_words(v) for v in self.fields.values()) if words)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.fields) if self.fields is not None else {"raw": self.raw}


@dataclass(frozen=True)
class TroubleshootResult:
    """The reading, the query, the retrieved chunks and the answer with its checked citations."""

    reading: Reading
    query: str
    chunks: list[Hit]
    covered: bool
    answer: str
    citations: list[Hit]
    rejected_citations: list[str]
    text: list[str] = field(default_factory=list)  # the lines OCR read on the photo

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: reading, query, chunks (source, section, page, score), answer, citations."""
        return {
            "reading": self.reading.to_dict(),
            "reading_parsed": self.reading.parsed,
            "query": self.query,
            "chunks": [
                {key: hit.to_dict()[key] for key in ("source", "section", "page", "score", "similarity")}
                for hit in self.chunks
            ],
            "covered": self.covered,
            "answer": self.answer,
            "citations": [{"source": h.source, "section": h.section, "page": h.page} for h in self.citations],
            "rejected_citations": self.rejected_citations,
            "text": self.text,
        }

    def for_agent(self) -> str:
        """What the agent's model sees: the reading, then the cited answer."""
        text = f"\nText on the device: {', '.join(quote(line) for line in self.text)}" if self.text else ""
        return f"Photo reading: {self.reading.summary() or 'nothing readable'}{text}\n\n{self.answer}"


def parse_reading(text: str) -> Reading:
    """The JSON object in a model's answer (fenced, wrapped in prose or truncated), else the raw text."""
    start = text.find("{")
    candidates = [*_FENCED.findall(text)]
    if start != -1:
        candidates += [text[start : text.rfind("}") + 1], text[start:]]
    for candidate in candidates:
        try:
            value = parse_partial_json(candidate.strip())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and value:
            return Reading(text, value)
    return Reading(text)


def build_query(reading: Reading, question: str = "", text: Sequence[str] = ()) -> str:
    """The retrieval query: the question (as a sentence), the reading's words, then the text read on
    the photo (its codes and model numbers match manual sections exactly)."""
    question = question.strip()
    if question and question[-1] not in ".?!":
        question += "."
    read = "Text on the device: " + " ".join(text) if text else ""
    return " ".join(part for part in (question, reading.summary(), read) if part)


def read_photo_text(photo: Image.Image) -> list[str]:
    """The lines of text OCR reads on the photo, top to bottom; none (logged) when OCR is unavailable."""
    try:
        lines = shared_reader().read(cv2.cvtColor(np.asarray(photo.convert("RGB")), cv2.COLOR_RGB2BGR))
    except ScenewatchError as exc:
        log.warning("cannot read the text on the photo: %s", exc)
        return []
    return [line.text for line in lines]


def check_citations(answer: str, hits: Sequence[Hit]) -> tuple[str, list[Hit], list[str]]:
    """Keep the citations that name a retrieved chunk; remove the others.

    A citation matches a chunk when the source names are equal and the cited section is the
    chunk's heading path or a tail of it (``[router.md § Internet LED]`` matches
    ``Router > LED indicators > Internet LED``), ignoring case and spacing. Returns the cleaned
    answer, the cited chunks (once each, in order) and the rejected citations as written.
    """
    cited: dict[str, Hit] = {}
    rejected: list[str] = []

    def keep_or_drop(match: re.Match[str]) -> str:
        hit = _cited_hit(match.group(1), match.group(2), hits)
        if hit is None:
            rejected.append(match.group(0))
            return ""
        cited.setdefault(hit.citation, hit)
        return match.group(0)

    cleaned = _CITATION.sub(keep_or_drop, answer)
    cleaned = re.sub(r"[ \t]+(?=[.,;:]?$)", "", cleaned, flags=re.MULTILINE)
    return cleaned.strip(), list(cited.values()), rejected


def not_covered_message(kb: str, query: str) -> str:
    """The fixed answer when the manuals do not cover the case."""
    return (
        f"The manuals in knowledge base {kb!r} do not cover this case (searched for: {query or 'nothing'}). "
        "Check the maker's support pages, or add the device's manual with `scenewatch kb add`."
    )


def troubleshoot(
    generator: Generator, photo: Image.Image, kb: KnowledgeBase, settings: Settings, question: str = ""
) -> TroubleshootResult:
    """Read the photo, retrieve from ``kb`` (``settings.kb_k`` chunks) and answer in cited steps."""
    generate = generator.generate if hasattr(generator, "generate") else generator
    question_line = f"The user says: {question.strip()}" if question.strip() else ""
    read_request = VisionRequest.ask(
        render_prompt("troubleshoot_read", question_line=question_line),
        [photo],
        max_new_tokens=settings.max_new_tokens,
    )
    reading = parse_reading(generate([read_request])[0].text)
    on_photo = read_photo_text(photo)
    query = build_query(reading, question, on_photo)
    hits = kb.search(query, settings.kb_k)

    def not_covered() -> TroubleshootResult:
        answer = not_covered_message(kb.name, query)
        return TroubleshootResult(reading, query, hits, False, answer, [], [], on_photo)

    if not any(hit.similarity >= settings.kb_min_score or hit.codes for hit in hits):
        return not_covered()
    prompt = render_prompt(
        "troubleshoot",
        reading=json.dumps(reading.fields, ensure_ascii=False) if reading.parsed else reading.summary(),
        question=question.strip() or "(none: say what the lights and messages mean and what to do)",
        excerpts="\n\n".join(f"{hit.citation}\n{hit.text}" for hit in hits),
        example=hits[0].citation,
    )
    text = generate([VisionRequest.ask(prompt, max_new_tokens=settings.max_new_tokens)])[0].text.strip()
    if text.upper().startswith(NOT_COVERED):
        return not_covered()
    answer, citations, rejected = check_citations(text, hits)
    return TroubleshootResult(reading, query, hits, True, answer, citations, rejected, on_photo)


class TroubleshootInput(BaseModel):
    """Arguments of the ``troubleshoot`` tool."""

    photo: str = Field(description="Path of a photo of the device.")
    question: str = Field(default="", description="What the user sees or asks, e.g. 'internet light blinks'.")
    kb: str = Field(default=DEFAULT_KB, description="Name of the knowledge base of manuals to search.")


def make_troubleshoot_tool(generator: Generator, settings: Settings) -> BaseTool:
    """The ``troubleshoot`` tool for the agent (a LangChain ``StructuredTool``).

    ``generator`` answers the vision requests: pass the process's ``Engine`` so the tool shares
    the one loaded model, or any backend with ``generate(requests)``, or a callable taking a
    list of ``VisionRequest``. Arguments: :class:`TroubleshootInput` (photo path, question, kb).
    The tool returns content and artifact: the content is the reading and the cited answer;
    the artifact is :meth:`TroubleshootResult.to_dict`. A missing photo or an unknown knowledge
    base comes back to the model as the tool's text (``ToolException``), not as a crash.
    """

    def run(photo: str, question: str = "", kb: str = DEFAULT_KB) -> tuple[str, dict[str, Any]]:
        try:
            base = KnowledgeBase.open(settings, kb).require()
            result = troubleshoot(generator, load_image(photo), base, settings, question)
        except ScenewatchError as exc:
            raise ToolException(str(exc)) from exc
        return result.for_agent(), result.to_dict()

    return StructuredTool.from_function(
        func=run,
        name="troubleshoot",
        description=(
            "Troubleshoot a device (router, printer, recorder ...) from a photo of it: reads its lights, "
            "codes and labels (with OCR too), searches the manuals and answers in numbered steps citing "
            "[source § section]; says so when the manuals do not cover the case."
        ),
        args_schema=TroubleshootInput,
        response_format="content_and_artifact",
        handle_tool_error=True,
    )


def _cited_hit(source: str, section: str, hits: Sequence[Hit]) -> Hit | None:
    """The retrieved chunk a citation names, if any (see :func:`check_citations`)."""
    cited = _normal(section)
    for hit in hits:
        label = _normal(hit.label)
        if _normal(source) == _normal(hit.source) and (cited == label or label.endswith(" > " + cited)):
            return hit
    return None


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _words(value: Any) -> list[str]:
    """The meaningful strings in a JSON value (nulls, booleans and 'unknown' left out)."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, dict):
        joined = " ".join(w for v in value.values() for w in _words(v))
        return [joined] if joined else []
    if isinstance(value, list):
        return [w for item in value for w in _words(item)]
    text = " ".join(str(value).split())
    return [] if text.lower() in _EMPTY else [text]
