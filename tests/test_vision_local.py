"""The real transformers path, on the tiny random Qwen3-VL checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.vision.base import VisionError, VisionRequest
from tools.vision.local import LocalQwenBackend


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def backend(tiny_checkpoint: Path) -> LocalQwenBackend:
    return LocalQwenBackend(str(tiny_checkpoint), max_side=448, max_new_tokens=12)


def test_single_image_round_trip(backend: LocalQwenBackend) -> None:
    result = backend.generate([VisionRequest.ask("Describe the frame.", [_image(640, 360, 0)])])[0]
    assert isinstance(result.text, str)
    assert result.model == backend.model_name
    assert 0 < result.output_tokens <= 12
    assert result.latency_ms > 0
    assert result.image_tokens > 0


def test_pixel_budget_sets_image_tokens(backend: LocalQwenBackend) -> None:
    # 1280x720 shrinks to 448x252; the processor rounds to multiples of 32 (patch 16, merge 2):
    # 448x256 -> (448/32) * (256/32) = 14 * 8 = 112 merged tokens.
    result = backend.generate([VisionRequest.ask("Describe.", [_image(1280, 720, 1)])])[0]
    assert result.image_tokens == 112
    square = backend.generate([VisionRequest.ask("Describe.", [_image(900, 900, 2)])])[0]
    assert square.image_tokens == 14 * 14


def test_smaller_budget_gives_fewer_tokens(tiny_checkpoint: Path) -> None:
    small = LocalQwenBackend(str(tiny_checkpoint), max_side=224, max_new_tokens=4)
    result = small.generate([VisionRequest.ask("Describe.", [_image(1280, 720, 1)])])[0]
    assert result.image_tokens == 7 * 4  # 224x126 -> 224x128 -> 7 * 4


def test_batch_with_left_padding_matches_single(backend: LocalQwenBackend) -> None:
    big = VisionRequest.ask("What is in the frame?", [_image(640, 480, 3)])
    small = VisionRequest.ask("Describe the scene in one line please.", [_image(200, 120, 4)])
    assert backend.processor.tokenizer.padding_side == "left"
    batched = backend.generate([big, small])
    assert len(batched) == 2
    assert batched[0].image_tokens != batched[1].image_tokens
    assert all(r.extra["batch_size"] == 2 for r in batched)
    alone = backend.generate([small])[0]
    assert batched[1].text == alone.text


def test_two_images_in_one_request(backend: LocalQwenBackend) -> None:
    request = VisionRequest.ask(
        "Picture 1 then Picture 2: what changed?", [_image(320, 240, 5), _image(320, 240, 6)]
    )
    result = backend.generate([request])[0]
    assert result.image_tokens == 2 * (10 * 8)  # 320x240 -> 320x256 each -> 10 * 8


def test_greedy_output_is_deterministic(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from tools.vision.tiny import build_tiny_checkpoint

    request = VisionRequest.ask("Describe.", [_image(320, 240, 7)])
    first = LocalQwenBackend(str(tiny_checkpoint), max_new_tokens=8).generate([request])[0]
    rebuilt = build_tiny_checkpoint(tmp_path / "again", seed=0)
    second = LocalQwenBackend(str(rebuilt), max_new_tokens=8).generate([request])[0]
    assert first.text == second.text


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VisionError, match="not found"):
        LocalQwenBackend(str(tmp_path / "nope"))


def test_uncached_hub_model_says_how_to_pass_a_path() -> None:
    with pytest.raises(VisionError, match="--model PATH"):
        LocalQwenBackend("someone/not-a-real-model-xyz")


def test_the_tiny_checkpoint_is_readable_like_its_config(tiny_checkpoint: Path) -> None:
    modes = {path.name: path.stat().st_mode & 0o777 for path in tiny_checkpoint.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"]
