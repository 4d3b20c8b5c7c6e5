"""Qwen3-VL through Hugging Face transformers, on GPU or CPU."""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from agent.core.config import Settings
from tools.vision.base import Message, VisionError, VisionRequest, VisionResult
from tools.vision.images import fit_within

log = logging.getLogger(__name__)


DTYPES = ("bfloat16", "float16", "float32")


def pick_device(device: str) -> str:
    """``auto`` means the first CUDA GPU when there is one, else the CPU.

    A device torch does not know, or one this machine does not have (``cuda`` without a GPU,
    ``cuda:1`` with one GPU, ``mps`` off Apple silicon), is a VisionError before any model loads.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise VisionError(f"device {device!r} is not a torch device (auto, cpu, cuda, cuda:N, mps)") from None
    advice = "use --device cpu or auto (SCENEWATCH_DEVICE)"
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise VisionError(
                f"device {device!r} asked for, but torch sees no CUDA GPU "
                f"(torch.cuda.is_available() is False); {advice}"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            gpus = "1 CUDA GPU (cuda:0)" if count == 1 else f"{count} CUDA GPUs (cuda:0 to cuda:{count - 1})"
            raise VisionError(
                f"device {device!r} asked for, but torch sees only {gpus}; "
                "use --device cuda or auto (SCENEWATCH_DEVICE)"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise VisionError(
            f"device {device!r} asked for, but torch sees no Apple GPU "
            f"(torch.backends.mps.is_available() is False); {advice}"
        )
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` means bf16 on GPUs that support it, fp16 on older GPUs, float32 on CPU."""
    if dtype != "auto":
        if dtype not in DTYPES:
            raise VisionError(f"dtype {dtype!r} is not one of auto, {', '.join(DTYPES)}")
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def pick_attention(attn: str, device: str) -> str:
    """``auto`` means flash-attention 2 on GPU when installed, else PyTorch's sdpa."""
    if attn != "auto":
        return attn
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def pick_decoder(decoder: str, model: Any, device: str) -> Any:
    """``auto`` means the CUDA-graph :class:`StaticDecoder` on GPU, transformers' ``generate`` on CPU.

    Returns an object with ``model.generate``'s signature, or None for ``generate`` itself.
    """
    if decoder == "auto":
        decoder = "static" if device.startswith("cuda") else "hf"
    if decoder == "hf":
        return None
    from tools.vision.fast_decode import StaticDecoder

    return StaticDecoder(model)


def pixel_budget_size(max_side: int, patch: int = 16, merge: int = 2) -> dict[str, int]:
    """The processor ``size`` (pixel areas) that keeps an image within ``max_side``²."""
    factor = patch * merge
    return {"shortest_edge": factor * factor, "longest_edge": max_side * max_side}


def _ensure_loadable(model: str) -> None:
    """Fail early, with advice, when ``model`` is neither a local folder nor in the HF cache."""
    if Path(model).expanduser().is_dir():
        return
    if Path(model).expanduser().exists() or model.startswith((".", "/", "~")):
        raise VisionError(f"model folder not found: {model}")
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(model, local_files_only=True, allow_patterns=["config.json"])
    except Exception as exc:  # not cached, and we never download at run time here
        raise VisionError(
            f"model {model!r} is not a local folder and is not in the Hugging Face cache. "
            "Pass a local checkpoint with --model PATH (or SCENEWATCH_MODEL), download it first "
            "with `hf download " + model + "`, or build a test model with `scenewatch model tiny DIR`."
        ) from exc


