"""Language-model loss from the final hidden states, without materializing the logits of the whole batch.

Training (`loss_sum`): a fused linear + cross-entropy. The head (tied embeddings) runs over chunks of tokens; for
each chunk the forward pass computes the logits, the loss, and at once the gradients of the hidden states and of
the head's weight (softmax minus the one-hot target), then drops the logits. The backward pass only scales the
saved gradients. Peak memory is one chunk's logits (8,192 x 50,257 float32 = 1.6 GB) instead of the batch's (64k
tokens: 13 GB, plus the bf16 copy), and nothing is recomputed: the matmuls are the ones a plain backward does. On
CUDA the chunk is one compiled function, so the softmax, its gradient and the casts are fused kernels.

Evaluation (`token_losses`): per-token losses, chunk by chunk, without gradients.
"""

from __future__ import annotations

import functools

import torch

IGNORE_INDEX = -100
CHUNK_TOKENS = 8192


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype matmuls on t's device run in: autocast's when it is on (bf16 on CUDA), else t's own."""
    kind = t.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else t.dtype


def _losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 logits (N, V) -> (per-token losses with 0 where ignored, log-sum-exp, which tokens count)."""
    valid = labels != IGNORE_INDEX
    target = torch.where(valid, labels, 0)
    lse = torch.logsumexp(logits, dim=-1)
    losses = torch.where(valid, lse - logits.gather(1, target[:, None]).squeeze(1), 0.0)
    return losses, lse, target


def _chunk_with_grads(h: torch.Tensor, w: torch.Tensor, labels: torch.Tensor, scale: float):
    """One chunk: (loss sum, d loss / d h, d loss / d w in float32), logits = h @ w.T * scale. The logits buffer
    becomes the softmax, then its gradient, in place."""
    logits = (h @ w.T).float().mul_(scale)
    losses, lse, target = _losses(logits, labels)
    g = logits.sub_(lse[:, None]).exp_()  # softmax
    g.scatter_add_(1, target[:, None], torch.full_like(lse[:, None], -1.0))  # minus the one-hot target
    g = g.mul_(((labels != IGNORE_INDEX) * scale)[:, None]).to(h.dtype)
    return losses.sum(), g @ w, (g.T @ h).float()


@functools.lru_cache(maxsize=1)
def _compiled_chunk():
    return torch.compile(_chunk_with_grads, dynamic=False)


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, scale, chunk_tokens, dtype):
        h, w = hidden.to(dtype), weight.to(dtype)
        chunk = _compiled_chunk() if hidden.is_cuda else _chunk_with_grads
        total = torch.zeros((), device=hidden.device, dtype=torch.float32)
        grad_h = torch.empty_like(hidden)
        grad_w = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32)
        for lo in range(0, len(labels), chunk_tokens):
            part = slice(lo, lo + chunk_tokens)
            loss, gh, gw = chunk(h[part], w, labels[part], scale)
            total += loss
            grad_h[part] = gh
            grad_w += gw
        ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out, grad_w * grad_out, None, None, None, None


def loss_sum(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, scale: float = 1.0,
             chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """Sum of the token losses (IGNORE_INDEX labels excluded) of (..., D) hidden states against (...) labels, with
    logits = hidden @ weight.T * scale; differentiable in hidden and weight. Matmuls run in the autocast dtype
    when autocast is on (bf16 on CUDA), the softmax in float32."""
    if not (torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)):
        return token_losses(hidden, weight, labels, scale, chunk_tokens).sum(dtype=torch.float32)
    with torch.autocast(hidden.device.type, enabled=False):
        return _FusedLinearCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]), weight, labels.reshape(-1),
                                              scale, chunk_tokens, compute_dtype(hidden))


@torch.no_grad()
def token_losses(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, scale: float = 1.0,
                 chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """Per-token losses (0 where the label is IGNORE_INDEX), the shape of labels; no gradients."""
    dtype = compute_dtype(hidden)
    h, w, y = hidden.reshape(-1, hidden.shape[-1]).to(dtype), weight.to(dtype), labels.reshape(-1)
    parts = [_losses((h[lo: lo + chunk_tokens] @ w.T).float().mul_(scale), y[lo: lo + chunk_tokens])[0]
             for lo in range(0, len(y), chunk_tokens)]
    return torch.cat(parts).view(labels.shape)
