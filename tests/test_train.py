import json
import math
import os
import pathlib
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slimpajama.core.release import ReleaseConfig
from slimpajama.io.discover import discover
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
from slimpajama.pipelines.pack import run_shards
from slimpajama.pipelines.release import run_release
from slimpajama.pipelines.tokens import run_tokenize
from slimpajama.train_minimal.attention import alibi_factor, alibi_slopes, attention_bias
from slimpajama.train_minimal.config import FINAL_LR_FRACTION, TrainConfig, lr_at
from slimpajama.train_minimal.model import BTLM, BTLMConfig, count_parameters, doc_ids_from_lens, preset
from slimpajama.train_minimal.report import unigram_entropy
from slimpajama.train_minimal.train import Trainer


def test_btlm_3b_has_its_real_size_on_the_meta_device():
    with torch.device("meta"):
        model = BTLM(preset("btlm-3b"))
    cfg = model.cfg
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.vocab_size) == (32, 2560, 32, 6826, 50257)
    assert cfg.mup_width_scale == pytest.approx(0.1) and cfg.mup_embeddings_scale == 14.6
    assert 2.6e9 < count_parameters(model) < 2.7e9
    assert model.wte.weight.is_meta


def test_alibi_slopes_and_position_interpolation():
    assert alibi_slopes(8).tolist() == pytest.approx([2 ** -(i + 1) for i in range(8)])
    assert alibi_slopes(32)[0] == pytest.approx(2 ** -0.25)
    assert len(alibi_slopes(12)) == 12
    scaling = {"type": "linear", "train_seq_len": 1024}
    assert alibi_factor(scaling, 512) == 1.0 and alibi_factor(scaling, 4096) == 4.0
    assert alibi_factor({"type": "linear", "factor": 2.0}, 10) == 2.0
    b = attention_bias(alibi_slopes(2), 4, None, torch.float32)[0]
    assert b[0, 3, 1] == pytest.approx(-2 * alibi_slopes(2)[0]) and b[0, 1, 3] == float("-inf")


def test_document_mask_isolates_documents():
    torch.manual_seed(0)
    model = BTLM(BTLMConfig(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_inner=64, mup_width_scale=8.0))
    lens = torch.tensor([[5, 11]])
    ids = torch.randint(0, 100, (1, 16))
    other = ids.clone()
    other[0, :5] = torch.randint(0, 100, (5,))
    doc_ids = doc_ids_from_lens(lens, 16)
    assert doc_ids[0].tolist() == [0] * 5 + [1] * 11
    a, b = model(ids, doc_ids), model(other, doc_ids)
    assert torch.allclose(a[0, 5:], b[0, 5:], atol=1e-5)  # the second document never sees the first
    assert not torch.allclose(model(ids)[0, 5:], model(other)[0, 5:], atol=1e-5)


