"""Causal ALiBi attention, optionally within documents only: one function, two backends.

- `sdpa`: PyTorch's scaled_dot_product_attention with a materialized additive (B or 1, H, L, L) bias. The
  reference, and the CPU path (FlexAttention has no backward on the CPU).
- `flex`: FlexAttention with ALiBi as a `score_mod` and causal (plus per-document) masking as a block mask built
  from the rows' document ids. No (L, L) tensor exists on this path: on CUDA the block mask is built by a compiled
  kernel block by block, and the attention itself is a compiled fused kernel that skips fully masked blocks, so a
  document mask makes attention cheaper, not dearer.

`context()` builds what a forward pass needs once; every layer then calls `attend(q, k, v, ctx)`.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "sdpa", "flex")


def alibi_slopes(n_head: int) -> torch.Tensor:
    """The standard ALiBi slopes (Press et al.): a geometric sequence, interleaved when n_head is not a power of 2."""
    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_head).is_integer():
        return torch.tensor(power_of_2(n_head))
    closest = 2 ** math.floor(math.log2(n_head))
    extra = power_of_2(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(power_of_2(closest) + extra)


def alibi_factor(scaling: dict | None, length: int) -> float:
    """ALiBi linear position interpolation: slopes are divided by this for an input of `length` tokens."""
    if not scaling:
        return 1.0
    if scaling.get("type") != "linear":
        raise ValueError(f"unsupported alibi_scaling {scaling}")
    if "factor" in scaling:
        return float(scaling["factor"])
    return max(1.0, length / scaling["train_seq_len"])


def resolve_backend(backend: str, device: torch.device | str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}: {BACKENDS}")
    if backend == "auto":
        return "flex" if torch.device(device).type == "cuda" else "sdpa"
    return backend


@dataclass
class AttentionContext:
    """What every layer's attention needs for one forward pass (built once per pass by `context`)."""

    backend: str
    scale: float
    slopes: torch.Tensor  # (H,) float32, already divided by the interpolation factor
    bias: torch.Tensor | None = None  # sdpa: (B or 1, H, L, L) additive
    block_mask: object = None  # flex: a BlockMask


def attention_bias(slopes: torch.Tensor, length: int, doc_ids: torch.Tensor | None, dtype) -> torch.Tensor:
    """(B or 1, H, L, L) additive bias: ALiBi, the causal mask, and (given per-position document ids) no
    attention across documents."""
    pos = torch.arange(length, device=slopes.device)
    dist = (pos[None, :] - pos[:, None]).clamp(max=0).to(torch.float32)  # j - i <= 0 for keys in the past
    bias = slopes[:, None, None] * dist[None]
    blocked = pos[None, :] > pos[:, None]
    if doc_ids is not None:
        blocked = blocked[None] | (doc_ids[:, :, None] != doc_ids[:, None, :])
        return bias[None].masked_fill(blocked[:, None], float("-inf")).to(dtype)
    return bias.masked_fill(blocked, float("-inf"))[None].to(dtype)


def _causal(b, h, q_idx, kv_idx):
    return kv_idx <= q_idx


@functools.lru_cache(maxsize=8)
def _causal_block_mask(length: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(_causal, None, None, length, length, device=device, _compile=device != "cpu")


def block_mask(length: int, doc_ids: torch.Tensor | None, device: torch.device):
    """Causal block mask, per document when doc_ids (B, L) is given. Cached for the causal case (it depends on
    the length only)."""
    if doc_ids is None:
        return _causal_block_mask(length, str(device))
    from torch.nn.attention.flex_attention import create_block_mask

    def same_document(b, h, q_idx, kv_idx):
        return _causal(b, h, q_idx, kv_idx) & (doc_ids[b, q_idx] == doc_ids[b, kv_idx])

    return create_block_mask(same_document, doc_ids.shape[0], None, length, length, device=device,
                             _compile=device.type != "cpu")


def context(n_head: int, d_head: int, scale_by_d: bool, scaling: dict | None, length: int,
            doc_ids: torch.Tensor | None, device: torch.device, dtype, backend: str) -> AttentionContext:
    """muP scales attention scores by 1/d_head (BTLM's mup_scale_qk_dot_by_d) instead of 1/sqrt(d_head)."""
    backend = resolve_backend(backend, device)
    slopes = (alibi_slopes(n_head) / alibi_factor(scaling, length)).to(device=device, dtype=torch.float32)
    ctx = AttentionContext(backend, 1.0 / d_head if scale_by_d else 1.0 / math.sqrt(d_head), slopes)
    if backend == "sdpa":
        ctx.bias = attention_bias(slopes, length, doc_ids, dtype)
    else:
        ctx.block_mask = block_mask(length, doc_ids, device)
    return ctx


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _flex(q, k, v, ctx: AttentionContext):
    from torch.nn.attention.flex_attention import flex_attention

    slopes = ctx.slopes

    def alibi(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (kv_idx - q_idx)  # kv_idx <= q_idx wherever the mask lets a score through

    if q.device.type == "cpu":  # eager (unfused) FlexAttention: forward only (torch refuses a backward there)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "called without torch.compile": intended here
            return flex_attention(q, k, v, score_mod=alibi, block_mask=ctx.block_mask, scale=ctx.scale)
    # inside a compiled block dynamo compiles flex_attention with the block; called eagerly (evaluation without
    # --compile), it goes through its own compiled kernel, never the unfused (L, L) fallback
    flex = flex_attention if torch.compiler.is_compiling() else _compiled_flex()
    return flex(q, k, v, score_mod=alibi, block_mask=ctx.block_mask, scale=ctx.scale)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
    """(B, H, L, D) queries, keys and values -> (B, H, L, D) outputs."""
    if ctx.backend == "flex":
        return _flex(q, k, v, ctx)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=ctx.bias, scale=ctx.scale)
