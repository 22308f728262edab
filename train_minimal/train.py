"""Train the BTLM-style model on packed shards through the public reader API (PackedDataset, PackedSampler).

BTLM's recipe, scaled down: AdamW(0.9, 0.95, eps 1e-8, wd 0.1), grad clip 1.0, linear warmup then linear decay to
0.0085 x peak, and the variable context schedule: stage 1 on the short-sequence shards, stage 2 on the long ones
with the same tokens per step (rows scaled by seq1/seq2), one LR schedule across both.

A step is `rows` rows of the stage's packed split (tokens per step / seq), split evenly across the processes
(torchrun: DDP, each rank reading its own strided part of the same seeded permutation) and, within a process, into
micro-batches of gradient accumulation. The loss is the global mean over the step's labelled tokens whatever the
split, so 1 process, N processes and any micro-batch size train the same model (up to float summation order).

Checkpoints hold the model, optimizer, step and each stage's data position (global rows consumed), so a resumed
run, with the same or another number of processes, continues with the same losses.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import asdict

import numpy as np
import torch

from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.packers import PackedDataset, ShardReader
from slimpajama.packers.format import index_digest, index_path, read_index
from slimpajama.packers.pack import row_order

from . import distributed
from .attention import resolve_backend
from .config import RESUME_KEYS, TrainConfig, lr_at
from .feed import StageFeed
from .loss import IGNORE_INDEX
from .model import BTLM, doc_ids_from_lens, preset
from .report import unigram_entropy, write_report
from .throughput import flops_per_token, peak_flops


def _quiet(message: str) -> None:
    """The default log: library code prints nothing (the `train` command passes its own)."""


WARMUP_STEPS_NOT_TIMED = 3  # per stage and process: compilation and allocator warm-up are not throughput


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        if torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
            raise SlimPajamaError("--device cuda but torch sees no CUDA device (a CPU build of torch, or no GPU): "
                                  "use --device cpu, or install a CUDA build (make install TORCH=...)")
        self.world = distributed.init(cfg.device)
        self.device = self.world.device(cfg.device)
        self.cuda = self.device.type == "cuda"
        self.attention = resolve_backend(cfg.attention, self.device)
        if self.attention == "flex" and not self.cuda:
            raise SlimPajamaError("--attention flex trains on CUDA only (FlexAttention has no backward pass on the "
                                  "CPU): use --attention sdpa")
        torch.manual_seed(cfg.seed)
        self.stage_dirs = [cfg.stage1] + ([cfg.stage2] if cfg.stage2 else [])
        self.feeds = [StageFeed(d, rank=self.world.rank, world_size=self.world.size, seed=cfg.seed)
                      for d in self.stage_dirs]
        if index_path(self.validation_dir()) is None:  # now, not after training
            raise SlimPajamaError(f"no packed validation split at {self.validation_dir()}: pass --validation")
        self.splits = self.split_digests()  # the data's identity, part of every checkpoint's resume key
        self.seqs = [f.reader.seq_len for f in self.feeds]
        self.rows = [max(1, cfg.tokens_per_step // s) for s in self.seqs]  # rows per step, all processes
        self.micro = [self._plan_micro(s) for s in range(len(self.seqs))]  # rows per forward, per process
        longest = max(self.seqs)
        self.vocab_size = self.shards_vocab()
        with torch.device(self.device):  # initialized where it trains (btlm-3b: 10.6 GB never passes the CPU)
            model = BTLM(preset(cfg.preset, n_positions=max(2 * longest, 2048), vocab_size=self.vocab_size),
                         attention=self.attention,
                         checkpointing=cfg.checkpointing)
        self.compiled = self.cuda if cfg.compile is None else cfg.compile
        if self.compiled:
            # shapes: each stage's micro-batch, evaluation, the 2x-length check, a short last micro-batch
            dynamo = torch._dynamo.config
            limit = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"  # torch < 2.6
            setattr(dynamo, limit, max(getattr(dynamo, limit), 32))
            model.compile_blocks()
        self.model = model
        self.ddp = model
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(model, device_ids=[self.device.index] if self.cuda else None)
        self.opt = torch.optim.AdamW(model.get_mup_param_groups(cfg.lr, cfg.weight_decay), betas=(0.9, 0.95),
                                     eps=1e-8, fused=self.cuda)
        self.workers = (2 if self.cuda else 0) if cfg.loader_workers is None else cfg.loader_workers
        self.n_params = sum(p.numel() for p in model.parameters())
        self.peak, self.device_name = peak_flops(self.device, cfg.peak_tflops)
        self.step = 0
        self.history: list[dict] = []
        os.makedirs(cfg.out, exist_ok=True)

    def _plan_micro(self, stage: int) -> int:
        """Rows per micro-batch for a stage: --micro-batch-rows is in rows at the stage-1 length; a longer stage
        keeps its tokens per micro-batch (at least one row)."""
        cfg, world, rows, seq = self.cfg, self.world, self.rows[stage], self.seqs[stage]
        where = f"stage {stage + 1} (seq {seq}): --tokens-per-step {cfg.tokens_per_step:,} is {rows} rows"
        have = len(self.feeds[stage].reader)
        if have < rows:
            raise SlimPajamaError(f"{where} per step but {self.stage_dirs[stage]} holds {have} rows: lower "
                                  "--tokens-per-step or pack more data")
        if rows % world.size:
            raise SlimPajamaError(f"{where}, which {world.size} processes cannot share evenly: pick a multiple of "
                                  f"{world.size * seq:,} tokens")
        per_rank = rows // world.size
        if cfg.micro_batch_rows is None:
            return per_rank
        micro = min(per_rank, max(1, cfg.micro_batch_rows * self.seqs[0] // seq))
        if per_rank % micro:
            raise SlimPajamaError(f"{where} per step, {per_rank} per process, not a multiple of {micro} rows per "
                                  "micro-batch: pick --micro-batch-rows that divides it")
        return micro

    def stage_of(self, step: int) -> int:
        if len(self.stage_dirs) == 1:
            return 0
        return 0 if step < round(self.cfg.steps * self.cfg.stage1_fraction) else 1

    # -------------------------------------------------------------------------------------------- checkpoints

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.cfg.out, "checkpoint.pt")

    def save(self) -> None:
        if self.world.main:
            state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                     "data": [f.state() for f in self.feeds],
                     "history": self.history, "config": asdict(self.cfg), "rng": torch.get_rng_state(),
                     "splits": self.splits}
            tmp = self.ckpt_path + ".tmp"
            torch.save(state, tmp)
            os.replace(tmp, self.ckpt_path)
        self.world.barrier()  # nobody runs ahead of a checkpoint that a crash would fall back to

    def load(self) -> bool:
        if not os.path.exists(self.ckpt_path):
            return False
        try:
            state = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
            saved = state.get("config", {})
        except Exception as e:  # noqa: BLE001 - truncated or overwritten: whatever torch.load raises for it
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise SlimPajamaError(f"{self.ckpt_path} is damaged ({why}): start over with --no-resume (or restore "
                                  "the file)") from None
        changed = [k for k in RESUME_KEYS if k in saved and saved[k] != getattr(self.cfg, k)]
        if changed or len(state["data"]) != len(self.feeds) or any("rows" not in d for d in state["data"]):
            what = ", ".join(f"--{k.replace('_', '-')} {saved[k]} (now {getattr(self.cfg, k)})" for k in changed)
            raise SlimPajamaError(f"{self.cfg.out} holds a checkpoint of another run ("
                                  f"{what or 'other stages, or an older version'}): rerun with its settings, or "
                                  "start over with --no-resume or another --out")
        saved_splits, now = state.get("splits") or {}, self.splits
        other = [k for k in now if saved_splits.get(k) != now[k]]
        if other:
            raise SlimPajamaError(
                f"{self.cfg.out} holds a checkpoint of a run on other data (not the packed splits it trained on: "
                + ", ".join(f"--{k} {self.split_dir(k)}" for k in other) + "): rerun with its data, or start over "
                "with --no-resume or another --out")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.step = state["step"]
        self.history = state["history"]
        for feed, s in zip(self.feeds, state["data"], strict=True):
            feed.restore(s)
        torch.set_rng_state(state["rng"])
        return True

    # -------------------------------------------------------------------------------------------- data

    def _step_batches(self, stage: int) -> list[dict]:
        feed = self.feeds[stage]
        for other in self.feeds:
            if other is not feed:
                other.close()
        # workers keep a whole step (and one more micro-batch each) ready while the GPU computes the last one
        accumulation = self.rows[stage] // self.world.size // self.micro[stage]
        feed.open(self.micro[stage], self.workers, self.cuda, -(-accumulation // max(self.workers, 1)) + 1)
        return feed.step(self.rows[stage] // self.world.size, self.micro[stage])

    def _to_device(self, batch: dict) -> tuple:
        ids = batch["input_ids"].to(self.device, non_blocking=True)
        labels = batch["labels"].to(self.device, non_blocking=True)
        doc_ids = None
        if self.cfg.doc_mask:
            doc_ids = doc_ids_from_lens(batch["doc_lens"].to(self.device, non_blocking=True), ids.shape[1])
        return ids, labels, doc_ids

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda)

    # -------------------------------------------------------------------------------------------- training

    def _train_step(self, stage: int) -> tuple[float, float, float]:
        """One optimizer step over the step's rows: (global mean loss, grad norm, seconds waiting for data)."""
        t0 = time.perf_counter()
        batches = [self._to_device(b) for b in self._step_batches(stage)]
        wait = time.perf_counter() - t0
        world = self.world
        # the step's labelled tokens, all processes: each micro-batch's loss sum is divided by it, so gradients
        # (summed over micro-batches, averaged by DDP over processes, hence x world.size) are the global mean's
        count = world.all_sum(sum((labels != IGNORE_INDEX).sum() for _, labels, _ in batches).double())
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        self.opt.zero_grad(set_to_none=True)
        for i, (ids, labels, doc_ids) in enumerate(batches):
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or not world.distributed else self.ddp.no_sync()
            with sync:
                with self._autocast():
                    loss_sum = self.ddp(ids, doc_ids, labels=labels)
                (loss_sum * (world.size / count).float()).backward()
            total += loss_sum.detach().double()
        loss = world.all_sum(total) / count
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()
        return float(loss), float(gnorm), wait

    def train(self, max_steps: int | None = None, log=_quiet) -> list[dict]:
        cfg = self.cfg
        self.model.train()
        end = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        since: dict = {"time": 0.0, "wait": 0.0, "tokens": 0, "flops": 0.0}
        timed_in_stage = {}
        while self.step < end:
            stage = self.stage_of(self.step)
            if stage not in timed_in_stage:
                timed_in_stage[stage] = 0
                if self.cuda:
                    torch.cuda.reset_peak_memory_stats(self.device)
            lr = lr_at(self.step, cfg)
            for g in self.opt.param_groups:
                g["lr"] = lr * g["lr_scale"]
            t0 = time.perf_counter()
            try:
                loss, gnorm, wait = self._train_step(stage)  # float(loss) waited for the GPU
            except torch.cuda.OutOfMemoryError:
                raise SlimPajamaError(self._oom_message(stage)) from None
            seconds = time.perf_counter() - t0
            tokens = self.rows[stage] * self.seqs[stage]
            self.step += 1
            rec = {"step": self.step, "stage": stage + 1, "seq_len": self.seqs[stage], "lr": lr, "loss": loss,
                   "grad_norm": gnorm, "tokens": tokens}
            timed_in_stage[stage] += 1
            if timed_in_stage[stage] > WARMUP_STEPS_NOT_TIMED:
                rec.update(step_s=seconds, data_wait_s=wait)
            since["time"] += seconds
            since["wait"] += wait
            since["tokens"] += tokens
            since["flops"] += tokens * self._flops_per_token(stage)
            self.history.append(rec)
            if self.step % cfg.log_every == 0 or self.step == end:
                log(self._log_line(rec, since))
                since = dict.fromkeys(since, 0)
            if self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                rec["val_loss"] = self.evaluate()
                log(f"  validation loss {rec['val_loss']:.4f}")
            if self.step % cfg.checkpoint_every == 0 or self.step == end:
                self.save()
        return self.history

    def _flops_per_token(self, stage: int) -> float:
        c = self.model.cfg
        return flops_per_token(self.n_params, c.n_layer, c.n_embd, self.seqs[stage])

    def _mfu(self, flops_per_s: float) -> float | None:
        """FLOP/s of all processes over their devices' peak (None where the peak is unknown)."""
        return flops_per_s / (self.peak * self.world.size) if self.peak else None

    def peak_memory_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**30 if self.cuda else None

    def _log_line(self, rec: dict, since: dict) -> str:
        tok_s = since["tokens"] / since["time"]  # tokens of all processes (rows per step are global)
        line = (f"step {rec['step']}/{self.cfg.steps} stage {rec['stage']} seq {rec['seq_len']} "
                f"tokens {sum(h['tokens'] for h in self.history):,} loss {rec['loss']:.4f} lr {rec['lr']:.2e} "
                f"{tok_s:,.0f} tok/s")
        if self.peak:
            line += f" MFU {self._mfu(since['flops'] / since['time']):.1%}"
        line += f" data wait {since['wait'] / since['time']:.1%}"
        if self.cuda:
            line += f" mem {self.peak_memory_gib():.1f} GiB"
        return line

    def _oom_message(self, stage: int) -> str:
        micro, seq = self.micro[stage], self.seqs[stage]
        hints = [f"lower --micro-batch-rows (now {self.cfg.micro_batch_rows or self.micro[0]} at seq {self.seqs[0]})"
                 if micro > 1 else "one row per micro-batch already: a smaller --preset or shorter shards"]
        if not self.cfg.checkpointing:
            hints.append("add --checkpointing")
        if self.attention == "sdpa" and self.cuda:
            hints.append("use --attention flex (no (L, L) bias)")
        return (f"out of GPU memory at step {self.step + 1} (--preset {self.cfg.preset}, {micro} rows x {seq} tokens "
                f"per micro-batch{', --doc-mask' if self.cfg.doc_mask else ''}): {'; '.join(hints)}. Tokens per step "
                "stay the same; the run folder keeps its last checkpoint")

    # -------------------------------------------------------------------------------------------- evaluation

    def split_dir(self, name: str) -> str:
        return {"stage1": self.cfg.stage1, "stage2": self.cfg.stage2, "validation": self.validation_dir()}[name]

    def split_digests(self) -> dict[str, str]:
        """Each packed split's identity (its index's digest): part of what a checkpoint resumes only with."""
        out = {f"stage{i + 1}": f.reader.digest for i, f in enumerate(self.feeds)}
        out["validation"] = index_digest(read_index(self.validation_dir()))
        return out

    def shards_vocab(self) -> int:
        """The embedding's size: the vocabulary of the shards' tokenizer (their index), the same in every split."""
        indexes = {d: read_index(d) for d in [*self.stage_dirs, self.validation_dir()]}
        tokenizers = {(i.get("encoding"), (i.get("tokenizer") or {}).get("sha256"), i.get("vocab_size"))
                      for i in indexes.values()}
        if len(tokenizers) > 1:
            raise SlimPajamaError("the training and validation shards were tokenized differently (" + "; ".join(
                f"{d}: {i.get('encoding')}, vocab {i.get('vocab_size')}" for d, i in indexes.items()) +
                "): pack every split from one token cache")
        vocab = next(iter(tokenizers))[2]
        return int(vocab) if vocab else 50257  # shards from before the index held it: GPT-2's

    def validation_dir(self) -> str:
        return self.cfg.validation or storage.join(storage.parent(self.cfg.stage1.rstrip("/")), "validation")

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean validation loss per token over the first eval_rows rows of the stage-1 validation split, shared
        among the processes."""
        reader_dir = self.validation_dir()
        ds = PackedDataset(reader_dir)
        n = min(len(ds), self.cfg.eval_rows)
        if n == 0:
            raise SlimPajamaError(f"no validation rows in {reader_dir}")
        mine = list(range(self.world.rank, n, self.world.size))
        self.model.eval()
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device, dtype=torch.float64)
        for lo in range(0, len(mine), self.micro[0]):
            ids, labels, doc_ids = self._to_device(PackedDataset.collate([ds[i] for i in mine[lo: lo + self.micro[0]]]))
            with self._autocast():
                total += self.model(ids, doc_ids, labels=labels).double()
            count += (labels != IGNORE_INDEX).sum()
        self.model.train()
        return float(self.world.all_sum(total) / self.world.all_sum(count))

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
        if len(stream) <= length:  # a small holdout: the longest window it has, if longer than the training length
            length = len(stream) - 1
            if length <= max(self.seqs):
                return {"length": length, "trained_length": max(self.seqs), "windows": 0,
                        "skipped": f"the validation split has {len(stream):,} tokens, not more than the trained "
                                   f"length {max(self.seqs):,}: hold out more documents (release --holdout)"}
        windows = min(max_windows, (len(stream) - 1) // length)
        self.model.eval()
        out = {}
        saved = self.model.cfg.alibi_scaling
        for name, scaling in (("no_scaling", None),
                              ("alibi_linear_scaling", {"type": "linear", "train_seq_len": max(self.seqs)})):
            self.model.cfg.alibi_scaling = scaling
            losses = torch.zeros(length, dtype=torch.float64)
            for w in range(windows):
                seg = torch.from_numpy(stream[w * length: (w + 1) * length + 1].astype(np.int64)).to(self.device)
                with self._autocast():
                    losses += self.model(seg[None, :-1], labels=seg[None, 1:], reduction="none")[0].double().cpu()
            out[name] = (losses / windows).tolist()
        self.model.cfg.alibi_scaling = saved
        self.model.train()
        return {"length": length, "trained_length": max(self.seqs), "windows": windows, **out}

    def throughput(self) -> list[dict]:
        """Per stage, from the steps this process timed: tokens/s, MFU, data-wait fraction, peak GPU memory."""
        out = []
        for stage, seq in enumerate(self.seqs):
            timed = [h for h in self.history if h["stage"] == stage + 1 and "step_s" in h]
            if not timed:
                continue
            step_s = statistics.median(h["step_s"] for h in timed)
            tok_s = self.rows[stage] * seq / step_s
            fpt = self._flops_per_token(stage)
            out.append({"stage": stage + 1, "seq_len": seq, "timed_steps": len(timed),
                        "median_step_s": step_s, "tokens_per_s": tok_s,
                        "data_wait_fraction": sum(h["data_wait_s"] for h in timed) / sum(h["step_s"] for h in timed),
                        "flops_per_token": fpt,
                        "mfu": self._mfu(tok_s * fpt)})
        return out


def run(cfg: TrainConfig, resume: bool = True, log=_quiet) -> dict | None:
    """Train, evaluate and report. Under torchrun every process calls this; the first one logs, writes the report
    and returns the result, the others return None."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    trainer = Trainer(cfg)
    world = trainer.world
    log = log if world.main else (lambda m: None)
    try:
        result = _run(trainer, cfg, resume, log)
        # every rank leaves together: one tearing its gloo/NCCL group down while another still works (the main
        # rank's report) can abort it at exit ("terminate called without an active exception")
        world.barrier()
        return result
    finally:
        distributed.shutdown(world)


