"""Train the BTLM-style model on packed shards through the public reader API (PackedDataset / ShardReader).

BTLM's recipe, scaled down: AdamW(0.9, 0.95, eps 1e-8, wd 0.1), grad clip 1.0, linear warmup then linear decay to
0.0085 x peak, and the variable context schedule: stage 1 on the short-sequence shards, stage 2 on the long ones
with the same tokens per step (rows scaled by seq1/seq2), one LR schedule across both. Checkpoints hold the model,
optimizer, step and each stage's data position, so a resumed run continues with the same losses.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from slimpajama.packers import PackedDataset, ShardReader
from slimpajama.packers.pack import row_order

from .model import BTLM, doc_ids_from_lens, preset

FINAL_LR_FRACTION = 0.0085


@dataclass
class TrainConfig:
    stage1: str  # packed train split directory (short sequences)
    stage2: str | None = None  # packed train split directory (long sequences)
    validation: str | None = None  # packed validation split (concat), default: stage1's sibling "validation"
    out: str = "runs/train"
    preset: str = "tiny"
    steps: int = 300
    stage1_fraction: float = 0.75  # of steps (BTLM: 75% of tokens at 2k)
    tokens_per_step: int = 2048
    lr: float = 6e-3
    warmup_steps: int = 20
    weight_decay: float = 0.1
    clip: float = 1.0
    seed: int = 0
    doc_mask: bool = False  # attend within documents only (from the rows' document lengths)
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 50
    eval_rows: int = 64
    device: str = "cpu"


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (1 - frac * (1 - FINAL_LR_FRACTION))


def lm_loss(model, batch, device, doc_mask: bool, reduction="mean"):
    ids = batch["input_ids"].to(device)
    doc_ids = doc_ids_from_lens(batch["doc_lens"].to(device), ids.shape[1]) if doc_mask else None
    # On CUDA: bf16 autocast; SDPA then runs its fused memory-efficient kernel, which takes the additive ALiBi
    # mask. On the CPU: float32.
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(ids, doc_ids)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch["labels"].to(device).reshape(-1),
                           ignore_index=-100, reduction=reduction)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.device = torch.device(cfg.device)
        self.stage_dirs = [cfg.stage1] + ([cfg.stage2] if cfg.stage2 else [])
        self.seqs = [ShardReader(d).seq_len for d in self.stage_dirs]
        self.rows = [max(1, cfg.tokens_per_step // s) for s in self.seqs]
        longest = max(self.seqs)
        self.model = BTLM(preset(cfg.preset, n_positions=max(2 * longest, 2048))).to(self.device)
        self.opt = torch.optim.AdamW(self.model.get_mup_param_groups(cfg.lr, cfg.weight_decay), betas=(0.9, 0.95),
                                     eps=1e-8)
        self.datasets = [PackedDataset(d, seed=cfg.seed) for d in self.stage_dirs]
        self.step = 0
        self.history: list[dict] = []
        os.makedirs(cfg.out, exist_ok=True)

    def stage_of(self, step: int) -> int:
        if len(self.stage_dirs) == 1:
            return 0
        return 0 if step < round(self.cfg.steps * self.cfg.stage1_fraction) else 1

    # -------------------------------------------------------------------------------------------- checkpoints

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.cfg.out, "checkpoint.pt")

    def save(self) -> None:
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "data": [d.state_dict(samples_seen=0) for d in self.datasets], "history": self.history,
                 "config": asdict(self.cfg), "rng": torch.get_rng_state()}
        tmp = self.ckpt_path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt_path)

    def load(self) -> bool:
        if not os.path.exists(self.ckpt_path):
            return False
        state = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.step = state["step"]
        self.history = state["history"]
        for d, s in zip(self.datasets, state["data"], strict=True):
            d.load_state_dict(s)
        torch.set_rng_state(state["rng"])
        return True

    # -------------------------------------------------------------------------------------------- training

    def _next_batch(self, stage: int) -> dict:
        ds = self.datasets[stage]
        n = self.rows[stage]
        if len(ds) < n:  # epoch done: a new seeded shuffle
            ds.set_epoch(ds.epoch + 1)
        batch = PackedDataset.collate([ds[i] for i in range(n)])
        ds.advance(n)  # consumed: state_dict() now points past this batch
        return batch

    def train(self, max_steps: int | None = None, log=print) -> list[dict]:
        cfg = self.cfg
        self.model.train()
        end = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        t_last, tokens_since = time.perf_counter(), 0
        while self.step < end:
            stage = self.stage_of(self.step)
            lr = lr_at(self.step, cfg)
            for g in self.opt.param_groups:
                g["lr"] = lr * g["lr_scale"]
            batch = self._next_batch(stage)
            loss = lm_loss(self.model, batch, self.device, cfg.doc_mask)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
            self.opt.step()
            tokens = int(batch["input_ids"].numel())
            tokens_since += tokens
            self.step += 1
            rec = {"step": self.step, "stage": stage + 1, "seq_len": self.seqs[stage], "lr": lr,
                   "loss": loss.item(), "grad_norm": gnorm.item(), "tokens": tokens}
            self.history.append(rec)
            if self.step % cfg.log_every == 0 or self.step == end:
                now = time.perf_counter()
                rec["tokens_per_s"] = tokens_since / (now - t_last)
                t_last, tokens_since = now, 0
                log(f"step {self.step}/{cfg.steps} stage {stage + 1} seq {self.seqs[stage]} "
                    f"tokens {sum(h['tokens'] for h in self.history):,} loss {rec['loss']:.4f} lr {lr:.2e} "
                    f"{rec['tokens_per_s']:,.0f} tok/s")
            if self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                rec["val_loss"] = self.evaluate()
                log(f"  validation loss {rec['val_loss']:.4f}")
            if self.step % cfg.checkpoint_every == 0 or self.step == end:
                self.save()
        return self.history

    # -------------------------------------------------------------------------------------------- evaluation

    def validation_dir(self) -> str:
        return self.cfg.validation or os.path.join(os.path.dirname(self.cfg.stage1.rstrip("/")), "validation")

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean validation loss per token over up to eval_rows rows of the stage-1 validation split."""
        reader_dir = self.validation_dir()
        ds = PackedDataset(reader_dir, shuffle=False)
        n = min(len(ds), self.cfg.eval_rows)
        if n == 0:
            raise ValueError(f"no validation rows in {reader_dir}")
        self.model.eval()
        total, count = 0.0, 0
        for lo in range(0, n, 8):
            batch = PackedDataset.collate([ds[i] for i in range(lo, min(n, lo + 8))])
            total += float(lm_loss(self.model, batch, self.device, self.cfg.doc_mask, reduction="sum"))
            count += int((batch["labels"] != -100).sum())
        self.model.train()
        return total / count

    @torch.no_grad()
    def per_position_loss(self, length: int, max_windows: int = 16) -> dict:
        """Loss at each position of windows of `length` tokens of the validation stream, with and without ALiBi
        linear position interpolation (BTLM's extrapolation check)."""
        reader = ShardReader(self.validation_dir())
        order = row_order(len(reader), reader.manifest["seed"])
        rows = [None] * len(reader)
        for pos, r in enumerate(order):
            rows[r] = reader[pos]
        stream = np.concatenate([r[:-1] for r in rows]) if rows else np.zeros(0, np.int64)
        windows = min(max_windows, (len(stream) - 1) // length)
        if windows == 0:
            raise ValueError(f"validation stream of {len(stream)} tokens is shorter than {length}")
        self.model.eval()
        out = {}
        saved = self.model.cfg.alibi_scaling
        for name, scaling in (("no_scaling", None),
                              ("alibi_linear_scaling", {"type": "linear", "train_seq_len": max(self.seqs)})):
            self.model.cfg.alibi_scaling = scaling
            losses = torch.zeros(length)
            for w in range(windows):
                seg = torch.from_numpy(stream[w * length: (w + 1) * length + 1].astype(np.int64))
                logits = self.model(seg[None, :-1].to(self.device))
                losses += F.cross_entropy(logits[0].float(), seg[1:].to(self.device), reduction="none").cpu()
            out[name] = (losses / windows).tolist()
        self.model.cfg.alibi_scaling = saved
        self.model.train()
        return {"length": length, "trained_length": max(self.seqs), "windows": windows, **out}


def unigram_entropy(shard_dirs: list[str], vocab: int = 50257) -> float:
    """Entropy (nats per token) of the unigram distribution of the training tokens: the loss of the best model
    that ignores context. A model that learned anything from context ends below it."""
    counts = np.zeros(vocab, dtype=np.int64)
    for d in shard_dirs:
        r = ShardReader(d)
        for t in r._tokens:
            counts += np.bincount(t[:, 1:].reshape(-1), minlength=vocab)[:vocab]
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def binned(values: list[float], bins: int = 32) -> list[float]:
    arr = np.array(values)
    return [float(x.mean()) for x in np.array_split(arr, bins)]


def write_report(trainer: Trainer, out: str, final_val: float, entropy: float, positions: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = {"config": asdict(trainer.cfg), "model": trainer.model.cfg.to_dict(),
               "parameters": sum(p.numel() for p in trainer.model.parameters()),
               "final_validation_loss": final_val, "unigram_entropy_nats": entropy,
               "below_unigram_entropy": final_val < entropy, "per_position": positions,
               "history": trainer.history}
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([h["step"] for h in trainer.history], [h["loss"] for h in trainer.history], label="train loss")
    ax.axhline(entropy, color="gray", ls="--", label="unigram entropy")
    ax.axhline(final_val, color="green", ls=":", label="final validation loss")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title="Training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"), dpi=100)
    plt.close(fig)
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
    with open(os.path.join(out, "per_position_loss.json"), "w") as f:
        json.dump(positions, f)
    return os.path.join(out, "metrics.json")


def run(cfg: TrainConfig, resume: bool = True, log=print) -> dict:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    trainer = Trainer(cfg)
    if resume and trainer.load():
        log(f"resumed at step {trainer.step}")
    n_params = sum(p.numel() for p in trainer.model.parameters())
    log(f"model {cfg.preset}: {n_params / 1e6:.1f}M parameters; stages {list(zip(trainer.seqs, trainer.rows, strict=True))} "
        f"(seq, rows per step)")
    trainer.train(log=log)
    final = trainer.evaluate()
    entropy = unigram_entropy(trainer.stage_dirs)
    positions = trainer.per_position_loss(2 * max(trainer.seqs))
    log(f"validation loss {final:.4f} nats/token vs unigram entropy of the training tokens {entropy:.4f}"
        f" -> {'below' if final < entropy else 'NOT below'}")
    write_report(trainer, cfg.out, final, entropy, positions)
    return {"validation_loss": final, "unigram_entropy": entropy, "steps": trainer.step,
            "per_position": {k: float(np.mean(v[max(trainer.seqs):])) for k, v in positions.items()
                             if isinstance(v, list)}, "out": cfg.out}