def test_mup_param_groups_and_init():
    torch.manual_seed(0)
    cfg = preset("small")
    model = BTLM(cfg)
    groups = model.get_mup_param_groups(lr=1e-2, weight_decay=0.1)
    embed, hidden, no_decay = groups
    assert embed["lr"] == 1e-2 and embed["params"][0] is model.wte.weight
    assert hidden["lr"] == pytest.approx(1e-2 * cfg.mup_width_scale) and all(p.ndim == 2 for p in hidden["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim == 1 for p in no_decay["params"])
    hidden_std = 0.073 * math.sqrt(cfg.mup_width_scale)
    assert model.wte.weight.std().item() == pytest.approx(0.073, rel=0.02)
    assert model.h[0].attn.c_attn.weight.std().item() == pytest.approx(hidden_std, rel=0.05)
    assert model.h[0].mlp.c_proj.weight.std().item() == pytest.approx(hidden_std / math.sqrt(2 * cfg.n_layer),
                                                                      rel=0.05)


def _coordinate_changes(width: int, mup: bool, steps: int = 5, lr: float = 1e-2) -> np.ndarray:
    """Mean |change| of the logits and of each block's output after a few Adam steps, at one width."""
    torch.manual_seed(0)
    cfg = BTLMConfig(vocab_size=512, n_positions=64, n_embd=width, n_layer=2, n_head=4, n_inner=width * 8 // 3,
                     use_mup=mup, mup_width_scale=64 / width if mup else 1.0, initializer_range=0.073 if mup else 0.02)
    model = BTLM(cfg)
    groups = model.get_mup_param_groups(lr, 0.0) if mup else [{"params": list(model.parameters()), "lr": lr}]
    opt = torch.optim.Adam(groups, lr=lr)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 512, (8, 32), generator=g), torch.randint(0, 512, (8, 32), generator=g)
    with torch.no_grad():
        l0, h0 = model(x, return_hidden=True)
    for _ in range(steps):
        loss = F.cross_entropy(model(x).reshape(-1, 512), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        l1, h1 = model(x, return_hidden=True)
    return np.array([float((l1 - l0).abs().mean())] + [float((b - a).abs().mean()) for a, b in zip(h0, h1,
                                                                                                      strict=True)])


def test_mup_coordinate_check():
    """Under muP the size of the update to every layer's activations is about the same at widths 64/128/256; under
    standard parameterization it grows with width."""
    widths = (64, 128, 256)
    mup = np.stack([_coordinate_changes(w, True) for w in widths])
    sp = np.stack([_coordinate_changes(w, False) for w in widths])
    mup_spread = mup.max(axis=0) / mup.min(axis=0)
    sp_growth = sp[-1] / sp[0]
    assert (mup_spread < 2.0).all(), mup
    assert sp_growth[0] > 2.5 and (sp_growth[1:] > 5).all(), sp


def test_schedule_warmup_decay_and_stages():
    cfg = TrainConfig(stage1="x", steps=100, warmup_steps=10, lr=1e-3)
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(100, cfg) == pytest.approx(1e-3 * FINAL_LR_FRACTION)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 100))


@pytest.fixture(scope="module")
def shards(sample_corpus, tmp_path_factory, ray_session):
    raw, _ = sample_corpus
    root = tmp_path_factory.mktemp("train")
    run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(str(raw))), str(root / "n"), progress=False)
    run_release(str(root / "n"), str(root / "r"), ReleaseConfig(holdout=0.05), progress=False)
    run_tokenize(str(root / "r"), str(root / "t"), progress=False)
    a = run_shards(str(root / "t" / "gpt2"), str(root / "s"), 64, range_=(0, 0.75), progress=False)
    b = run_shards(str(root / "t" / "gpt2"), str(root / "s"), 256, range_=(0.75, 1), progress=False)
    return f"{a.out_dir}/train", f"{b.out_dir}/train"


def test_two_stage_schedule_keeps_tokens_per_step(shards, tmp_path):
    cfg = TrainConfig(stage1=shards[0], stage2=shards[1], out=str(tmp_path), steps=8, tokens_per_step=256,
                      warmup_steps=2, eval_every=1000, log_every=1000)
    t = Trainer(cfg)
    t.train(log=lambda m: None)
    assert [h["seq_len"] for h in t.history] == [64] * 6 + [256] * 2
    assert {h["tokens"] for h in t.history} == {256}  # 4 rows of 64, then 1 row of 256
    assert np.isfinite([h["loss"] for h in t.history]).all()


def test_resume_continues_with_the_same_losses(shards, tmp_path):
    def cfg(out):
        return TrainConfig(stage1=shards[0], stage2=shards[1], out=str(out), steps=6, tokens_per_step=128,
                           warmup_steps=2, checkpoint_every=3, eval_every=1000, log_every=1000, seed=3)

    straight = Trainer(cfg(tmp_path / "a"))
    straight.train(log=lambda m: None)
    first = Trainer(cfg(tmp_path / "b"))
    first.train(max_steps=3, log=lambda m: None)  # "killed" after the step-3 checkpoint
    resumed = Trainer(cfg(tmp_path / "b"))
    assert resumed.load() and resumed.step == 3
    resumed.train(log=lambda m: None)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], abs=1e-5)


