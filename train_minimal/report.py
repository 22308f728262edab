"""What a training run leaves in its folder: metrics.json (config, throughput, losses against the unigram
entropy, per-position losses), loss.png and per_position_loss.png."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np

from slimpajama.packers import ShardReader


def unigram_entropy(shard_dirs: list[str], vocab: int = 50257) -> float:
    """Entropy (nats per token) of the unigram distribution of the training tokens: the loss of the best model
    that ignores context. A model that learned anything from context ends below it."""
    counts = np.zeros(vocab, dtype=np.int64)
    for d in shard_dirs:
        r = ShardReader(d)
        for t in r.token_blocks():
            counts += np.bincount(t[:, 1:].reshape(-1), minlength=vocab)[:vocab]
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def binned(values: list[float], bins: int = 32) -> list[float]:
    arr = np.array(values)
    return [float(x.mean()) for x in np.array_split(arr, bins)]


def write_report(trainer, out: str, final_val: float, entropy: float, positions: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = trainer
    metrics = {"config": asdict(t.cfg), "model": t.model.cfg.to_dict(), "parameters": t.n_params,
               "run": {"device": t.device_name, "processes": t.world.size, "attention": t.attention,
                       "compiled": t.compiled, "checkpointing": t.cfg.checkpointing,
                       "rows_per_step": t.rows, "micro_batch_rows": t.micro, "loader_workers": t.workers,
                       "peak_flops_per_device": t.peak,
                       "flop_count": "6 x parameters + 6 x n_layer x n_embd x seq_len per token (causal attention)",
                       "peak_gpu_memory_gib": t.peak_memory_gib()},
               "throughput": t.throughput(),
               "final_validation_loss": final_val, "unigram_entropy_nats": entropy,
               "below_unigram_entropy": final_val < entropy, "per_position": positions,
               "history": t.history}
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([h["step"] for h in t.history], [h["loss"] for h in t.history], label="train loss")
    ax.axhline(entropy, color="gray", ls="--", label="unigram entropy")
    ax.axhline(final_val, color="green", ls=":", label="final validation loss")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title="Training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"), dpi=100)
    plt.close(fig)
    with open(os.path.join(out, "per_position_loss.json"), "w") as f:
        json.dump(positions, f)
    if not positions["windows"]:
        return os.path.join(out, "metrics.json")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = np.linspace(0, positions["length"], 33)[:-1]
    for name in ("no_scaling", "alibi_linear_scaling"):
        ax.plot(x, binned(positions[name]), label=name.replace("_", " "))
    ax.axvline(positions["trained_length"], color="gray", ls="--", label="longest trained length")
    ax.set(xlabel="position", ylabel="validation loss", title="Loss per position (extrapolation check)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "per_position_loss.png"), dpi=100)
    plt.close(fig)
    return os.path.join(out, "metrics.json")