def _run(trainer: Trainer, cfg: TrainConfig, resume: bool, log) -> dict | None:
    world = trainer.world
    if resume and trainer.load():
        log(f"resumed at step {trainer.step}")
    log(f"model {cfg.preset}: {trainer.n_params / 1e6:.1f}M parameters on {world.size} x {trainer.device_name}"
        f" ({trainer.attention} attention{', compiled' if trainer.compiled else ''}"
        f"{', checkpointing' if cfg.checkpointing else ''}); stages (seq, rows per step, rows per micro-batch "
        f"per process): {list(zip(trainer.seqs, trainer.rows, trainer.micro, strict=True))}")
    stop = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
    trainer.train(max_steps=max(0, stop - trainer.step), log=log)
    if trainer.step < cfg.steps:
        log(f"stopped at step {trainer.step} of {cfg.steps} (--stop-at): the same command continues")
        return {"stopped_at": trainer.step, "steps": cfg.steps, "out": cfg.out} if world.main else None
    try:
        final = trainer.evaluate()
    except torch.cuda.OutOfMemoryError:
        raise SlimPajamaError(trainer._oom_message(0)) from None
    if not world.main:
        return None
    entropy = unigram_entropy(trainer.stage_dirs, trainer.vocab_size)
    positions = trainer.per_position_loss(2 * max(trainer.seqs))
    if positions["windows"]:
        log(f"per-position loss over {positions['windows']} windows of {positions['length']:,} tokens")
    else:
        log(f"per-position check skipped: {positions['skipped']}")
    log(f"validation loss {final:.4f} nats/token vs unigram entropy of the training tokens {entropy:.4f}"
        f" -> {'below' if final < entropy else 'NOT below'}")
    write_report(trainer, cfg.out, final, entropy, positions)
    return {"validation_loss": final, "unigram_entropy": entropy, "steps": trainer.step,
            "per_position": {k: float(np.mean(v[max(trainer.seqs):])) for k, v in positions.items()
                             if isinstance(v, list)} or positions.get("skipped"),
            "throughput": trainer.throughput(), "out": cfg.out}
