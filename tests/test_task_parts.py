"""--task-bytes on dedup and release: a shard bigger than it is read by several tasks (runs of whole row groups)
in minhash, remove and scatter. The documents kept, their order, the duplicates and the release never change."""

import hashlib
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from rerun_helpers import files_under

from slimpajama.core.release import ReleaseConfig
from slimpajama.errors import raise_on_bad
from slimpajama.io.discover import discover
from slimpajama.io.documents import read_documents
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
from slimpajama.pipelines.dedup import run_dedup
from slimpajama.pipelines.pipeline import stage_markers
from slimpajama.pipelines.release import run_release

CFG = ReleaseConfig(holdout=0.1, docs_per_file=60, bucket_bytes=300_000)
SPLITS = {"whole": 0, "1MB": 1 << 20, "mid-shard": 20_000}


@pytest.fixture(scope="module")
def small_groups(sample_corpus, tmp_path_factory, ray_session):
    """The sample corpus normalized, its shards rewritten in row groups of 16 rows, so that a task size can cut a
    shard anywhere."""
    raw, _ = sample_corpus
    root = tmp_path_factory.mktemp("groups")
    run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(str(raw))), str(root / "n"), progress=False)
    for f in discover(str(root / "n")):
        (root / "g" / f.rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pq.read_table(f.path), root / "g" / f.rel, row_group_size=16)
    return root / "g"


def documents(folder) -> list[tuple]:
    return [row for f in discover(str(folder)) for b in read_documents(f, raise_on_bad)
            for row in zip(*(b.column(c).to_pylist() for c in ("doc_id", "text")), strict=True)]


def digests(folder) -> dict[str, str]:
    return {rel: hashlib.sha256((folder / rel).read_bytes()).hexdigest() for rel in files_under(folder)}


def test_dedup_and_release_in_parts_keep_every_output(small_groups, tmp_path):
    shards = len(list(small_groups.glob("**/*.parquet")))
    got = {}
    for name, task_bytes in SPLITS.items():
        dedup = run_dedup(str(small_groups), str(tmp_path / name / "d"), task_bytes=task_bytes, progress=False)
        run_release(str(tmp_path / name / "d"), str(tmp_path / name / "r"), CFG, task_bytes=task_bytes,
                    progress=False)
        markers = stage_markers(str(tmp_path / name))
        tasks = {s: len(markers[s]) for s in ("minhash", "dedup", "release-scatter")}
        got[name] = (documents(tmp_path / name / "d"), dedup.ledger.to_dict(), dedup.extra["duplicates"],
                     _duplicates(tmp_path / name / "d"), digests(tmp_path / name / "r"), tasks)
    whole, mid = got["whole"], got["mid-shard"]
    assert whole[5] == {s: shards for s in whole[5]}  # one task per shard
    assert all(n > 2 * shards for n in mid[5].values()), mid[5]  # shards cut into several tasks each
    assert whole[2] > 0  # the sample corpus plants duplicates
    for name in ("1MB", "mid-shard"):
        assert got[name][:5] == whole[:5], name


def test_a_rerun_with_another_task_size_leaves_only_its_outputs(small_groups, tmp_path):
    out = tmp_path / "d"
    run_dedup(str(small_groups), str(out), task_bytes=20_000, progress=False)
    parts = files_under(out)
    assert any(".part-" in f for f in parts)
    docs = documents(out)
    run_dedup(str(small_groups), str(out), task_bytes=0, progress=False)
    assert not any(".part-" in f for f in files_under(out)) and documents(out) == docs


def _duplicates(folder) -> list[dict]:
    return pq.read_table(folder / "duplicates.parquet").to_pylist()


@pytest.mark.parametrize("stage", ["minhash", "dedup", "release-scatter"])
def test_a_driver_killed_among_the_parts_resumes_to_the_same_outputs(small_groups, tmp_path, stage):
    clean = tmp_path / "clean"
    run_dedup(str(small_groups), str(clean / "d"), task_bytes=SPLITS["mid-shard"], progress=False)
    run_release(str(clean / "d"), str(clean / "r"), CFG, task_bytes=SPLITS["mid-shard"], progress=False)
    out = tmp_path / "killed"
    dedup = [sys.executable, "-m", "slimpajama.cli", "dedup", str(small_groups), "--out", str(out / "d"),
             "--task-bytes", str(SPLITS["mid-shard"]), "--quiet"]
    release = [sys.executable, "-m", "slimpajama.cli", "release", str(out / "d"), "--out", str(out / "r"),
               "--holdout", str(CFG.holdout), "--docs-per-file", str(CFG.docs_per_file), "--bucket-bytes",
               str(CFG.bucket_bytes), "--task-bytes", str(SPLITS["mid-shard"]), "--quiet"]
    fault = {**os.environ, "SLIMPAJAMA_FAULT": f"driver:{stage}:5"}  # SIGKILL once 5 of its tasks are done
    killed = []
    for cmd in (dedup, release):
        r = subprocess.run(cmd, env=fault, capture_output=True, text=True, timeout=300)
        if r.returncode == -9:  # killed in this command: the rerun resumes it
            killed.append(cmd[3])
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    assert killed == ["release" if stage.startswith("release") else "dedup"]
    assert documents(out / "d") == documents(clean / "d")
    assert _duplicates(out / "d") == _duplicates(clean / "d")
    assert digests(out / "r") == digests(clean / "r")
