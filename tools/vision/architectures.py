"""Real-size Qwen3-VL architectures with random weights, for benchmarks on machines without weights.

Each entry holds the published configuration of a Qwen3-VL Instruct checkpoint (text decoder,
vision tower, rope settings). :func:`arch_config` builds it with the special-token ids of the
tiny tokenizer (which has a small vocabulary; the model keeps the published 151936), and
:func:`random_weights_backend` builds the model directly on the device, in bf16, wrapped so
that every answer runs to exactly ``max_new_tokens`` (random weights stop at random places).
Speed and memory match the real model; the answers are gibberish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from transformers import (
    Qwen2Tokenizer,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)

from tools.vision.base import VisionBackend, VisionRequest, VisionResult
from tools.vision.local import LocalQwenBackend
from tools.vision.tiny import SPECIAL_TOKENS, build_processor, build_tokenizer

VOCAB_SIZE = 151936

# The published rope settings shared by every Qwen3-VL Instruct size.
_ROPE = {
    "rope_type": "default",
    "rope_theta": 5_000_000.0,
    "mrope_section": [24, 20, 20],
    "mrope_interleaved": True,
}

# The vision tower of the 2B and 4B models (they differ only in its output width).
_SMALL_VISION = {
    "depth": 24,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_heads": 16,
    "deepstack_visual_indexes": [5, 11, 17],
}

# Published config.json values of Qwen/Qwen3-VL-{8B,4B,2B}-Instruct.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "qwen3-vl-8b": {
        "text": {
            "hidden_size": 4096,
            "num_hidden_layers": 36,
            "intermediate_size": 12288,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
        },
        "vision": {
            "depth": 27,
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_heads": 16,
            "out_hidden_size": 4096,
            "deepstack_visual_indexes": [8, 16, 24],
        },
        "tie_word_embeddings": False,
    },
    "qwen3-vl-4b": {
        "text": {
            "hidden_size": 2560,
            "num_hidden_layers": 36,
            "intermediate_size": 9728,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
        },
        "vision": {**_SMALL_VISION, "out_hidden_size": 2560},
        "tie_word_embeddings": True,
    },
    "qwen3-vl-2b": {
        "text": {
            "hidden_size": 2048,
            "num_hidden_layers": 28,
            "intermediate_size": 6144,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
        },
        "vision": {**_SMALL_VISION, "out_hidden_size": 2048},
        "tie_word_embeddings": True,
    },
}


def arch_config(name: str, tokenizer: Qwen2Tokenizer) -> Qwen3VLConfig:
    """The published configuration of ``name``, with special-token ids taken from ``tokenizer``."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    tied = arch["tie_word_embeddings"]
    return Qwen3VLConfig(
        text_config={
            **arch["text"],
            "vocab_size": VOCAB_SIZE,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 262144,
            "rope_parameters": dict(_ROPE),
            "tie_word_embeddings": tied,
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            **arch["vision"],
            "hidden_act": "gelu_pytorch_tanh",
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tied,
    )


def random_model(
    name: str, *, device: str = "cuda", dtype: torch.dtype = torch.bfloat16, seed: int = 0
) -> tuple[Qwen3VLForConditionalGeneration, Qwen3VLProcessor]:
    """The architecture ``name`` with random weights created on ``device``, and its processor."""
    tokenizer = build_tokenizer()
    config = arch_config(name, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.eval()
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.do_sample = False
    return model, build_processor(tokenizer)


class FixedLengthBackend:
    """Runs every answer to exactly its ``max_new_tokens``, so decode length is controlled."""

    def __init__(self, inner: LocalQwenBackend) -> None:
        self.inner = inner
        self.model_name = inner.model_name

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        fixed = []
        for request in requests:
            length = request.max_new_tokens or self.inner.max_new_tokens
            fixed.append(replace(request, max_new_tokens=length, min_new_tokens=length))
        return self.inner.generate(fixed)


def random_weights_backend(
    name: str,
    *,
    device: str = "cuda",
    max_side: int = 448,
    max_new_tokens: int = 64,
    decoder: str = "auto",
) -> VisionBackend:
    """A backend over ``name`` with random bf16 weights (float32 on CPU) and fixed-length answers."""
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model, processor = random_model(name, device=device, dtype=dtype)
    inner = LocalQwenBackend.from_model(
        model,
        processor,
        name=f"{name} (random weights)",
        max_side=max_side,
        max_new_tokens=max_new_tokens,
        decoder=decoder,
    )
    return FixedLengthBackend(inner)
