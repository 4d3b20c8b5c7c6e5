"""The random-weight architectures carry the published Qwen3-VL configurations (configs only, no weights)."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen3VLForConditionalGeneration

from tools.vision.architectures import ARCHITECTURES, FixedLengthBackend, arch_config
from tools.vision.base import VisionRequest, VisionResult
from tools.vision.tiny import build_tokenizer

# name: (text hidden, layers, intermediate, heads, kv heads, tied,
#        vision depth, hidden, intermediate, out, deepstack, parameters in billions)
PUBLISHED = {
    "qwen3-vl-8b": (4096, 36, 12288, 32, 8, False, 27, 1152, 4304, 4096, [8, 16, 24], 8.77),
    "qwen3-vl-4b": (2560, 36, 9728, 32, 8, True, 24, 1024, 4096, 2560, [5, 11, 17], 4.44),
    "qwen3-vl-2b": (2048, 28, 6144, 16, 8, True, 24, 1024, 4096, 2048, [5, 11, 17], 2.13),
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_numbers(name: str, tokenizer) -> None:
    hidden, layers, inter, heads, kv, tied, depth, v_hidden, v_inter, out, deepstack, _ = PUBLISHED[name]
    config = arch_config(name, tokenizer)
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (hidden, layers, inter)
    assert (text.num_attention_heads, text.num_key_value_heads, text.head_dim) == (heads, kv, 128)
    assert text.vocab_size == 151936
    assert text.max_position_embeddings == 262144
    assert text.rope_parameters["rope_theta"] == 5_000_000
    assert text.rope_parameters["mrope_section"] == [24, 20, 20]
    assert text.rope_parameters["mrope_interleaved"] is True
    assert config.tie_word_embeddings is tied
    assert (vision.depth, vision.hidden_size, vision.intermediate_size, vision.num_heads) == (
        depth,
        v_hidden,
        v_inter,
        16,
    )
    assert (vision.patch_size, vision.spatial_merge_size, vision.out_hidden_size) == (16, 2, out)
    assert list(vision.deepstack_visual_indexes) == deepstack


def test_special_token_ids_match_the_tokenizer(tokenizer) -> None:
    config = arch_config("qwen3-vl-8b", tokenizer)
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert config.text_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert max(config.image_token_id, config.video_token_id) < config.text_config.vocab_size


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count(name: str, tokenizer) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = Qwen3VLForConditionalGeneration(arch_config(name, tokenizer))
    billions = sum(p.numel() for p in model.parameters()) / 1e9
    assert billions == pytest.approx(PUBLISHED[name][-1], abs=0.01)


def test_unknown_architecture(tokenizer) -> None:
    with pytest.raises(ValueError, match="qwen3-vl-8b"):
        arch_config("qwen3-vl-70b", tokenizer)
    assert set(ARCHITECTURES) == set(PUBLISHED)


class _Recorder:
    model_name = "recorder"
    max_new_tokens = 64

    def __init__(self) -> None:
        self.seen: list[VisionRequest] = []

    def generate(self, requests):
        self.seen += requests
        return [VisionResult(text="", model="recorder", latency_ms=1.0) for _ in requests]


def test_fixed_length_forces_each_answer_to_its_cap() -> None:
    inner = _Recorder()
    FixedLengthBackend(inner).generate([VisionRequest.ask("a"), VisionRequest.ask("b", max_new_tokens=128)])
    assert [(r.max_new_tokens, r.min_new_tokens) for r in inner.seen] == [(64, 64), (128, 128)]
