"""Read manuals (Markdown, plain text, PDF) and split them into chunks that remember where they came from.

Markdown is split by headings first (each chunk keeps its heading path, ``Title > Section > Sub``),
then every piece by size with overlap; PDF pages keep their page number.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from agent.core.errors import ScenewatchError

log = logging.getLogger(__name__)

KINDS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text", ".pdf": "pdf"}
"""File suffixes a knowledge base accepts, and how each is read."""

_HEADINGS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]
SECTION_SEPARATOR = " > "


class DocumentError(ScenewatchError):
    """A file that cannot go into a knowledge base: the message says why."""


@dataclass(frozen=True)
class Passage:
    """A stretch of a document under one heading path, or one PDF page, before splitting by size."""

    text: str
    section: str = ""
    page: int | None = None


@dataclass(frozen=True)
class Chunk:
    """A piece of a manual small enough to embed, with its heading path and page (PDFs only)."""

    text: str
    section: str
    page: int | None


def is_supported(path: Path) -> bool:
    """Whether the file's suffix is one a knowledge base reads."""
    return path.suffix.lower() in KINDS


def read_passages(path: Path, data: bytes) -> list[Passage]:
    """The passages of a file's bytes; :class:`DocumentError` for empty, binary or unreadable files."""
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise DocumentError(f"{path}: unsupported file type (use .md, .txt or .pdf)")
    if not data.strip():
        raise DocumentError(f"{path} is empty")
    if kind == "pdf":
        return _pdf_passages(path, data)
    text = _decode_text(path, data)
    passages = _markdown_passages(text) if kind == "markdown" else [Passage(text.strip())]
    passages = [p for p in passages if p.text.strip()]
    if not passages:
        raise DocumentError(f"{path} has headings but no text")
    return passages


def split_passages(passages: list[Passage], chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """Split each passage by size (paragraphs, then lines, then words) with overlap."""
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    return [
        Chunk(text=piece, section=passage.section, page=passage.page)
        for passage in passages
        for piece in splitter.split_text(passage.text)
    ]


def _decode_text(path: Path, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{path} looks like a binary file, not text or Markdown")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{path} is not UTF-8 text (binary file?): {exc.reason}") from exc


def _markdown_passages(text: str) -> list[Passage]:
    splitter = MarkdownHeaderTextSplitter(_HEADINGS)
    return [
        Passage(
            text=doc.page_content,
            section=SECTION_SEPARATOR.join(doc.metadata[key] for _, key in _HEADINGS if key in doc.metadata),
        )
        for doc in splitter.split_text(text)
    ]


def _pdf_passages(path: Path, data: bytes) -> list[Passage]:
    if not data.lstrip().startswith(b"%PDF"):
        raise DocumentError(f"{path} is not a PDF (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        texts = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise DocumentError(f"{path} is not a readable PDF: {exc}") from exc
    passages = [Passage(text.strip(), page=number) for number, text in enumerate(texts, 1) if text.strip()]
    if not passages:
        raise DocumentError(f"{path} has no text layer (scanned pages need OCR first)")
    log.debug("%s: %d of %d pages have text", path, len(passages), len(texts))
    return passages
