"""StaticDecoder gives model.generate's greedy tokens (eager on CPU; graphs and compile need a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tools.vision.base import VisionRequest
from tools.vision.fast_decode import StaticDecoder
from tools.vision.local import LocalQwenBackend


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def backend(tiny_checkpoint: Path) -> LocalQwenBackend:
    return LocalQwenBackend(str(tiny_checkpoint), max_side=448, max_new_tokens=16)


def _inputs(backend: LocalQwenBackend, requests: list[VisionRequest]) -> dict:
    conversations = [backend._prepare(r.messages) for r in requests]
    return dict(
        backend.processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            processor_kwargs={"padding": True, "return_tensors": "pt"},
        )
    )


def _batch(backend: LocalQwenBackend) -> dict:
    return _inputs(
        backend,
        [
            VisionRequest.ask("Describe the frame.", [_image(640, 360, 0)]),
            VisionRequest.ask(
                "What changed since the previous frame? Answer in compact JSON.", [_image(300, 200, 1)]
            ),
            VisionRequest.ask("Hi", [_image(448, 448, 2)]),
        ],
    )


@pytest.mark.parametrize("min_new", [None, 16])
def test_left_padded_batch_matches_generate(backend: LocalQwenBackend, min_new: int | None) -> None:
    inputs = _batch(backend)
    assert inputs["attention_mask"].min() == 0  # rows of different lengths: left padding
    options = {"max_new_tokens": 16, "do_sample": False, "min_new_tokens": min_new}
    expected = backend.model.generate(**inputs, **options)
    assert torch.equal(StaticDecoder(backend.model).generate(**inputs, **options), expected)


def test_end_of_sequence_stops_rows_and_pads_like_generate(backend: LocalQwenBackend) -> None:
    inputs = _batch(backend)
    prompt = inputs["input_ids"].shape[1]
    free = backend.model.generate(**inputs, max_new_tokens=16, do_sample=False)
    config = backend.model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = [saved, int(free[0, prompt + 2])]  # row 0 now ends at its third token
    try:
        decoder = StaticDecoder(backend.model)
        for options in ({"max_new_tokens": 16}, {"max_new_tokens": 16, "min_new_tokens": 8}):
            expected = backend.model.generate(**inputs, do_sample=False, **options)
            assert torch.equal(decoder.generate(**inputs, **options), expected)
        ended = decoder.generate(**inputs, max_new_tokens=16)
        assert (ended[0, prompt + 3 :] == config.pad_token_id).all()
    finally:
        config.eos_token_id = saved


def test_text_only_requests_fall_back_to_generate(backend: LocalQwenBackend) -> None:
    inputs = _inputs(backend, [VisionRequest.ask("Say hello.")])
    expected = backend.model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert torch.equal(StaticDecoder(backend.model).generate(**inputs, max_new_tokens=8), expected)


def test_backend_uses_the_decoder_the_settings_name(backend: LocalQwenBackend) -> None:
    assert backend.decoder is None  # auto on CPU: transformers' generate
    static = LocalQwenBackend.from_model(
        backend.model, backend.processor, name="tiny", max_new_tokens=backend.max_new_tokens, decoder="static"
    )
    assert isinstance(static.decoder, StaticDecoder)
    request = VisionRequest.ask("Describe the frame.", [_image(320, 240, 5)])
    plain = backend.generate([request])[0]
    fast = static.generate([request])[0]
    assert fast.text == plain.text
    assert fast.output_tokens == plain.output_tokens
