"""A small run executes in the driver, without starting Ray (pipelines/cluster.in_driver): the same bytes as a
Ray run, and the same guarantees when interrupted (SIGKILL: tests/test_faults.py, both ways)."""

from __future__ import annotations

import json

from pipeline_helpers import ledgers_balance, pipeline_cli, product


def markers(data) -> list[dict]:
    return [json.loads(p.read_text()) for p in data.rglob("_state/**/*.json")
            if not p.name.startswith("_") and "fingerprint" in json.loads(p.read_text())]


def test_a_small_run_in_the_driver_gives_a_ray_runs_bytes(clean_pipeline, pipeline_corpus, tmp_path):
    _, want, _ = clean_pipeline  # run with Ray (the test session's)
    raw, _ = pipeline_corpus
    r = pipeline_cli(raw, tmp_path / "data")
    assert r.returncode == 0, r.stderr[-3000:]
    assert product(tmp_path / "data") == want
    ran = markers(tmp_path / "data")
    assert len(ran) > 20 and all(m["node"] is None for m in ran)  # no task ran on a Ray node


def test_ctrl_c_in_the_driver_exits_130_and_the_rerun_resumes_to_the_same_bytes(clean_pipeline, pipeline_corpus,
                                                                                 tmp_path):
    _, want, _ = clean_pipeline
    raw, _ = pipeline_corpus
    data = tmp_path / "data"
    r = pipeline_cli(raw, data, env={"SLIMPAJAMA_FAULT": "interrupt:minhash:2"})  # SIGINT after 2 minhash tasks
    assert r.returncode == 130, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: interrupted (SIGINT)") and "Traceback" not in r.stderr
    assert len([m for m in markers(data) if m["stage"] == "minhash"]) == 2
    assert not [p for p in data.rglob("*") if ".tmp-" in p.name]  # nothing half-written left
    r = pipeline_cli(raw, data)
    assert r.returncode == 0, r.stderr[-3000:]
    ledgers_balance(data)
    assert product(data) == want