class LocalQwenBackend:
    """Qwen3-VL loaded once with ``AutoModelForImageTextToText`` and ``AutoProcessor``.

    Requests are batched with left padding; images are shrunk to ``max_side`` before the
    processor, whose ``size`` is set to the same budget.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        attn: str = "auto",
        max_side: int = 448,
        max_new_tokens: int = 256,
        decoder: str = "auto",
    ) -> None:
        self.device = pick_device(device)  # cheap checks first: a wrong flag should not wait for a model
        self.dtype = pick_dtype(dtype, self.device)
        _ensure_loadable(model)
        self.model_name = model
        self.max_side = max_side
        self.max_new_tokens = max_new_tokens
        local_only = Path(model).expanduser().is_dir()
        try:
            self.processor = AutoProcessor.from_pretrained(model, local_files_only=local_only)
            self.model = AutoModelForImageTextToText.from_pretrained(
                model,
                dtype=self.dtype,
                attn_implementation=pick_attention(attn, self.device),
                local_files_only=local_only,
            ).to(self.device)
        except (OSError, ValueError) as exc:
            raise VisionError(f"cannot load model {model!r}: {exc}") from exc
        self._finish_setup(decoder)
        log.info("loaded %s on %s as %s (decoder: %s)", model, self.device, self.dtype, self.decoder_name)

    @classmethod
    def from_model(
        cls,
        model: Any,
        processor: Any,
        *,
        name: str,
        max_side: int = 448,
        max_new_tokens: int = 256,
        decoder: str = "auto",
    ) -> LocalQwenBackend:
        """Wrap an already built model and processor (used for random-weight benchmarks)."""
        self = cls.__new__(cls)
        self.model_name, self.model, self.processor = name, model, processor
        self.device = str(next(model.parameters()).device)
        self.dtype = next(model.parameters()).dtype
        self.max_side, self.max_new_tokens = max_side, max_new_tokens
        self._finish_setup(decoder)
        return self

    def _finish_setup(self, decoder: str) -> None:
        """Eval mode, the pixel budget on the processor, left padding, the decoder."""
        self.model.eval()
        image_processor = self.processor.image_processor
        image_processor.size = pixel_budget_size(
            self.max_side, image_processor.patch_size, image_processor.merge_size
        )
        self.processor.tokenizer.padding_side = "left"
        self.image_token_id = self.model.config.image_token_id
        self.decoder = pick_decoder(decoder, self.model, self.device)

    @property
    def decoder_name(self) -> str:
        """``static`` when the CUDA-graph decoder runs the answers, ``hf`` for transformers' generate."""
        return "hf" if self.decoder is None else "static"

    def _prepare(self, messages: Sequence[Message]) -> list[Message]:
        """Copy messages with every image shrunk to the pixel budget."""
        prepared = []
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):
                content = [
                    {**part, "image": fit_within(part["image"], self.max_side)}
                    if part.get("type") == "image"
                    else part
                    for part in content
                ]
            prepared.append({**message, "content": content})
        return prepared

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        """Answer requests in one padded batch (requests sharing tool lists batch together)."""
        if not requests:
            return []
        results: list[VisionResult | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            key = (
                tuple(repr(t) for t in request.tools),
                request.max_new_tokens or self.max_new_tokens,
                request.min_new_tokens,
            )
            groups.setdefault(key, []).append(index)
        for indices in groups.values():
            for index, result in zip(
                indices, self._generate_group([requests[i] for i in indices]), strict=True
            ):
                results[index] = result
        return [r for r in results if r is not None]

    def _generate_group(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        start = time.perf_counter()
        first = requests[0]
        conversations = [self._prepare(r.messages) for r in requests]
        try:
            inputs = self.processor.apply_chat_template(
                conversations,
                tools=list(first.tools) or None,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                processor_kwargs={"padding": True, "return_tensors": "pt"},
            ).to(self.device)
        except (ValueError, TypeError, OSError) as exc:
            raise VisionError(f"cannot prepare the model input: {exc}") from exc
        max_new = first.max_new_tokens or self.max_new_tokens
        gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": False}
        if first.min_new_tokens:
            gen_kwargs["min_new_tokens"] = first.min_new_tokens
        with torch.inference_mode():
            generate = self.decoder.generate if self.decoder is not None else self.model.generate
            output = generate(**inputs, **gen_kwargs)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = output[:, prompt_len:]
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        elapsed_ms = (time.perf_counter() - start) * 1000
        pad_id = self.processor.tokenizer.pad_token_id
        results = []
        for row, text in enumerate(texts):
            ids = inputs["input_ids"][row]
            mask = inputs["attention_mask"][row]
            generated = new_tokens[row]
            results.append(
                VisionResult(
                    text=text.strip(),
                    model=self.model_name,
                    latency_ms=elapsed_ms,
                    image_tokens=int((ids == self.image_token_id).sum()),
                    prompt_tokens=int(mask.sum()),
                    output_tokens=int((generated != pad_id).sum()),
                    extra={"batch_size": len(requests)},
                )
            )
        return results


def from_settings(settings: Settings) -> LocalQwenBackend:
    """The ``local`` backend plugin: the model ``settings.model`` loaded in this process."""
    return LocalQwenBackend(
        settings.model,
        device=settings.device,
        dtype=settings.dtype,
        attn=settings.attn,
        max_side=settings.max_side,
        max_new_tokens=settings.max_new_tokens,
        decoder=settings.decoder,
    )
