import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
from slimpajama.pipelines.release import run_release
from slimpajama.pipelines.tokens import run_shards, run_tokenize
from slimpajama.train_minimal.model import (
    BTLM,
    BTLMConfig,
    alibi_factor,
    alibi_slopes,
    attention_bias,
    count_parameters,
    doc_ids_from_lens,
    preset,
)
from slimpajama.train_minimal.train import FINAL_LR_FRACTION, TrainConfig, Trainer, lr_at, unigram_entropy

from slimpajama.readers import discover
from slimpajama.release import ReleaseConfig


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
    cfg = BTLMConfig(alibi_scaling={"type": "linear", "train_seq_len": 1024})
    assert alibi_factor(cfg, 512) == 1.0 and alibi_factor(cfg, 4096) == 4.0
    assert alibi_factor(BTLMConfig(alibi_scaling={"type": "linear", "factor": 2.0}), 10) == 2.0
    b = attention_bias(BTLMConfig(n_head=2), 4, None, "cpu", torch.float32)[0]
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

    from slimpajama.packers.format import FORMAT, FORMAT_VERSION, write_rows

    from slimpajama.writers import sha256_file

    rows = np.array([[0, 1, 1, 2], [0, 2, 2, 2]], dtype=np.uint16)  # labels (row[1:]): 1 1 2 2 2 2
    write_rows(str(tmp_path / "part-00000.arrow"), rows, [np.array([4], np.int32)] * 2, np.zeros(2, np.int32))
    f = tmp_path / "part-00000.arrow"
    (tmp_path / "index.json").write_text(json.dumps({
        "format": FORMAT, "version": FORMAT_VERSION, "seq_len": 3, "batch_rows": 1024, "rows": 2,
        "files": [{"path": f.name, "rows": 2, "bytes": f.stat().st_size, "sha256": sha256_file(str(f))}]}))
    expected = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    assert unigram_entropy([str(tmp_path)], vocab=3) == pytest.approx(expected)
