"""Build a tiny, randomly initialised Qwen3-VL checkpoint that loads like the real one.

The checkpoint has the real architecture in miniature (a two-layer text decoder, a
two-block vision tower with deepstack), a byte-level BPE tokenizer trained here with
``tokenizers`` (Qwen's special tokens included) and a Qwen-style chat template that
renders images, tools, tool calls and tool results. Its answers are gibberish; it exists
so the real loading and inference path runs offline, on CPU, in seconds.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
PLAIN_ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

_CORPUS = """\
system user assistant tool You are a careful observer of a camera feed. Describe the frame.
Answer in compact JSON with keys summary people objects actions changes answers.
{"summary": "a person walks past the shop door", "people": 1, "objects": ["door", "bag"],
"actions": ["walking"], "changes": "a person entered from the left", "answers": {"q1": true}}
Picture 1: Picture 2: What changed since the previous frame? The scene is static and empty.
<tools></tools> {"name": "recall", "arguments": {"query": "someone at the door", "k": 5}}
The router's power LED is solid green; the internet LED blinks amber. Error code E-104.
Steps: 1. Restart the device. 2. Check the cable. [manual.md § LED table] 0123456789
"""


def chat_template() -> str:
    """The tiny checkpoint's chat template (Qwen's ChatML with images and tools)."""
    return resources.files("prompts").joinpath("tiny_chat_template.jinja").read_text("utf-8")


def build_tokenizer(vocab_size: int = 1024) -> Qwen2Tokenizer:
    """Train a byte-level BPE on a small corpus and wrap it as Qwen's tokenizer class."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.add_tokens(PLAIN_ADDED_TOKENS)
    return tokenizer


def build_processor(tokenizer: Qwen2Tokenizer) -> Qwen3VLProcessor:
    """Qwen3-VL's processor (patch 16, merge 2, mean/std 0.5) around ``tokenizer``."""
    tokenizer.chat_template = chat_template()
    image_processor = Qwen2VLImageProcessor(
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        size={"shortest_edge": 32 * 32, "longest_edge": 1280 * 32 * 32},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    video_processor = Qwen3VLVideoProcessor(patch_size=16, temporal_patch_size=2, merge_size=2)
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=chat_template(),
    )


def tiny_config(tokenizer: Qwen2Tokenizer) -> Qwen3VLConfig:
    """A Qwen3-VL configuration a few layers deep, with ids matching the tokenizer."""
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    return Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 500000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_checkpoint(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen3-VL checkpoint (weights, tokenizer, processor) to ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _readable_by_all(out)
    return out


def _readable_by_all(folder: Path) -> None:
    """Give the weights the mode ``config.json`` got under the umask (safetensors writes them 0600)."""
    mode = (folder / "config.json").stat().st_mode & 0o777
    for path in folder.glob("*.safetensors"):
        path.chmod(mode)
