"""The pack plan streamed from a split's cache files (pipelines/packplan.py) gives the bytes of a plan made from the
whole split in memory, whatever the read batches, best-fit calls and plan tasks, with one cache file open at a time
and memory that does not grow with the split."""

import math
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slimpajama.io.discover import InputFile
from slimpajama.io.writers import NpyAppender, save_shuffled_range
from slimpajama.packers.pack import (
    BestFitPlan,
    ChunkedPlan,
    TokenStream,
    bestfit_plan,
    concat_cut_docs,
    concat_plan,
    row_order,
)
from slimpajama.pipelines import packplan
from slimpajama.pipelines.packplan import OrderStage, PlanStage, plan_tasks, split_plan
from slimpajama.pipelines.stage import Task


def plan_task(files, split="train"):
    """The plan task of a split of cache docs files: its tokens files are named by size alone (uint16 tokens)."""
    tokens = tuple(InputFile(f.path + ".tokens.bin", f.rel, n * 2) for f, n in files)
    return Task(split, (), {"cache": {"eos": 0, "dtype": "uint16"}},
                side={"docs": tuple(f for f, _ in files), "tokens": tokens})


def plan_split(stage, split_task, out):
    """The split planned in this process, task by task: (its figures, its plan tasks)."""
    tasks, summary = plan_tasks(split_task, stage)
    figures = split_plan(summary, [stage.run_task(t, str(out)).extra for t in tasks])
    OrderStage(stage).run_task(Task(split_task.key, (), {"rows": figures["rows"]}), str(out))
    return figures, tasks


def cache_docs(tmp_path, rng, sizes, names_per_file, max_len=60):
    """Cache docs files (source, tokens) with differing source dictionaries; -> ([(file, its tokens)], lens,
    sources)."""
    files, lens, sources = [], [], []
    for k, (n, names) in enumerate(zip(sizes, names_per_file, strict=True)):
        src = [names[i] for i in rng.integers(0, len(names), n)] if n else []
        ln = rng.integers(1, max_len, n).astype(np.int32)
        ln[rng.random(n) < 0.02] = max_len * 3  # some longer than a row
        path = tmp_path / f"{k:03d}.docs.parquet"
        pq.write_table(pa.table({"source": pa.array(src, pa.string()), "tokens": pa.array(ln, pa.int32())}), path,
                       row_group_size=97)
        files.append((InputFile(str(path), f"train/{k:03d}.docs.parquet", path.stat().st_size), int(ln.sum())))
        lens += ln.tolist()
        sources += src
    return files, np.array(lens, np.int64), sources


def in_memory_plan(lens, sources, seq, packing, range_, seed, buffer_docs):
    """The plan of the whole split held in memory, tokens per source summed document by document."""
    starts = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64)
    total = int(lens.sum())
    d0, d1 = (int(np.searchsorted(starts, math.ceil(x * total))) for x in range_)
    d0, d1 = (d0, d1) if d1 > d0 else (0, 0)
    t0, t1 = (int(starts[d0]), int(starts[d1 - 1] + lens[d1 - 1])) if d1 > d0 else (0, 0)
    s, n = starts[d0:d1], lens[d0:d1]
    concat_cut = concat_cut_docs(s, n, t0, seq)
    if packing == "concat":
        plan = concat_plan(s, t0, t1, seq)
        end = t0 + plan.rows * seq + 1 if plan.rows else t0
        arrays, cut, padding = {"doc_starts": s}, concat_cut, 0
    else:
        end = None
        plan, cut = bestfit_plan(s, n, seq, pad_id=0, buffer_docs=buffer_docs)
        arrays = {"piece_start": plan.piece_start, "piece_len": plan.piece_len, "row_ptr": plan.row_ptr}
        padding = int(plan.padding().sum())
    per_source: dict[str, int] = {}
    for st, ln, src in zip(s.tolist(), n.tolist(), sources[d0:d1], strict=True):
        part = ln if end is None else max(0, min(st + ln, end) - st)
        if part:
            per_source[src] = per_source.get(src, 0) + part
    arrays["order"] = row_order(plan.rows, seed)
    extra = {"rows": plan.rows, "t0": t0, "range": list(range_), "padding_tokens": padding, "docs": d1 - d0,
             "docs_cut": cut, "concat_cut": concat_cut, "cache_tokens": total, "range_tokens": t1 - t0,
             "tokens_per_source": dict(sorted(per_source.items()))}
    return arrays, extra


