"""`slimpajama train`: the bundled BTLM-style trainer. Imports only what a GPU box has (torch, numpy, pyarrow,
click, rich, matplotlib): no corpus-stage package."""

from __future__ import annotations

import json

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.errors import SlimPajamaError


@click.command()
@click.option("--stage1", required=True, type=click.Path(file_okay=False),
              help="Packed train split for stage 1 (short sequences), e.g. data/shards/seq2048-0-0.75/train.")
@click.option("--stage2", default=None, type=click.Path(file_okay=False),
              help="Packed train split for stage 2 (long sequences), e.g. data/shards/seq8192-0.75-1/train.")
@click.option("--validation", default=None, type=click.Path(file_okay=False),
              help="Packed validation split (default: stage 1's sibling 'validation').")
@click.option("--out", "-o", default="runs/train", show_default=True, type=click.Path(file_okay=False))
@click.option("--preset", type=click.Choice(["tiny", "small", "btlm-3b"]), default="tiny", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--tokens-per-step", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Global batch: all processes, all micro-batches of one optimizer step.")
@click.option("--micro-batch-rows", type=click.IntRange(min=1), default=None,
              help="Rows per forward/backward and process at the stage-1 length (gradient accumulation; stage 2 "
                   "keeps the tokens). Default: the whole step at once.")
@click.option("--lr", type=float, default=6e-3, show_default=True, help="Peak (muP base) learning rate.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--doc-mask", is_flag=True, help="Attend within documents only (from the rows' document lengths).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (under torchrun: each process's "
              "LOCAL_RANK GPU).")
@click.option("--attention", type=click.Choice(["auto", "sdpa", "flex"]), default="auto", show_default=True,
              help="auto: FlexAttention (ALiBi score_mod, block masks) on CUDA, SDPA with a bias on the CPU.")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="torch.compile the blocks (default: on CUDA only).")
@click.option("--checkpointing", is_flag=True, help="Recompute block activations in the backward pass (memory).")
@click.option("--loader-workers", type=click.IntRange(min=0), default=None,
              help="DataLoader worker processes (default: 2 on CUDA, 0 on the CPU).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--eval-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--stop-at", type=click.IntRange(min=1), default=None,
              help="Stop, checkpointed, after this step (a job's time slice); the same command continues.")
@click.option("--peak-tflops", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Peak dense bf16 TFLOP/s per device for MFU, where the GPU is not recognized.")
@click.option("--no-resume", is_flag=True, help="Start over even if the run folder has a checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True)
@fail_cleanly(kept="the run folder keeps its last checkpoint")
def train(stage1, stage2, validation, out, preset, steps, tokens_per_step, micro_batch_rows, lr, warmup_steps,
          doc_mask, device, attention, compile_, checkpointing, loader_workers, checkpoint_every, eval_every,
          log_every, stop_at, peak_tflops, no_resume, seed):
    """Train the bundled BTLM-style model (ALiBi, SwiGLU, muP) on packed shards, BTLM's two-stage context schedule;
    writes metrics.json, loss.png and per_position_loss.png to the run folder. Several GPUs:
    `torchrun --nproc-per-node N -m slimpajama.train_minimal ...` (the same options)."""
    from slimpajama.pipelines.paths import require, train_split
    from slimpajama.train_minimal.config import TrainConfig
    from slimpajama.train_minimal.train import run

    stage1 = train_split(stage1)  # a packed set (seq2048-0-0.75) or its train split
    stage2 = train_split(stage2) if stage2 else None
    if validation:
        require(validation, ("packed_split",), "train --validation")
    cfg = TrainConfig(stage1=stage1, stage2=stage2, validation=validation, out=out, preset=preset, steps=steps,
                      tokens_per_step=tokens_per_step, micro_batch_rows=micro_batch_rows, lr=lr,
                      warmup_steps=min(warmup_steps, steps), doc_mask=doc_mask, device=device, attention=attention,
                      compile=compile_, checkpointing=checkpointing, loader_workers=loader_workers,
                      checkpoint_every=checkpoint_every, eval_every=eval_every, log_every=log_every, stop_at=stop_at,
                      peak_tflops=peak_tflops, seed=seed)
    import torch

    try:
        result = run(cfg, resume=not no_resume, log=lambda m: click.echo(m, err=True))
    except torch.cuda.OutOfMemoryError:  # outside a training step (the step names its own settings)
        raise SlimPajamaError(f"out of GPU memory (--preset {preset}): lower --micro-batch-rows, add "
                              "--checkpointing, or pick a smaller --preset; the run folder keeps its last "
                              "checkpoint") from None
    if result is not None:  # under torchrun, the first process reports
        click.echo(json.dumps(result, indent=2))


command = train
