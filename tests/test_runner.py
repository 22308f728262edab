"""The Ray stage runner, proven with the ingest stage (identity transform)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import orjson
import pyarrow.parquet as pq
import pytest
import zstandard

from slimpajama.errors import BadInputError
from slimpajama.io.discover import discover
from slimpajama.pipelines import DocumentStage, ReadOptions, file_tasks, run_stage


def outputs(out_dir):
    """Every file a stage run produced except the timing-bearing completion markers."""
    found = {}
    for dirpath, _, files in os.walk(out_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), out_dir)
            if not (rel.startswith("_state") and rel.endswith(".json")):
                found[rel] = open(os.path.join(dirpath, name), "rb").read()
    return found


def make_corpus(root, files=6, docs=300, bad=True):
    for i in range(files):
        src = ["RedPajamaC4", "RedPajamaGithub", "RedPajamaWikipedia"][i % 3]
        lines = [orjson.dumps({"text": f"{src} document {i}-{j} " * (1 + j % 7), "meta": {"redpajama_set_name": src}})
                 for j in range(docs)]
        if bad and i % 2 == 0:
            lines.insert(5, b'{"text": broken')
            lines.insert(9, b'{"meta": {}}')
        p = root / src / f"part-{i:03d}.jsonl.zst"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n"))
    return root


def ingest(raw, out, workers=None, **read):
    stage = DocumentStage(ReadOptions(**read))
    return run_stage(stage, file_tasks(discover(str(raw))), str(out), workers=workers, progress=False)


def test_ledger_balances_and_bad_input_is_logged(tmp_path, ray_session):
    raw = make_corpus(tmp_path / "raw")
    report = ingest(raw, tmp_path / "out")
    ledger = json.loads((tmp_path / "out" / "ledger.json").read_text())
    t = ledger["totals"]
    assert ledger["balanced"] and t["docs_in"] == 6 * 300 + 3 * 2
    assert t["docs_out"] == 1800 and t["dropped"]["bad_input"]["docs"] == 6
    assert t["docs_in"] == t["docs_out"] + sum(d["docs"] for d in t["dropped"].values())
    errors = [json.loads(line) for line in open(tmp_path / "out" / "_errors.jsonl")]
    assert [(e["file"], e["line"], e["reason"]) for e in errors[:2]] == [
        ("RedPajamaC4/part-000.jsonl.zst", 6, "malformed_json"), ("RedPajamaC4/part-000.jsonl.zst", 10, "missing_text")]
    assert report.errors == 6 and report.skipped == 0
    shard = pq.read_table(tmp_path / "out" / "RedPajamaC4" / "part-000.parquet")
    assert shard.num_rows == 300 and shard["doc_id"][0].as_py() == "RedPajamaC4/part-000.jsonl.zst:1"


def test_one_and_two_workers_write_identical_bytes(tmp_path, ray_session):
    raw = make_corpus(tmp_path / "raw")
    ingest(raw, tmp_path / "w1", workers=1)
    ingest(raw, tmp_path / "w2", workers=2)
    one, two = outputs(tmp_path / "w1"), outputs(tmp_path / "w2")
    assert one.keys() == two.keys() and len(one) >= 8
    assert one == two


def test_rerun_skips_complete_shards_and_redoes_damaged_ones(tmp_path, ray_session):
    raw = make_corpus(tmp_path / "raw")
    ingest(raw, tmp_path / "out")
    before = outputs(tmp_path / "out")
    assert ingest(raw, tmp_path / "out").skipped == 6
    victim = tmp_path / "out" / "RedPajamaGithub" / "part-001.parquet"
    victim.write_bytes(victim.read_bytes()[:100])  # a damaged output is not trusted
    (tmp_path / "out" / "RedPajamaC4" / ".tmp-dead-part-000.parquet").write_bytes(b"junk")
    report = ingest(raw, tmp_path / "out")
    assert report.skipped == 5
    assert outputs(tmp_path / "out") == before
    assert ingest(raw, tmp_path / "out", max_doc_bytes=1 << 20).skipped == 0  # config change: recompute


def test_on_error_fail_stops_with_file_and_line(tmp_path, ray_session):
    raw = make_corpus(tmp_path / "raw")
    with pytest.raises(BadInputError, match=r"RedPajamaC4/part-000.jsonl.zst:6: malformed_json"):
        ingest(raw, tmp_path / "out", on_error="fail")


def test_sigkill_of_the_driver_then_rerun_gives_the_same_bytes(tmp_path, ray_session):
    raw = make_corpus(tmp_path / "raw", files=12, docs=60_000, bad=False)
    clean = tmp_path / "clean"
    ingest(raw, clean)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "slimpajama.cli", "ingest", str(raw), "--out", str(out), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "_state"
    deadline = time.time() + 120
    while time.time() < deadline:
        markers = list(state.rglob("*.json")) if state.exists() else []
        if len(markers) >= 2:
            break
        assert proc.poll() is None, "run ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the driver, mid-stage
    proc.wait()
    with contextlib.suppress(ProcessLookupError):  # then its embedded Ray (if the run used one), as when the
        os.killpg(proc.pid, signal.SIGKILL)         # machine goes down
    done_when_killed = len(list(state.rglob("*.json")))
    assert 2 <= done_when_killed < 12
    assert not (out / "ledger.json").exists()
    rerun = subprocess.run(cmd[:-1] + ["--json"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["resumed"] >= done_when_killed - 1
    assert outputs(out) == outputs(clean)