def test_unigram_entropy_by_hand(tmp_path):
    import json

    from slimpajama.io.writers import sha256_file
    from slimpajama.packers.format import FORMAT, FORMAT_VERSION, same_lens, write_rows

    rows = np.array([[0, 1, 1, 2], [0, 2, 2, 2]], dtype=np.uint16)  # labels (row[1:]): 1 1 2 2 2 2
    write_rows(str(tmp_path / "part-00000.arrow"), rows, same_lens([4], 2), np.zeros(2, np.int32))
    f = tmp_path / "part-00000.arrow"
    (tmp_path / "index.json").write_text(json.dumps({
        "format": FORMAT, "version": FORMAT_VERSION, "seq_len": 3, "batch_rows": 1024, "rows": 2,
        "files": [{"path": f.name, "rows": 2, "bytes": f.stat().st_size, "sha256": sha256_file(str(f))}]}))
    expected = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    assert unigram_entropy([str(tmp_path)], vocab=3) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------ the GPU path


def _logits(model, ids, doc_ids, backend):
    model.attention = backend
    with torch.no_grad():
        return model(ids, doc_ids)


@pytest.mark.parametrize("scaling", [None, {"type": "linear", "train_seq_len": 64}])
def test_flex_attention_gives_the_sdpa_logits_without_an_l_by_l_tensor(scaling):
    """FlexAttention (ALiBi score_mod, causal and per-document block masks) against the reference SDPA with the
    materialized bias; 200 tokens (not a multiple of the 128-token blocks), ALiBi interpolation on and off."""
    from slimpajama.train_minimal.attention import context

    torch.manual_seed(0)
    model = BTLM(preset("tiny", vocab_size=1000, alibi_scaling=scaling)).eval()
    ids = torch.randint(0, 1000, (2, 200))
    doc_ids = doc_ids_from_lens(torch.tensor([[50, 100, 50], [200, 0, 0]]), 200)
    for docs in (None, doc_ids):
        ref, flex = _logits(model, ids, docs, "sdpa"), _logits(model, ids, docs, "flex")
        assert torch.allclose(ref, flex, atol=1e-3, rtol=1e-4), (ref - flex).abs().max()
    masked, unmasked = _logits(model, ids, doc_ids, "flex"), _logits(model, ids, None, "flex")
    assert torch.allclose(masked[1], unmasked[1], atol=1e-4)  # one document: the same
    assert not torch.allclose(masked[0, 50:], unmasked[0, 50:], atol=1e-2)  # later documents see less
    ctx = context(4, 32, True, scaling, 200, doc_ids, torch.device("cpu"), torch.float32, "flex")
    assert ctx.bias is None and ctx.block_mask is not None


def test_compiled_blocks_train_like_eager_and_compiled_flex_evaluates_like_sdpa():
    """torch.compile of the blocks (the CUDA default) traces the same model: equal losses over 3 AdamW steps with
    a document mask, and compiled FlexAttention (traced inside the compiled block, as on the GPU) gives the SDPA
    logits."""
    def train(compiled: bool) -> tuple[list[float], BTLM]:
        torch.manual_seed(0)
        model = BTLM(preset("tiny", vocab_size=1000), attention="sdpa", checkpointing=compiled)
        if compiled:
            model.compile_blocks()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(1)
        doc_ids = doc_ids_from_lens(torch.tensor([[10, 54], [64, 0]]), 64)
        out = []
        for _ in range(3):
            ids, labels = torch.randint(0, 1000, (2, 64), generator=g), torch.randint(0, 1000, (2, 64), generator=g)
            loss = model(ids, doc_ids, labels=labels) / labels.numel()
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        return out, model

    eager, _ = train(False)
    compiled, model = train(True)  # with activation checkpointing around the compiled blocks, too
    assert compiled == pytest.approx(eager, rel=1e-5)
    model.eval()
    ids = torch.randint(0, 1000, (1, 128))
    assert torch.allclose(_logits(model, ids, None, "sdpa"), _logits(model, ids, None, "flex"), atol=1e-3)