@pytest.mark.parametrize("packing", ["concat", "bestfit"])
@pytest.mark.parametrize("range_", [(0.0, 1.0), (0.137, 0.861), (0.5, 0.5000001)])
def test_the_streamed_plan_is_the_in_memory_plan_byte_for_byte(tmp_path, monkeypatch, packing, range_):
    # batches of 701 documents, best-fit calls of 3 buffers of 64 and plan tasks of 2 calls: all cross the files'
    # boundaries; a task's call ends short of 3 buffers at the task's end
    monkeypatch.setattr(packplan, "BATCH_ROWS", 701)
    monkeypatch.setattr(packplan, "BUFFER_DOCS", 64)
    monkeypatch.setattr(packplan, "CHUNK_DOCS", 3 * 64)
    monkeypatch.setattr(packplan, "TASK_DOCS", 5 * 64)
    rng = np.random.default_rng(5)
    files, lens, sources = cache_docs(tmp_path, rng, [900, 0, 1, 1500, 333],
                                      [["b", "a"], ["x"], ["c"], ["a", "c", "b", "d"], ["d"]])
    out = tmp_path / "plan"
    out.mkdir()
    seq = 50
    figures, tasks = plan_split(PlanStage(seq, packing, range_, seed=7), plan_task(files), out)
    arrays, extra = in_memory_plan(lens, sources, seq, packing, range_, 7, buffer_docs=64)
    assert figures == extra
    names = ["doc_starts"] if packing == "concat" else ["piece_start", "piece_len", "row_ptr"]
    assert sorted(os.listdir(out)) == sorted([f"train.{k:05d}.{name}.npy" for k in range(len(tasks)) for name in names]
                                             + ["train.order.npy"])
    parts = [{name: np.load(out / f"train.{k:05d}.{name}.npy") for name in names} for k in range(len(tasks))]
    if packing == "concat":
        assert len(tasks) == 1 and np.array_equal(parts[0]["doc_starts"], arrays["doc_starts"])
    else:
        assert len(tasks) == max(1, math.ceil(extra["docs"] / (5 * 64)))
        for t in tasks:  # a task is given the files holding its documents, no others
            rows = [[900, 0, 1, 1500, 333][int(f.rel[6:9])] for f in t.side["docs"]]
            assert t.params["file_rows"] == rows  # from the driver's footers: the task does not read them again
            lo, hi = t.params["docs"]
            assert lo == hi == 0 and not rows if extra["docs"] == 0 else lo < rows[0] and sum(rows[:-1]) < hi <= sum(rows), (t.key, rows, lo, hi)
        chunks = [BestFitPlan(seq, p["piece_start"], p["piece_len"], p["row_ptr"], pad_id=0) for p in parts]
        whole = BestFitPlan(seq, arrays["piece_start"], arrays["piece_len"], arrays["row_ptr"], pad_id=0)
        for name in names:  # the tasks' pieces one after another, their rows' first pieces shifted by those before
            before = np.cumsum([0] + [len(p["piece_start"]) for p in parts])
            joined = np.concatenate([p[name] if name != "row_ptr" else p[name][k > 0:] + before[k]
                                     for k, p in enumerate(parts)])
            assert np.array_equal(joined, arrays[name]), name
        plan = ChunkedPlan(chunks)
        assert plan.rows == whole.rows == extra["rows"]
        ids = np.random.default_rng(1).permutation(whole.rows)
        stream = TokenStream([np.arange(int(lens.sum()), dtype=np.int64) % 65000])
        for got, want in zip(plan.materialize(stream, ids), whole.materialize(stream, ids), strict=True):
            for g, w in zip(got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want],
                            strict=True):
                assert np.array_equal(g, w)
    want = tmp_path / "want-order.npy"
    np.save(want, arrays["order"])
    assert (out / "train.order.npy").read_bytes() == want.read_bytes()
    for name in names:  # each file is np.save's bytes of its array
        np.save(want, parts[0][name])
        assert (out / f"train.00000.{name}.npy").read_bytes() == want.read_bytes()
    if range_ == (0.0, 1.0):
        assert extra["rows"] > 100 and len(extra["tokens_per_source"]) == 4


def test_npy_appender_and_the_shuffled_range_write_np_saves_bytes(tmp_path):
    for n in (0, 1, 5, 10_007):
        values = np.random.default_rng(n).integers(-(2**40), 2**40, n)
        with NpyAppender(str(tmp_path / f"a{n}.npy"), np.int64) as w:
            for lo in range(0, n, 999):
                w.write(values[lo: lo + 999])
        np.save(tmp_path / f"b{n}.npy", values)
        assert (tmp_path / f"a{n}.npy").read_bytes() == (tmp_path / f"b{n}.npy").read_bytes()
        save_shuffled_range(str(tmp_path / f"o{n}.npy"), n, seed=3)
        np.save(tmp_path / f"p{n}.npy", row_order(n, 3))
        assert (tmp_path / f"o{n}.npy").read_bytes() == (tmp_path / f"p{n}.npy").read_bytes()
    # past one arange block (256k values): the blocks and the in-place shuffle give permutation's bytes
    save_shuffled_range(str(tmp_path / "big.npy"), (1 << 19) + 3, seed=11)
    assert np.array_equal(np.load(tmp_path / "big.npy"), row_order((1 << 19) + 3, 11))


