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
