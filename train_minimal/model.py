"""A BTLM-style decoder: GPT-2 pre-LN blocks with biases, ALiBi, SwiGLU, tied embeddings and muP.

Config fields are named like BTLM's Hugging Face config. muP, as BTLM-3B-8K's config and paper set it: the
embedding output is multiplied by `mup_embeddings_scale`, attention scores are scaled by 1/d_head
(`mup_scale_qk_dot_by_d`), logits by `mup_output_alpha * mup_width_scale`; init std is `initializer_range` for embeddings, `initializer_range *
sqrt(mup_width_scale)` for hidden matrices and that over sqrt(2 * n_layer) for output projections; hidden matrices
train at lr * mup_width_scale (`get_mup_param_groups`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import AttentionContext, attend, context
from .loss import compute_dtype, loss_sum, token_losses


@dataclass
class BTLMConfig:
    vocab_size: int = 50257
    n_positions: int = 8192
    n_embd: int = 2560
    n_layer: int = 32
    n_head: int = 32
    n_inner: int = 6826
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.073
    use_mup: bool = True
    mup_width_scale: float = 0.1
    mup_embeddings_scale: float = 14.6
    mup_output_alpha: float = 2.22
    mup_scale_qk_dot_by_d: bool = True
    alibi_scaling: dict | None = None  # {"type": "linear", "train_seq_len": T} or {"type": "linear", "factor": F}
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


MUP_BASE_WIDTH = 256  # BTLM: width 2560 at mup_width_scale 0.1


def preset(name: str, **overrides) -> BTLMConfig:
    sizes = {
        "tiny": dict(n_layer=2, n_embd=128, n_head=4, n_inner=341, n_positions=2048),
        "small": dict(n_layer=6, n_embd=512, n_head=8, n_inner=1365, n_positions=8192),
        "btlm-3b": dict(n_layer=32, n_embd=2560, n_head=32, n_inner=6826, n_positions=8192),
    }
    if name not in sizes:
        raise ValueError(f"unknown preset {name!r}: {sorted(sizes)}")
    cfg = dict(sizes[name])
    cfg["mup_width_scale"] = MUP_BASE_WIDTH / cfg["n_embd"]
    cfg.update(overrides)
    return BTLMConfig(**cfg)


class Attention(nn.Module):
    def __init__(self, cfg: BTLMConfig):
        super().__init__()
        self.cfg = cfg
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.d_head = cfg.n_embd // cfg.n_head

    def forward(self, x, ctx: AttentionContext):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.cfg.n_head, self.d_head).transpose(1, 2) for z in (q, k, v))
        y = attend(q, k, v, ctx)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class SwiGLU(nn.Module):
    def __init__(self, cfg: BTLMConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.n_inner)
        self.c_fc2 = nn.Linear(cfg.n_embd, cfg.n_inner)
        self.c_proj = nn.Linear(cfg.n_inner, cfg.n_embd)

    def forward(self, x):
        return self.c_proj(self.c_fc(x) * F.silu(self.c_fc2(x)))


class Block(nn.Module):
    def __init__(self, cfg: BTLMConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, ctx: AttentionContext):
        x = x + self.attn(self.ln_1(x), ctx)
        return x + self.mlp(self.ln_2(x))


class BTLM(nn.Module):
    """`attention`: "auto" (FlexAttention on CUDA, SDPA with a bias elsewhere), "sdpa" or "flex".
    `checkpointing`: recompute each block's activations in the backward pass (training only)."""

    def __init__(self, cfg: BTLMConfig, attention: str = "auto", checkpointing: bool = False):
        super().__init__()
        self.cfg = cfg
        self.attention = attention
        self.checkpointing = checkpointing
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.init_weights()

    @property
    def hidden_std(self) -> float:
        ws = self.cfg.mup_width_scale if self.cfg.use_mup else 1.0
        return self.cfg.initializer_range * math.sqrt(ws)

    @torch.no_grad()
    def init_weights(self) -> None:
        if self.wte.weight.is_meta:
            return
        nn.init.normal_(self.wte.weight, std=self.cfg.initializer_range)
        out_std = self.hidden_std / math.sqrt(2 * self.cfg.n_layer)
        for name, m in self.h.named_modules():
            if isinstance(m, nn.Linear):  # layer norms keep their ones/zeros
                nn.init.normal_(m.weight, std=out_std if name.endswith("c_proj") else self.hidden_std)
                nn.init.zeros_(m.bias)

    def compile_blocks(self) -> None:
        """torch.compile each block (they share one compiled graph); masks, the embedding and the loss stay eager."""
        for block in self.h:
            block.compile(dynamic=False)

    def forward(self, input_ids, doc_ids=None, labels=None, reduction="sum", return_hidden=False):
        """Logits (B, L, V); or, given labels, the loss summed over labelled tokens (reduction "sum", for
        training) or per token ("none", no gradients), both without the batch's logits (loss.py); or, with
        return_hidden, (logits, every block's output) for the muP coordinate check."""
        cfg = self.cfg
        x = self.wte(input_ids)
        if cfg.use_mup:
            x = x * cfg.mup_embeddings_scale
        ctx = context(cfg.n_head, cfg.n_embd // cfg.n_head, cfg.mup_scale_qk_dot_by_d, cfg.alibi_scaling,
                      input_ids.shape[1], doc_ids, input_ids.device, compute_dtype(x), self.attention)  # q, k's
        hidden = []
        for block in self.h:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, ctx, use_reentrant=False)
            else:
                x = block(x, ctx)
            if return_hidden:
                hidden.append(x)
        x = self.ln_f(x)
        scale = cfg.mup_output_alpha * cfg.mup_width_scale if cfg.use_mup else 1.0  # muP output multiplier
        if labels is not None:
            losses = loss_sum if reduction == "sum" else token_losses
            return losses(x, self.wte.weight, labels, scale)
        logits = F.linear(x, self.wte.weight)  # tied embeddings
        if cfg.use_mup:
            logits = logits * scale
        return (logits, hidden) if return_hidden else logits

    def get_mup_param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """BTLM's grouping: embeddings at lr; hidden matrices at lr * width_scale (muP); biases and layer norms at
        lr without weight decay."""
        ws = self.cfg.mup_width_scale if self.cfg.use_mup else 1.0
        embed, hidden, no_decay = [], [], []
        for name, p in self.named_parameters():
            if name == "wte.weight":
                embed.append(p)
            elif p.ndim < 2:
                no_decay.append(p)
            else:
                hidden.append(p)
        return [{"params": embed, "lr": lr, "weight_decay": weight_decay, "lr_scale": 1.0},
                {"params": hidden, "lr": lr * ws, "weight_decay": weight_decay, "lr_scale": ws},
                {"params": no_decay, "lr": lr, "weight_decay": 0.0, "lr_scale": 1.0}]


def doc_ids_from_lens(doc_lens: torch.Tensor, length: int) -> torch.Tensor:
    """(B, n_docs) zero-padded segment lengths -> (B, length) document index of every position."""
    ends = doc_lens.cumsum(dim=1).contiguous()
    pos = torch.arange(length, device=doc_lens.device, dtype=ends.dtype).expand(len(ends), length).contiguous()
    return torch.searchsorted(ends, pos, right=True)  # how many documents end at or before each position


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
