"""Seeded fault injection: SIGKILL the driver, and separately Ray workers, inside every stage; the rerun (or
Ray's retry) ends with the same bytes as a clean run and every ledger balances."""

import random

import pytest
from pipeline_helpers import STAGES, ledgers_balance, pipeline, pipeline_cli, product

SEED = 20261122


def test_every_stage_has_tasks_to_kill(clean_pipeline):
    _, files, counts = clean_pipeline
    assert set(counts) == set(STAGES) and all(n >= 1 for n in counts.values()), counts
    assert sum(n > 1 for n in counts.values()) >= 7  # most stages have several tasks
    assert any(f.endswith(".jsonl.zst") for f in files) and any(f.endswith(".arrow") for f in files)


# with Ray: 95 s, so `make test-all` only; the driver-inline run (32 s) kills the same points in `make test`
@pytest.mark.parametrize("inline_bytes", [pytest.param("0", marks=pytest.mark.slow), ""], ids=["ray", "driver"])
def test_driver_killed_in_every_stage_then_rerun_gives_the_same_bytes(clean_pipeline, pipeline_corpus, tmp_path,
                                                                      inline_bytes):
    """One data directory; the driver dies once in each stage in turn (after a seeded number of that stage's
    tasks completed), each rerun resuming what the previous ones left; the last run finishes. With Ray, and with
    the tasks run in the driver (what a run this small does by default)."""
    _, want, counts = clean_pipeline
    raw, _ = pipeline_corpus
    rng = random.Random(SEED)
    data = tmp_path / "data"
    for stage in STAGES:
        n = rng.randrange(counts[stage])
        r = pipeline_cli(raw, data, env={"SLIMPAJAMA_FAULT": f"driver:{stage}:{n}",
                                         "SLIMPAJAMA_INLINE_BYTES": inline_bytes})
        assert r.returncode == -9, (stage, n, r.returncode, r.stderr[-2000:])
    r = pipeline_cli(raw, data)
    assert r.returncode == 0, r.stderr[-3000:]
    ledgers_balance(data)
    assert product(data) == want


def test_workers_killed_in_every_stage_are_retried_to_the_same_bytes(clean_pipeline, pipeline_corpus, tmp_path,
                                                                    monkeypatch):
    """A worker of every stage SIGKILLs itself at a seeded point: at the start, inside the work, or after its
    outputs but before its completion marker. Ray retries the task; nothing partial is trusted."""
    _, want, counts = clean_pipeline
    raw, _ = pipeline_corpus
    rng = random.Random(SEED + 1)
    faults = [f"worker:{stage}:{rng.randrange(counts[stage])}:{rng.choice(['0', '0.05', '0.2', 'marker'])}"
              for stage in STAGES]
    monkeypatch.setenv("SLIMPAJAMA_FAULT", ",".join(faults))
    monkeypatch.setenv("SLIMPAJAMA_FAULT_DIR", str(tmp_path))
    data = tmp_path / "data"
    pipeline(raw, data)
    fired = sorted(p.name.split("-", 3)[3] for p in tmp_path.glob("slimpajama-fault-*"))
    assert fired == sorted(f"{f.split(':')[1]}-{f.split(':')[2]}" for f in faults)
    ledgers_balance(data)
    assert product(data) == want
    assert not [f for f in product(data) if "/.tmp-" in f"/{f}"]


@pytest.mark.parametrize(("workers", "batch_rows"), [(1, 1024), (1, 7), (2, 7)])
def test_same_bytes_whatever_the_workers_and_batch_sizes(clean_pipeline, pipeline_corpus, tmp_path, workers,
                                                         batch_rows):
    """The determinism matrix: 1 or 2 workers x read batches of 7 or 1024 documents (the clean run is 2 x 1024)."""
    _, want, _ = clean_pipeline
    raw, _ = pipeline_corpus
    pipeline(raw, tmp_path / "data", batch_rows=batch_rows, workers=workers)
    assert product(tmp_path / "data") == want
