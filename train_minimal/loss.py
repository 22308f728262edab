"""Language-model loss from the final hidden states, without materializing float32 logits of the whole batch.

The head (tied embeddings) and cross-entropy run over chunks of tokens. When a batch has more tokens than one
chunk, each chunk is checkpointed: its logits are recomputed in the backward pass instead of kept, so the peak is
one chunk's logits (8,192 x 50,257 float32 = 1.6 GB) instead of the batch's (64k tokens: 13 GB, plus the bf16
copy). A batch of one chunk or less (the CPU demo) takes the plain path, with no recomputation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
CHUNK_TOKENS = 8192


def _chunk_losses(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    logits = F.linear(hidden, weight).float() * scale
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")


def token_losses(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, scale: float = 1.0,
                 chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """Per-token losses (0 where the label is IGNORE_INDEX) of (..., D) hidden states against (...) labels, with
    logits = hidden @ weight.T * scale."""
    h = hidden.reshape(-1, hidden.shape[-1])
    y = labels.reshape(-1)
    if len(y) <= chunk_tokens:
        return _chunk_losses(h, weight, y, scale).view(labels.shape)
    recompute = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    parts = []
    for lo in range(0, len(y), chunk_tokens):
        args = (h[lo: lo + chunk_tokens], weight, y[lo: lo + chunk_tokens], scale)
        parts.append(checkpoint(_chunk_losses, *args, use_reentrant=False) if recompute else _chunk_losses(*args))
    return torch.cat(parts).view(labels.shape)