@pytest.mark.parametrize("compiled", [False, True])
def test_fused_chunked_loss_equals_the_full_cross_entropy_in_value_and_gradient(compiled, monkeypatch):
    """The fused linear + cross-entropy (gradients computed chunk by chunk in the forward pass) against autograd
    through the full logits; `compiled`: the chunk as torch.compile builds it (the CUDA path)."""
    from slimpajama.train_minimal import loss

    if compiled:
        monkeypatch.setattr(loss, "_chunk_with_grads", torch.compile(loss._chunk_with_grads, dynamic=False))
    torch.manual_seed(0)
    hidden = torch.randn(3, 20, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    labels = torch.randint(0, 50, (3, 20))
    labels[1, 15:] = -100  # padding
    full = F.cross_entropy((hidden @ weight.T * 0.5).reshape(-1, 50), labels.reshape(-1), ignore_index=-100,
                           reduction="none")
    g_full = torch.autograd.grad(full.sum() * 3, (hidden, weight))
    fused = loss.loss_sum(hidden, weight, labels, 0.5, chunk_tokens=7)  # 9 chunks, the last one short
    g_fused = torch.autograd.grad(fused * 3, (hidden, weight))
    assert fused.item() == pytest.approx(full.sum().item(), rel=1e-6)
    for a, b in zip(g_full, g_fused, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    per_token = loss.token_losses(hidden, weight, labels, 0.5, chunk_tokens=7)
    assert per_token.shape == labels.shape and (per_token[1, 15:] == 0).all()
    assert torch.allclose(per_token.reshape(-1), full, atol=1e-5)


def _losses(shards, out, **kw) -> list[float]:
    cfg = TrainConfig(stage1=shards[0], stage2=shards[1], out=str(out), steps=6, tokens_per_step=512,
                      warmup_steps=2, eval_every=1000, log_every=1000, **kw)
    t = Trainer(cfg)
    t.train(log=lambda m: None)
    return [h["loss"] for h in t.history]


def test_micro_batches_and_loader_workers_train_the_same_model(shards, tmp_path):
    """Gradient accumulation (1 row per micro-batch at seq 64, so 1 row at 256) and DataLoader worker processes
    change what fits and how data arrives, not the losses."""
    whole = _losses(shards, tmp_path / "a")
    assert _losses(shards, tmp_path / "b", micro_batch_rows=1) == pytest.approx(whole, rel=1e-5)
    assert _losses(shards, tmp_path / "c", micro_batch_rows=4, loader_workers=2) == pytest.approx(whole, rel=1e-5)


def _train_cmd(shards, out, *extra) -> list[str]:
    return ["--stage1", shards[0], "--stage2", shards[1], "--out", str(out), "--steps", "6", "--tokens-per-step",
            "512", "--warmup-steps", "2", "--checkpoint-every", "2", "--log-every", "1", "--seed", "3", *extra]


def test_a_checkpoint_resumes_only_on_the_data_it_trained_on(shards, tmp_path):
    """Other packed splits (the same tokens packed with another seed) under the same --out: refused, nothing
    written; the same splits resume."""
    from click.testing import CliRunner

    from slimpajama.cli import main

    cache = pathlib.Path(shards[0]).parents[2] / "t" / "gpt2"
    other = run_shards(str(cache), str(tmp_path / "s"), 64, range_=(0, 0.75), seed=1, progress=False).out_dir
    run = tmp_path / "run"
    assert CliRunner().invoke(main, ["train", *_train_cmd(shards, run, "--stop-at", "2")]).exit_code == 0
    checkpoint = (run / "checkpoint.pt").read_bytes()
    r = CliRunner().invoke(main, ["train", *_train_cmd((f"{other}/train", shards[1]), run)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {run} holds a checkpoint of a run on other data (not the packed splits it trained on: --stage1 "
        f"{other}/train, --validation {other}/validation): rerun with its data, or start over with --no-resume or "
        "another --out")
    assert (run / "checkpoint.pt").read_bytes() == checkpoint and not (run / "metrics.json").exists()
    r = CliRunner().invoke(main, ["train", *_train_cmd(shards, run)])
    assert r.exit_code == 0 and "resumed at step 2" in r.stderr


def test_a_damaged_checkpoint_or_an_interrupt_says_what_to_do(shards, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from slimpajama.cli import main

    run = tmp_path / "run"
    run.mkdir()
    for damage in (b"", b"PK\x03\x04 not a checkpoint", b"12abc"):
        (run / "checkpoint.pt").write_bytes(damage)
        r = CliRunner().invoke(main, ["train", *_train_cmd(shards, run)])
        assert r.exit_code == 1 and "Traceback" not in r.output
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {run / 'checkpoint.pt'} is damaged (") and last.endswith(
            "start over with --no-resume (or restore the file)"), last

    import slimpajama.train_minimal.train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "run", interrupted)
    r = CliRunner().invoke(main, ["train", *_train_cmd(shards, tmp_path / "other")])
    assert r.exit_code == 130 and r.stderr.strip().splitlines()[-1] == (
        "error: interrupted (SIGINT); the run folder keeps its last checkpoint: rerun the same command to resume")


def _run_module(args, nproc: int = 1):
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] \
        if nproc > 1 else [sys.executable]
    r = subprocess.run([*launcher, "-m", "slimpajama.train_minimal", *args], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def _history(out) -> list[float]:
    with open(os.path.join(out, "metrics.json")) as f:
        return [h["loss"] for h in json.load(f)["history"]]


@pytest.mark.slow  # 98 s on 2 cores; the sampler's ranks are covered in `make test` by tests/test_sampler.py
def test_two_gloo_processes_train_like_one_and_resume(shards, tmp_path):
    """torchrun with two CPU processes (DDP over gloo, each reading its own half of every step's rows) logs the
    same global losses as one process with the same global batch; stopped at step 3 and rerun, it continues with
    the same losses; and `python -m slimpajama.train_minimal` is the `slimpajama train` command."""
    one = _run_module(_train_cmd(shards, tmp_path / "one", "--peak-tflops", "1"))
    _run_module(_train_cmd(shards, tmp_path / "two", "--micro-batch-rows", "2"), nproc=2)
    assert _history(tmp_path / "two") == pytest.approx(_history(tmp_path / "one"), rel=1e-4)
    stopped = _run_module(_train_cmd(shards, tmp_path / "resumed", "--stop-at", "3"), nproc=2)
    assert "stopped at step 3 of 6" in stopped.stderr and '"stopped_at": 3' in stopped.stdout
    resumed = _run_module(_train_cmd(shards, tmp_path / "resumed"), nproc=2)
    assert "resumed at step 3" in resumed.stderr
    assert resumed.stderr.count("step 6/6 ") == 1  # one process logs
    assert _history(tmp_path / "resumed") == pytest.approx(_history(tmp_path / "one"), rel=1e-4)
    # metrics: tokens/s, data wait and MFU by the stated FLOP count (the CPU's peak given by --peak-tflops)
    metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert metrics["run"]["processes"] == 1 and metrics["run"]["attention"] == "sdpa"
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())["run"]
    assert two["processes"] == 2 and two["micro_batch_rows"] == [2, 1] and two["rows_per_step"] == [8, 2]
    cfg, n = metrics["model"], metrics["parameters"]
    for t in metrics["throughput"]:
        assert t["flops_per_token"] == 6 * n + 6 * cfg["n_layer"] * cfg["n_embd"] * t["seq_len"]
        assert t["mfu"] == pytest.approx(t["tokens_per_s"] * t["flops_per_token"] / 1e12)
        assert 0 <= t["data_wait_fraction"] < 1 and t["timed_steps"] >= 1
    assert "MFU" in one.stderr and "data wait" in one.stderr
    from slimpajama.cli.train import train

    help_module = _run_module(["--help"]).stdout
    flags = [f for p in train.params for f in p.opts if f.startswith("--")]
    assert "--micro-batch-rows" in flags and all(f in help_module for f in flags)


def test_training_runs_without_the_corpus_stages_packages(shards, tmp_path):
    """A GPU box may have only torch, pyarrow, numpy, click, rich and matplotlib (the issue's had no ray,
    datasketch, ftfy, zstandard or orjson): the trainer, and the shard readers under it, import none of the rest."""
    import subprocess
    import sys

    blocker = ("import sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in {'ray', 'datasketch', 'ftfy', 'numba', 'zstandard', 'orjson', "
               "'tiktoken', 'scipy'}:\n"
               "            raise ImportError(name + ' is not installed here')\n"
               "sys.meta_path.insert(0, Block())\n"
               "import runpy\n"
               "sys.argv = ['train'] + sys.argv[1:]\n"
               "runpy.run_module('slimpajama.train_minimal', run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", blocker, *_train_cmd(shards, tmp_path / "bare", "--steps", "2")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 2


def test_settings_that_cannot_work_are_one_line(shards, tmp_path):
    from click.testing import CliRunner

    from slimpajama.cli import main

    def error(*extra) -> str:
        r = CliRunner().invoke(main, ["train", *_train_cmd(shards, tmp_path / "x", *extra)])
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 1 and "Traceback" not in r.output and lines[-1].startswith("error: "), r.output
        return lines[-1]

    assert "FlexAttention has no backward pass on the CPU" in error("--attention", "flex")
    assert "not a multiple of 3 rows per micro-batch" in error("--micro-batch-rows", "3")
    assert "torch sees no CUDA device" in error("--device", "cuda")
    assert "holds 1" not in error("--tokens-per-step", "100000000")  # names the split's row count
    assert "rows per step but" in error("--tokens-per-step", "100000000")
    lonely = tmp_path / "lonely" / "train"
    shutil.copytree(shards[0], lonely)  # no sibling validation split
    r = CliRunner().invoke(main, ["train", "--stage1", str(lonely), "--out", str(tmp_path / "y")])
    assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1] == \
        f"error: no packed validation split at {lonely.parent / 'validation'}: pass --validation"
    CliRunner().invoke(main, ["train", *_train_cmd(shards, tmp_path / "x", "--stop-at", "2")])
    assert "holds a checkpoint of another run (--preset tiny (now small))" in error("--preset", "small")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on one: pytest -k cuda)")
def test_on_cuda_compiled_flex_gives_the_sdpa_logits_in_bf16_and_trains(shards, tmp_path):
    """The GPU path itself: compiled blocks with FlexAttention against SDPA with the bias, bf16 autocast, with and
    without document masks; then a short training run with accumulation, checkpointing and loader workers."""
    torch.manual_seed(0)
    model = BTLM(preset("small", vocab_size=1000)).cuda().eval()
    model.compile_blocks()
    ids = torch.randint(0, 1000, (2, 1024), device="cuda")
    doc_ids = doc_ids_from_lens(torch.tensor([[300, 724], [1024, 0]], device="cuda"), 1024)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        for docs in (None, doc_ids):
            ref, flex = _logits(model, ids, docs, "sdpa").float(), _logits(model, ids, docs, "flex").float()
            assert (ref - flex).abs().max() < 0.05 * ref.abs().max(), (ref - flex).abs().max()
    cuda = _losses(shards, tmp_path / "cuda", device="cuda", micro_batch_rows=2, checkpointing=True, doc_mask=True,
                   loader_workers=2)
    assert np.isfinite(cuda).all() and cuda[-1] < 0.8 * cuda[0]  # (initialized by the GPU's RNG: not the CPU's)