def test_a_failed_append_leaves_no_file(tmp_path):
    path = tmp_path / "x.npy"
    with pytest.raises(RuntimeError), NpyAppender(str(path), np.int64) as w:
        w.write(np.arange(10))
        raise RuntimeError("killed")
    assert not os.listdir(tmp_path)


def test_the_plan_memory_does_not_grow_with_the_split(tmp_path, monkeypatch):
    """Traced numpy memory of a plan task over 400k and 1.6M documents: the same few MB, not the ~50 bytes per
    document of a plan holding the split's lengths, positions and pieces (80 MB at 1.6M)."""
    monkeypatch.setattr(packplan, "BATCH_ROWS", 1 << 14)
    monkeypatch.setattr(packplan, "CHUNK_DOCS", 4 * packplan.BUFFER_DOCS)
    peaks = {}
    warm, _, _ = cache_docs(tmp_path, np.random.default_rng(0), [100], [["a"]])  # best fit's kernel loads first
    (tmp_path / "warm").mkdir()
    plan_split(PlanStage(256, "bestfit", (0.0, 1.0), 0), plan_task(warm), tmp_path / "warm")
    for n in (400_000, 1_600_000):
        d = tmp_path / str(n)
        d.mkdir()
        files, _, _ = cache_docs(d, np.random.default_rng(n), [n // 4] * 4, [["a", "b"]] * 4, max_len=400)
        for packing in ("concat", "bestfit"):
            out = d / packing
            out.mkdir()
            tracemalloc.start()
            plan_split(PlanStage(256, packing, (0.0, 1.0), 0), plan_task(files), out)
            peaks[n, packing] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    for packing in ("concat", "bestfit"):
        small, big = peaks[400_000, packing], peaks[1_600_000, packing]
        assert big < 1.3 * small + (1 << 20) and big < 12 << 20, (packing, small, big)


def test_the_plan_holds_one_cache_file_open_at_a_time(tmp_path):
    """A split has a docs file per tokenize task (tens of thousands at RedPajama's scale): planning it under a
    limit of 64 open files must not run out of descriptors."""
    for k in range(150):
        pq.write_table(pa.table({"source": ["a", "b"], "tokens": pa.array([k + 1, 2], pa.int32())}),
                       tmp_path / f"{k:03d}.docs.parquet")
    (tmp_path / "out").mkdir()
    code = ("import os, resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
            "from slimpajama.io.discover import InputFile\n"
            "from slimpajama.pipelines.packplan import PlanStage, plan_tasks, split_plan\n"
            "from slimpajama.pipelines.stage import Task\n"
            "d = sys.argv[1]\n"
            "names = [p for p in sorted(os.listdir(d)) if '.docs' in p]\n"
            "docs = tuple(InputFile(os.path.join(d, p), 'train/' + p, 0) for p in names)\n"
            "toks = tuple(InputFile(os.path.join(d, p), 'train/' + p, 2 * (int(p[:3]) + 3)) for p in names)\n"
            "stage = PlanStage(16, 'bestfit', (0.0, 1.0), 0)\n"
            "tasks, summary = plan_tasks(Task('train', (), {'cache': {'eos': 0, 'dtype': 'uint16'}},\n"
            "                                      side={'docs': docs, 'tokens': toks}), stage)\n"
            "out = split_plan(summary, [stage.run_task(t, os.path.join(d, 'out')).extra for t in tasks])\n"
            "print(out['cache_tokens'], out['docs'], out['tokens_per_source'])\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    total = int(np.arange(1, 151).sum()) + 300
    assert r.stdout.split() == [str(total), "300", "{'a':", f"{total - 300},", "'b':", "300}"]


def test_a_tokens_file_that_does_not_match_its_documents_is_a_damaged_cache(tmp_path):
    from slimpajama.errors import SlimPajamaError

    files, _, _ = cache_docs(tmp_path, np.random.default_rng(1), [50, 60], [["a"], ["b"]])
    files[1] = (files[1][0], files[1][1] - 7)  # its tokens file lost 7 tokens
    (tmp_path / "out").mkdir()
    with pytest.raises(SlimPajamaError, match=r"token cache file train/001.docs.parquet: its documents hold .* "
                                              r"tokens but its tokens file .*rerun `slimpajama tokens`"):
        plan_split(PlanStage(16, "concat", (0.0, 1.0), 0), plan_task(files), tmp_path / "out")
