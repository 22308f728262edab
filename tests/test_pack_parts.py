"""Pack in parallel: a plan per split, then tasks over ranges of its files. The files are the same bytes however
they are divided among tasks, and a pack killed anywhere resumes to them."""

import json
import os
import subprocess
import sys

import pytest
from rerun_helpers import files_under

from slimpajama.packers import ShardReader, verify
from slimpajama.pipelines.pack import run_shards

ROW_BYTES = 17 * 2  # a row of seq 16 + 1 uint16 tokens


def digests(out) -> dict[str, str]:
    import hashlib

    return {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in files_under(out)}


def packed(cache, out, seq, packing, task_bytes, **kw):
    return run_shards(str(cache / "tokens" / "gpt2"), "", seq, packing=packing, out_dir=str(out), file_bytes=1,
                      task_bytes=task_bytes, progress=False, **kw)


@pytest.mark.parametrize(("packing", "seq"), [("concat", 16), ("bestfit", 16)])
def test_1_2_and_7_parts_write_the_same_files(cache, tmp_path, packing, seq):
    one = packed(cache, tmp_path / "one", seq, packing, task_bytes=0)  # one task per split
    n_files = one.extra["splits"]["train"]["files"]
    assert n_files >= 7 and len(one.markers) == 3
    want = digests(tmp_path / "one")
    for parts in (2, 7):
        per_task = -(-n_files // parts)
        out = tmp_path / f"p{parts}"
        report = packed(cache, out, seq, packing, task_bytes=per_task * 1024 * ROW_BYTES, workers=2)
        assert sum(m["key"].startswith("train/") for m in report.markers) == parts
        assert digests(out) == want
        for split in ("train", "validation", "test"):
            index = verify(str(out / split))
            assert index == json.loads((tmp_path / "one" / split / ".slimpajama-index.json").read_text())
            assert [f["path"] for f in index["files"]] == sorted(f["path"] for f in index["files"])
    reader = ShardReader(str(tmp_path / "p7" / "train"))
    assert len(reader) == one.extra["splits"]["train"]["rows"] and reader[len(reader) - 1].shape == (seq + 1,)


def test_a_changed_file_size_rewrites_only_what_changed_and_drops_the_rest(cache, tmp_path):
    out = tmp_path / "s"
    packed(cache, out, 16, "concat", task_bytes=1)  # one file per task
    many = files_under(out)
    again = packed(cache, out, 16, "concat", task_bytes=1)
    assert again.skipped == len(again.markers)  # every part resumed
    run_shards(str(cache / "tokens" / "gpt2"), "", 16, out_dir=str(out), file_bytes=1 << 30, progress=False)
    assert files_under(out) == {f"{s}/part-00000.arrow" for s in ("train", "validation", "test")} != many
    assert verify(str(out / "train"))["rows"] == len(ShardReader(str(out / "train")))


def test_driver_killed_mid_pack_leaves_no_index_and_the_rerun_finishes_the_same_bytes(cache, tmp_path):
    want_dir = tmp_path / "clean"
    packed(cache, want_dir, 16, "concat", task_bytes=1)
    want = digests(want_dir)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "slimpajama.cli", "shards", str(cache / "tokens" / "gpt2"), "--seq", "16",
           "--out", str(out), "--file-bytes", "1", "--task-bytes", "1", "--quiet"]
    r = subprocess.run(cmd, env={**os.environ, "SLIMPAJAMA_FAULT": "driver:pack:3"}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    assert len(list((out / "train").glob("part-*.arrow"))) >= 3
    assert not list(out.glob("*/.slimpajama-index.json"))  # no split claims to be complete
    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert digests(out) == want


def test_a_pack_worker_killed_is_retried_to_the_same_bytes(cache, tmp_path, monkeypatch, ray_session):
    want_dir = tmp_path / "clean"
    packed(cache, want_dir, 16, "bestfit", task_bytes=1)
    monkeypatch.setenv("SLIMPAJAMA_FAULT", "worker:pack:2:marker,worker:pack-plan:0:0")
    monkeypatch.setenv("SLIMPAJAMA_FAULT_DIR", str(tmp_path))
    packed(cache, tmp_path / "s", 16, "bestfit", task_bytes=1)
    assert len(list(tmp_path.glob("slimpajama-fault-*"))) == 2
    assert digests(tmp_path / "s") == digests(want_dir)


def test_the_plan_reads_lengths_file_by_file_and_counts_tokens_per_source_as_row_by_row(tmp_path):
    """split_lengths fills one array from several cache files whose source dictionaries differ (the plan task no
    longer reads the split as one table); tokens_per_source equals summing each document's tokens up to the end of
    the concat plan's last row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from slimpajama.io.discover import InputFile
    from slimpajama.pipelines.pack import split_lengths, tokens_per_source

    rng = np.random.default_rng(3)
    files, want_lens, want_src = [], [], []
    for k, names in enumerate([["b", "a"], ["c"], [], ["a", "c", "b"]]):
        n = 0 if not names else int(rng.integers(1, 300))
        src = [names[i] for i in rng.integers(0, len(names), n)] if names else []
        lens = rng.integers(1, 50, n).astype(np.int32)
        path = tmp_path / f"{k}.docs.parquet"
        pq.write_table(pa.table({"source": pa.array(src, pa.string()), "tokens": pa.array(lens, pa.int32())}), path,
                       row_group_size=37)
        files.append(InputFile(str(path), f"train/{k}.docs.parquet", path.stat().st_size))
        want_lens += lens.tolist()
        want_src += src
    lens, codes, names = split_lengths(files)
    assert lens.tolist() == want_lens and [names[c] for c in codes] == want_src
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    for end in (None, 0, 1, int(starts[len(lens) // 2]) + 3, int(lens.sum()) - 2, int(lens.sum())):
        want: dict[str, int] = {}
        for s, n, src in zip(starts.tolist(), lens.tolist(), want_src, strict=True):
            part = n if end is None else max(0, min(s + n, end) - s)
            if part:
                want[src] = want.get(src, 0) + part
        assert tokens_per_source(codes, names, starts, lens, end) == want, end


def test_the_plan_holds_one_cache_file_open_at_a_time(tmp_path):
    """A split has a docs file per tokenize task (tens of thousands at RedPajama's scale): reading their lengths
    under a limit of 64 open files must not run out of descriptors."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    for k in range(150):
        pq.write_table(pa.table({"source": ["a", "b"], "tokens": pa.array([k + 1, 2], pa.int32())}),
                       tmp_path / f"{k:03d}.docs.parquet")
    code = ("import os, resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
            "from slimpajama.io.discover import InputFile\n"
            "from slimpajama.pipelines.pack import split_lengths\n"
            "d = sys.argv[1]\n"
            "files = [InputFile(os.path.join(d, p), 'train/' + p, 0) for p in sorted(os.listdir(d))]\n"
            "lens, codes, names = split_lengths(files)\n"
            "print(int(lens.sum()), len(lens), names)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [str(int(np.arange(1, 151).sum()) + 300), "300", "['a',", "'b']"]
