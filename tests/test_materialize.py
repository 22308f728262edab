"""Both packings gather their rows without Python per row (packers/pack.py): checked against the plain per-row
version on streams of several arrays (rows that cross from one array into the next, an empty array), documents
longer than a row, rows in any order, no rows."""

from __future__ import annotations

import numpy as np
import pytest

from slimpajama.packers.pack import TokenStream, bestfit_plan, concat_plan


def plain_concat(plan, stream, row_ids):
    w = plan.seq + 1
    tokens, lens = np.empty((len(row_ids), w), dtype=stream.arrays[0].dtype), []
    for j, r in enumerate(row_ids):
        p = plan.t0 + int(r) * plan.seq
        tokens[j] = stream.slice(p, p + w)
        lo, hi = np.searchsorted(plan.doc_starts, [p + 1, p + w])
        lens.append(np.diff(np.concatenate(([p], plan.doc_starts[lo:hi], [p + w]))))
    return tokens, lens, np.zeros(len(row_ids), np.int32)


def plain_bestfit(plan, stream, row_ids):
    w = plan.seq + 1
    tokens, lens = np.full((len(row_ids), w), plan.pad_id, dtype=stream.arrays[0].dtype), []
    for j, r in enumerate(row_ids):
        pos = 0
        for s, n in zip(plan.piece_start[plan.row_ptr[r]: plan.row_ptr[r + 1]],
                        plan.piece_len[plan.row_ptr[r]: plan.row_ptr[r + 1]], strict=True):
            tokens[j, pos: pos + n] = stream.slice(int(s), int(s) + int(n))
            pos += int(n)
        lens.append(plan.piece_len[plan.row_ptr[r]: plan.row_ptr[r + 1]])
    return tokens, lens, plan.padding()[row_ids]


def corpus(seed: int):
    rng = np.random.default_rng(seed)
    doc_lens = rng.integers(1, 300, size=500)
    doc_lens[::37] = rng.integers(600, 2000, size=len(doc_lens[::37]))  # longer than a row
    tokens = rng.integers(0, 50_000, size=int(doc_lens.sum())).astype(np.uint16)
    cuts = np.sort(rng.choice(len(tokens), size=6, replace=False))
    arrays = np.split(tokens, cuts)
    arrays.insert(3, tokens[:0])  # an empty cache file
    return TokenStream(arrays), np.concatenate(([0], np.cumsum(doc_lens)[:-1])), doc_lens, rng


def same(got, want) -> None:
    tokens, (values, offsets), padding = got
    w_tokens, w_lens, w_padding = want
    np.testing.assert_array_equal(tokens, w_tokens)
    np.testing.assert_array_equal(padding, w_padding)
    assert len(offsets) == len(w_lens) + 1 and offsets[0] == 0
    for j, lens in enumerate(w_lens):
        np.testing.assert_array_equal(values[offsets[j]: offsets[j + 1]], lens)


@pytest.fixture(params=["compiled", "plain loop"])
def copy_loop(request, monkeypatch):
    """Both copy loops: the compiled one (big calls) and the plain one (calls of fewer than PYTHON_RUNS runs)."""
    from slimpajama.packers import pack

    monkeypatch.setattr(pack, "PYTHON_RUNS", 0 if request.param == "compiled" else 10**9)


@pytest.mark.parametrize("seed", range(4))
def test_concat_rows_equal_the_plain_version(seed, copy_loop):
    stream, starts, lens, rng = corpus(seed)
    t0 = int(starts[7])
    plan = concat_plan(starts, t0, len(stream), 128)
    ids = rng.permutation(plan.rows)
    same(plan.materialize(stream, ids), plain_concat(plan, stream, ids))
    same(plan.materialize(stream, ids[:0]), plain_concat(plan, stream, ids[:0]))


@pytest.mark.parametrize("seed", range(4))
def test_bestfit_rows_equal_the_plain_version(seed, copy_loop):
    stream, starts, lens, rng = corpus(seed)
    plan, _ = bestfit_plan(starts, lens, 256, pad_id=50256, buffer_docs=64)
    ids = rng.permutation(plan.rows)
    want = plain_bestfit(plan, stream, ids)
    same(plan.materialize(stream, ids), want)
    same(plan.materialize(stream, ids[:0]), plain_bestfit(plan, stream, ids[:0]))


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_bestfit_plan_equals_the_plain_one(seed):
    """Same pieces, same rows, same cut count: documents longer than a row, of exactly a row, empty ones, buffers
    of 7 documents to the default."""
    from slimpajama.packers.pack import bestfit_plan_reference

    rng = np.random.default_rng(seed)
    seq = [16, 64, 256, 2048, 16, 64][seed]
    lens = rng.lognormal(np.log(seq / 3), 1.2, size=int(rng.integers(1, 4000))).astype(np.int64)
    lens[rng.random(len(lens)) < 0.05] = 0
    lens[rng.random(len(lens)) < 0.05] = seq + 1
    starts = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64)
    for buffer_docs in (7, 64, 8192):
        got, cut = bestfit_plan(starts, lens, seq, pad_id=0, buffer_docs=buffer_docs)
        want, want_cut = bestfit_plan_reference(starts, lens, seq, pad_id=0, buffer_docs=buffer_docs)
        assert cut == want_cut and got.rows == want.rows
        for field in ("piece_start", "piece_len", "row_ptr"):
            assert np.array_equal(getattr(got, field), getattr(want, field)), field
