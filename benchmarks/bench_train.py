"""Trainer benchmarks, each case in its own process (its peak memory). Prints one JSON line.

    --loss fused|plain      the LM loss of N tokens against a 50,257 vocabulary, forward + backward: our fused
                            chunked linear + cross-entropy against autograd through the full logits (the
                            baseline); seconds and peak memory (RSS on the CPU, allocated on CUDA)
    --attention             CUDA: attention alone, fwd + bwd, SDPA with the materialized ALiBi bias (the baseline)
                            against FlexAttention (score_mod + block mask), the issue's shapes
    --train PRESET          the Trainer on synthetic packed shards of random tokens (documents of --doc-len
                            tokens): tokens/s, MFU, data wait, peak memory, from the steps after warm-up

`run.py` runs the CPU cases always and the CUDA cases where torch sees a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import peak_rss_mb  # noqa: E402

VOCAB = 50257


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _peak_mb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_loss(method: str, tokens: int, dim: int, chunk: int, repeat: int = 3) -> dict:
    import torch.nn.functional as F

    from slimpajama.train_minimal.loss import loss_sum

    device = _device()
    g = torch.Generator(device="cpu").manual_seed(0)
    hidden = (torch.randn(tokens, dim, generator=g) * 0.1).to(device).requires_grad_()
    weight = (torch.randn(VOCAB, dim, generator=g) * 0.02).to(device).requires_grad_()
    labels = torch.randint(0, VOCAB, (tokens,), generator=g).to(device)
    base_mb = _peak_mb(device)
    best = float("inf")
    for _ in range(repeat):
        hidden.grad = weight.grad = None
        _sync(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            if method == "fused":
                loss = loss_sum(hidden, weight, labels, chunk_tokens=chunk)
            else:
                loss = F.cross_entropy(F.linear(hidden, weight).float(), labels, reduction="sum")
        loss.backward()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return {"method": method, "device": device.type, "tokens": tokens, "dim": dim, "chunk_tokens": chunk,
            "seconds": best, "loss": loss.item(), "peak_mb": _peak_mb(device), "peak_mb_before": base_mb}


def _attention_ms(q, k, v, doc_ids, backend: str, repeat: int = 10) -> float:
    from slimpajama.train_minimal.attention import attend, context

    _, h, length, d = q.shape

    def step():
        ctx = context(h, d, True, None, length, doc_ids, q.device, q.dtype, backend)  # the mask each step, too
        attend(q, k, v, ctx).sum().backward()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeat * 1e3


def bench_attention() -> dict:
    """fwd+bwd ms of SDPA with the bias against FlexAttention, B x H x L x D of the issue's table."""
    from slimpajama.train_minimal.model import doc_ids_from_lens

    device = torch.device("cuda")
    out = []
    for b, h, length, d, docs in ((8, 8, 2048, 64, False), (2, 8, 8192, 64, False), (2, 8, 8192, 64, True),
                                  (4, 32, 2048, 80, False), (1, 32, 8192, 80, False)):
        doc_ids = None
        if docs:
            lens = torch.full((b, length // 700 + 1), 700)
            lens[:, -1] = length - 700 * (length // 700)
            doc_ids = doc_ids_from_lens(lens.to(device), length)
        q, k, v = (torch.randn(b, h, length, d, device=device, dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        row = {"shape": f"{b}x{h}x{length}x{d}", "doc_mask": docs}
        for backend in ("sdpa", "flex"):
            try:
                row[f"{backend}_ms"] = _attention_ms(q, k, v, doc_ids, backend)
            except torch.cuda.OutOfMemoryError:
                row[f"{backend}_ms"] = "out of memory"
            torch.cuda.empty_cache()
        if isinstance(row["sdpa_ms"], float) and isinstance(row["flex_ms"], float):
            row["speedup"] = row["sdpa_ms"] / row["flex_ms"]
        out.append(row)
    return {"device": torch.cuda.get_device_name(), "attention_fwd_bwd": out}


def synthetic_split(root: str, seq: int, rows: int, doc_len: int, seed: int = 0) -> str:
    """A packed split of random tokens in the shard format, documents of doc_len tokens (the last one cut)."""
    from slimpajama.io.writers import sha256_file
    from slimpajama.packers.format import same_lens, write_index, write_rows

    d = os.path.join(root, f"seq{seq}", "train")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, (rows, seq + 1), dtype=np.uint16)
    full, rest = divmod(seq + 1, doc_len)
    lens = np.array([doc_len] * full + ([rest] if rest else []), np.int32)
    path = os.path.join(d, "part-00000.arrow")
    write_rows(path, tokens, same_lens(lens, rows), np.zeros(rows, np.int32))
    write_index(d, {"seq_len": seq, "batch_rows": 1024, "rows": rows,
                    "files": [{"path": "part-00000.arrow", "rows": rows, "bytes": os.path.getsize(path),
                               "sha256": sha256_file(path)}]})
    return d


def bench_train(args) -> dict:
    from slimpajama.train_minimal.config import TrainConfig
    from slimpajama.train_minimal.train import WARMUP_STEPS_NOT_TIMED, Trainer

    device = _device()
    rows = max(1, args.tokens_per_step // args.seq)
    with tempfile.TemporaryDirectory() as tmp:
        split = synthetic_split(tmp, args.seq, max(rows * (args.steps + WARMUP_STEPS_NOT_TIMED), 64), args.doc_len)
        cfg = TrainConfig(stage1=split, out=os.path.join(tmp, "run"), preset=args.train,
                          steps=args.steps + WARMUP_STEPS_NOT_TIMED, tokens_per_step=args.tokens_per_step,
                          micro_batch_rows=args.micro_batch_rows, warmup_steps=1, doc_mask=args.doc_mask,
                          attention=args.attention_backend, compile=None if args.compile == "auto" else
                          args.compile == "on", checkpointing=args.checkpointing, log_every=10**9,
                          eval_every=10**9, checkpoint_every=10**9, device=device.type,
                          peak_tflops=args.peak_tflops)
        try:
            t = Trainer(cfg)
            t.train(log=lambda m: None)
        except torch.cuda.OutOfMemoryError:
            return {"preset": args.train, "seq": args.seq, "result": "out of memory"}
        stats = t.throughput()[0]
        return {"preset": args.train, "device": t.device_name, "seq": args.seq, "rows_per_step": rows,
                "micro_batch_rows": t.micro[0], "doc_mask": args.doc_mask, "attention": t.attention,
                "compiled": t.compiled, "checkpointing": args.checkpointing, "parameters": t.n_params,
                "tokens_per_s": stats["tokens_per_s"], "median_step_s": stats["median_step_s"],
                "mfu": stats["mfu"], "data_wait_fraction": stats["data_wait_fraction"],
                "peak_mb": _peak_mb(device), "final_loss": t.history[-1]["loss"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loss", choices=["fused", "plain"])
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--chunk-tokens", type=int, default=8192)
    ap.add_argument("--attention", action="store_true")
    ap.add_argument("--train")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--tokens-per-step", type=int, default=65536)
    ap.add_argument("--micro-batch-rows", type=int)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (after the warm-up steps)")
    ap.add_argument("--doc-mask", action="store_true")
    ap.add_argument("--doc-len", type=int, default=700)
    ap.add_argument("--attention-backend", default="auto")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--peak-tflops", type=float)
    args = ap.parse_args()
    if args.loss:
        out = bench_loss(args.loss, args.tokens, args.dim, args.chunk_tokens)
    elif args.attention:
        out = bench_attention()
    else:
        out = bench_train(args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
