"""Fast greedy decoding for Qwen3-VL: a static KV cache, compiled layers, one CUDA graph per batch shape.

Hugging Face ``generate`` spends most of a decode step in Python (tens of milliseconds for an 8B
model, whatever the GPU). :class:`StaticDecoder` runs the prefill (vision tower, deepstack,
3D rope) through the model as usual, copies its KV cache into preallocated buffers, and then
decodes with its own step over the same weights: the decoder layers' element-wise work fused by
``torch.compile``, the whole step (every layer, the head, the greedy pick, the bookkeeping)
captured once per (batch bucket, cache length) as a CUDA graph and replayed without any
host synchronisation. Greedy tokens match ``generate``'s; sampling, text-only prompts and
batches above the largest bucket fall back to ``generate``.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

log = logging.getLogger(__name__)

BUCKETS = (1, 2, 4, 8, 16, 32, 64)
CHECK_EVERY = 8  # steps between checks for "every row finished" (each check is a host sync)


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen's RMSNorm: computed in float32, scaled in the input dtype."""
    dtype = x.dtype
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _attn_in(
    h: torch.Tensor, w: tuple[torch.Tensor, ...], eps: float, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Norm, fused q/k/v projection, q/k norms and rope for one new token per row: (B, heads, 1, dim)."""
    ln1, qkv_w, q_norm, k_norm = w[:4]
    batch, dim, kv_rows = h.shape[0], q_norm.shape[0], w[4].shape[0]
    q, k, v = F.linear(_rms(h, ln1, eps), qkv_w).split([qkv_w.shape[0] - 2 * kv_rows, kv_rows, kv_rows], -1)
    q = _rms(q.view(batch, 1, -1, dim), q_norm, eps).transpose(1, 2)
    k = _rms(k.view(batch, 1, -1, dim), k_norm, eps).transpose(1, 2)
    v = v.view(batch, 1, -1, dim).transpose(1, 2)
    return _rotate(q, cos, sin), _rotate(k, cos, sin), v


def _attn_out_mlp(
    h: torch.Tensor, attn: torch.Tensor, w: tuple[torch.Tensor, ...], eps: float
) -> torch.Tensor:
    """Output projection, residual, norm, fused gate/up SwiGLU MLP, residual."""
    o_w, ln2, gate_up_w, down_w = w[5:]
    h = h + F.linear(attn.reshape(h.shape[0], 1, -1), o_w)
    gate, up = F.linear(_rms(h, ln2, eps), gate_up_w).chunk(2, dim=-1)
    return h + F.linear(F.silu(gate) * up, down_w)


def _fuse(linears: list[torch.nn.Linear]) -> torch.Tensor:
    """One matrix holding the linears' rows; each linear's weight becomes a view of it (no copy kept)."""
    fused = torch.cat([linear.weight.data for linear in linears])
    start = 0
    for linear in linears:
        rows = linear.weight.shape[0]
        linear.weight.data = fused[start : start + rows]
        start += rows
    return fused


@dataclass
class _Slot:
    """Static buffers (and the captured graph) for one (batch bucket, cache length)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    tokens: torch.Tensor  # (B,) last token of each row
    pos: torch.Tensor  # (B,) rope position of that token
    write: torch.Tensor  # (1,) cache index it is written to
    step: torch.Tensor  # (1,) index of the token being chosen
    min_new: torch.Tensor  # (1,) end-of-sequence is suppressed while step < min_new
    valid: torch.Tensor  # (B, L) cache positions that are not left padding
    done: torch.Tensor  # (B,) row has produced an end-of-sequence token
    done_at: torch.Tensor  # (B,) step at which it did
    out: torch.Tensor  # (B, L) chosen tokens
    positions: torch.Tensor  # (L,) 0..L-1
    graph: Any = field(default=None)

    @property
    def batch(self) -> int:
        return self.tokens.shape[0]


class StaticDecoder:
    """Greedy ``generate`` for a Qwen3-VL model, with the step captured as CUDA graphs on GPU.

    ``generate(**processor_outputs, max_new_tokens=..., min_new_tokens=...)`` returns prompt and
    new tokens like ``model.generate``. ``compile``/``graphs`` default to on for CUDA models.
    """

    def __init__(
        self,
        model: Any,
        *,
        compile: bool | None = None,
        graphs: bool | None = None,
        cache_block: int = 512,
    ) -> None:
        self.model = model
        text = model.model.language_model
        config = model.config.text_config
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        on_cuda = self.device.type == "cuda"
        self.use_graphs = on_cuda if graphs is None else graphs
        use_compile = on_cuda if compile is None else compile
        self._attn_in = torch.compile(_attn_in, dynamic=True, fullgraph=True) if use_compile else _attn_in
        self._attn_out = (
            torch.compile(_attn_out_mlp, dynamic=True, fullgraph=True) if use_compile else _attn_out_mlp
        )
        self.cache_block = cache_block
        self.eps = config.rms_norm_eps
        self.kv_heads, self.head_dim = config.num_key_value_heads, config.head_dim
        self.groups = config.num_attention_heads // config.num_key_value_heads
        self.embed = text.embed_tokens.weight
        self.norm = text.norm.weight
        self.lm_head = model.lm_head.weight
        self.inv_freq = text.rotary_emb.inv_freq.float()
        self.rope_scale = float(text.rotary_emb.attention_scaling)
        if any(layer.self_attn.q_proj.bias is not None for layer in text.layers):
            raise ValueError("StaticDecoder expects Qwen3-VL's bias-free attention projections")
        # Fused q/k/v and gate/up weights: two wide matrix-vector products instead of five narrow ones.
        self.layers = [
            (
                layer.input_layernorm.weight,
                _fuse([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
                layer.self_attn.q_norm.weight,
                layer.self_attn.k_norm.weight,
                layer.self_attn.k_proj.weight,
                layer.self_attn.o_proj.weight,
                layer.post_attention_layernorm.weight,
                _fuse([layer.mlp.gate_proj, layer.mlp.up_proj]),
                layer.mlp.down_proj.weight,
            )
            for layer in text.layers
        ]
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else config.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos)
        pad = gen.pad_token_id if gen.pad_token_id is not None else config.pad_token_id
        self.is_eos = torch.zeros(model.lm_head.weight.shape[0], dtype=torch.bool, device=self.device)
        self.is_eos[eos_ids] = True
        self.pad = int(pad if pad is not None else eos_ids[0])
        self._cache_kw = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )
        self._slots: dict[tuple[int, int], _Slot] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.use_graphs else None

    def _new_slot(self, batch: int, length: int) -> _Slot:
        def zeros(*shape: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, device=self.device)

        cache_shape = (batch, self.kv_heads, length, self.head_dim)
        slot = _Slot(
            keys=[zeros(*cache_shape, dtype=self.dtype) for _ in self.layers],
            values=[zeros(*cache_shape, dtype=self.dtype) for _ in self.layers],
            tokens=zeros(batch),
            pos=zeros(batch),
            write=zeros(1),
            step=zeros(1),
            min_new=zeros(1),
            valid=torch.ones(batch, length, dtype=torch.bool, device=self.device),
            done=zeros(batch, dtype=torch.bool),
            done_at=zeros(batch),
            out=zeros(batch, length),
            positions=torch.arange(length, device=self.device),
        )
        if self.use_graphs:
            slot.graph = self._capture(slot)
        return slot

    def _capture(self, slot: _Slot) -> torch.cuda.CUDAGraph:
        """Warm the step up on a side stream (compiling it), then capture it."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step(slot)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            self._step(slot)
        log.debug("captured a decode step for batch %d, cache %d", slot.batch, slot.positions.shape[0])
        return graph

    def _step(self, slot: _Slot) -> None:
        """Decode one token for every row: everything on the device, nothing read back."""
        h = F.embedding(slot.tokens, self.embed)[:, None, :]
        freqs = slot.pos[:, None].float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, None, :]
        cos = (emb.cos() * self.rope_scale).to(self.dtype)
        sin = (emb.sin() * self.rope_scale).to(self.dtype)
        visible = slot.valid & (slot.positions <= slot.write)
        mask = torch.zeros_like(visible, dtype=self.dtype).masked_fill(~visible, float("-inf"))[:, None, None]
        for weights, keys, values in zip(self.layers, slot.keys, slot.values, strict=True):
            q, k, v = self._attn_in(h, weights, self.eps, cos, sin)
            keys.index_copy_(2, slot.write, k)
            values.index_copy_(2, slot.write, v)
            q = q.reshape(h.shape[0], self.kv_heads, self.groups, self.head_dim)
            attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            h = self._attn_out(h, attn, weights, self.eps)
        logits = F.linear(_rms(h[:, 0], self.norm, self.eps), self.lm_head)
        self._pick(slot, logits.float())

    def _pick(self, slot: _Slot, logits: torch.Tensor) -> None:
        """Greedy choice with end-of-sequence suppression, padding after the end, counters forward."""
        logits = logits.masked_fill(self.is_eos & (slot.step < slot.min_new), float("-inf"))
        chosen = torch.where(slot.done, self.pad, logits.argmax(-1))
        slot.out.index_copy_(1, slot.step, chosen[:, None])
        ended = self.is_eos[chosen] & ~slot.done
        slot.done_at.copy_(torch.where(ended, slot.step, slot.done_at))
        slot.done.logical_or_(ended)
        slot.tokens.copy_(chosen)
        slot.step.add_(1)
        slot.write.add_(1)
        slot.pos.add_(1)

    def _fallback(self, kwargs: dict[str, Any]) -> bool:
        return (
            bool(kwargs.get("do_sample"))
            or kwargs.get("pixel_values") is None
            or kwargs["input_ids"].shape[0] > BUCKETS[-1]
        )

    @torch.inference_mode()
    def generate(self, **kwargs: Any) -> torch.Tensor:
        """Prompt and new tokens, shape (B, prompt + new), like ``model.generate``'s greedy output."""
        if self._fallback(kwargs):
            return self.model.generate(**kwargs)
        max_new = int(kwargs.pop("max_new_tokens"))
        min_new = int(kwargs.pop("min_new_tokens", None) or 0)
        kwargs.pop("do_sample", None)
        input_ids, attention_mask = kwargs.pop("input_ids"), kwargs.pop("attention_mask")
        rows, prompt = input_ids.shape
        batch = next(b for b in BUCKETS if b >= rows)
        length = -(-(prompt + max_new) // self.cache_block) * self.cache_block
        slot = self._slots.get((batch, length))
        if slot is None:
            slot = self._slots[(batch, length)] = self._new_slot(batch, length)
        logits = self._prefill(slot, input_ids, attention_mask, kwargs)
        slot.min_new.fill_(min_new)
        self._pick(slot, logits)
        steps = 1
        while steps < max_new:
            if slot.graph is not None:
                slot.graph.replay()
            else:
                self._step(slot)
            steps += 1
            if min_new < max_new and steps % CHECK_EVERY == 0 and bool(slot.done[:rows].all()):
                break
        done = slot.done[:rows]
        if bool(done.all()):
            steps = min(steps, int(slot.done_at[:rows].max()) + 1)
        return torch.cat([input_ids, slot.out[:rows, :steps]], dim=1)

    def _prefill(
        self, slot: _Slot, input_ids: torch.Tensor, attention_mask: torch.Tensor, inputs: dict[str, Any]
    ) -> torch.Tensor:
        """Run the prompt through the model, move its KV cache into the slot; the last logits."""
        rows, prompt = input_ids.shape
        cache = DynamicCache(config=self.model.config)
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: cache},
            **inputs,
        )
        for layer, keys, values in zip(cache.layers, slot.keys, slot.values, strict=True):
            keys[:rows, :, :prompt].copy_(layer.keys)
            values[:rows, :, :prompt].copy_(layer.values)
        slot.valid.fill_(True)
        slot.valid[:rows, :prompt].copy_(attention_mask.bool())
        deltas = self.model.model.rope_deltas.reshape(-1).to(self.device)
        slot.pos.zero_()
        # The counters describe the last token fed: the prompt's; _pick moves them to the new one.
        slot.pos[:rows].copy_(attention_mask.sum(-1) + deltas - 1)
        slot.write.fill_(prompt - 1)
        slot.step.zero_()
        slot.done.fill_(False)
        slot.done_at.zero_()
        logits = torch.zeros(slot.batch, output.logits.shape[-1], device=self.device)
        logits[:rows] = output.logits[:, -1].float()
        return logits
