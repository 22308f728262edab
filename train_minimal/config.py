"""The trainer's settings (the `train` command's options) and its learning-rate schedule: BTLM's linear warmup,
then linear decay to 0.0085 x peak."""

from __future__ import annotations

from dataclasses import dataclass

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
    micro_batch_rows: int | None = None  # rows per forward/backward at the stage-1 length (None: a whole step)
    lr: float = 6e-3
    warmup_steps: int = 20
    weight_decay: float = 0.1
    clip: float = 1.0
    seed: int = 0
    doc_mask: bool = False  # attend within documents only (from the rows' document lengths)
    attention: str = "auto"  # auto (flex on CUDA, sdpa elsewhere) | sdpa | flex
    compile: bool | None = None  # torch.compile the blocks (None: on CUDA)
    checkpointing: bool = False  # recompute block activations in the backward pass
    loader_workers: int | None = None  # DataLoader worker processes (None: 2 on CUDA, 0 on the CPU)
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 50
    stop_at: int | None = None  # stop (checkpointed) after this step; the same command continues
    eval_rows: int = 64
    device: str = "cpu"
    peak_tflops: float | None = None  # for MFU where the GPU is not recognized (or on the CPU)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (1 - frac * (1 - FINAL_LR_FRACTION))


# Settings a checkpoint must share with the command that resumes it (others, like --stop-at, may change).
RESUME_KEYS = ("preset", "steps", "tokens_per_step", "seed", "doc_mask", "stage1_fraction", "lr", "warmup_steps")
