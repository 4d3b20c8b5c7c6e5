"""``scenewatch bench kb``: adding one large manual to a knowledge base, measured in a scratch home.

A plain-text manual of the given size is generated (sentences of device-manual English, paragraphs
of a few sentences, so chunks tokenize as real manuals do) and added with
:meth:`~memory.knowledge.knowledge_base.KnowledgeBase.add`, embedding included. The report gives
the chunks, the wall time, chunks per second, and the process's resident memory before the add
(the embedding model loaded) and at its peak: it should not grow with the size of the file.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch

from agent.bench.peak_rss import MIB, PeakMemory
from agent.core.config import Settings
from memory.embeddings import minilm_embeddings
from memory.knowledge.knowledge_base import WRITE_BATCH, KnowledgeBase

ACTIONS = ("Press", "Hold", "Release", "Turn", "Check", "Replace", "Clean", "Reset", "Unplug", "Tighten")
PARTS = (
    "the power button",
    "the reset switch",
    "the filter cover",
    "the front panel",
    "the water valve",
    "the fan grille",
    "the network cable",
    "the battery pack",
    "the door seal",
    "the drain hose",
)
WHEN = (
    "until the status light blinks green",
    "for ten seconds",
    "before you open the housing",
    "after the unit has cooled down",
    "when the display shows error E-{code}",
    "if the Internet light stays amber",
    "every three months",
    "while the pump is running",
)
WHY = (
    "This keeps the warranty valid.",
    "Otherwise the device may restart on its own.",
    "Contact support if the problem persists.",
    "The settings are kept.",
    "Do not use solvents or abrasive cleaners.",
    "The fault code clears once the cause is gone.",
)


def manual_text(size_bytes: int, seed: int = 0) -> str:
    """About ``size_bytes`` of manual-like plain text: paragraphs of 3 to 7 sentences."""
    rng = random.Random(seed)
    paragraphs, size = [], 0
    while size < size_bytes:
        sentences = []
        for _ in range(rng.randint(3, 7)):
            when = rng.choice(WHEN).format(code=rng.randint(100, 999))
            sentences.append(f"{rng.choice(ACTIONS)} {rng.choice(PARTS)} {when}. {rng.choice(WHY)}")
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(paragraphs)


def run_kb_bench(
    size_mb: float, settings: Settings, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Add a generated ``size_mb`` MB manual to a scratch knowledge base; returns the report."""
    minilm_embeddings().embed_query("warm up")  # the model loads before the clock starts
    with tempfile.TemporaryDirectory(prefix="scenewatch-bench-kb-") as scratch:
        manual = Path(scratch) / "manual.txt"
        manual.write_text(manual_text(int(size_mb * 1_000_000)), encoding="utf-8")
        base = KnowledgeBase(
            Path(scratch) / "kb",
            "bench",
            chunk_size=settings.kb_chunk_size,
            chunk_overlap=settings.kb_chunk_overlap,
        )
        rss_before = psutil.Process().memory_info().rss
        with PeakMemory("cpu", interval_s=0.05) as peak:
            started = time.perf_counter()
            (result,) = base.add(
                [manual], progress=None if progress is None else lambda _, d, t: progress(d, t)
            )
            seconds = time.perf_counter() - started
        base.close()
        file_mb = manual.stat().st_size / 1e6
    return {
        "file_mb": round(file_mb, 2),
        "chunks": result.chunks,
        "chunk_size": settings.kb_chunk_size,
        "write_batch": WRITE_BATCH,
        "seconds": round(seconds, 1),
        "chunks_per_s": round(result.chunks / max(seconds, 1e-9), 1),
        "rss_before_mib": round(rss_before / MIB, 1),
        "peak_rss_mib": peak.mib,
        "torch_threads": torch.get_num_threads(),
        "cpu_cores": psutil.cpu_count(),
    }
