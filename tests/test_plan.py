"""`slimpajama plan`: the tasks the stages would run, scheduled on N cores, from a corpus or a listing of one."""

import json
import math
import subprocess
import sys

import pytest
from conftest import REPO

from slimpajama.tools.plan import STAGES, Settings, list_corpus, model, schedule

LISTING = REPO / "tests" / "data" / "redpajama-1t-sizes.txt"
# fixed rates, so the model's arithmetic can be checked by hand (MB/s of text per core)
RATES = {"mb_per_s_per_core": {"normalize": 35.0, "minhash": 22.0, "lsh": 2500.0, "components": 10000.0,
                               "dedup": 190.0, "release-scatter": 220.0, "release-shuffle": 120.0,
                               "tokenize": 12.5, "pack-plan": 5000.0, "pack": 280.0},
         "peak_rss_mb": {}, "keep_normalize": 0.9, "keep_dedup": 0.56, "bytes_per_doc": 4000.0,
         "bytes_per_token": 4.0, "text_per_file_byte": {"plain": 0.95, "compressed": 3.6, "parquet": 3.5}}


def plan_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slimpajama.cli", "plan", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_the_listing_is_cut_into_the_tasks_the_stages_would_run():
    corpus = list_corpus(str(LISTING))
    assert len(corpus.files) == 3 + 1024 + 100 + 98 + 860
    out = model(corpus, RATES, Settings(cores=512))
    norm = out["stages"]["normalize"]
    # wiki 111 GB, book 100 GB, stackexchange 74 GB in 512 MiB parts, C4 (0.8 GB), arXiv and GitHub in 2 each;
    # a Common Crawl file is one compressed stream: one task of 1.4 GB x 3.6 of text, the longest
    parts = sum(math.ceil(n / (512 << 20)) for n in (111e9, 100e9, 74e9))
    assert norm["tasks"] == parts + (1024 + 100 + 98) * 2 + 860
    assert norm["longest_task"] == pytest.approx(1.4e9 * 3.6 / 35e6, abs=0.1)
    # the normalized CC shard (x 0.9) is cut into parts of 512 MiB of text for minhash and remove
    assert out["stages"]["minhash"]["longest_task"] == pytest.approx((512 << 20) / 22e6, rel=0.15)
    for name, s in out["stages"].items():
        assert s["wall"] >= s["longest_task"] and s["wall"] >= s["core_hours"] * 3600 / 512 - 1e-6, name
    assert out["total"]["wall"] == pytest.approx(sum(s["wall"] for s in out["stages"].values()), abs=1)
    assert out["total"]["longest_task"] == max(s["longest_task"] for s in out["stages"].values())
    whole = model(corpus, RATES, Settings(cores=512, task_bytes=0))  # --task-bytes 0: wiki.jsonl is one task
    assert whole["stages"]["normalize"]["longest_task"] == pytest.approx(111e9 * 0.95 / 35e6, abs=0.1)
    assert whole["total"]["wall"] > 3 * out["total"]["wall"]


def test_schedule_is_longest_first_on_the_least_loaded_core():
    assert schedule([5, 4, 3, 3, 3], 2) == 10  # cores 5 | 4, then 3 -> 4 (7), 3 -> 5 (8), 3 -> 7 (10)
    assert schedule([10, 1, 1], 8) == 10 and schedule([1] * 8, 8) == 1 and schedule([], 4) == 0


def test_plan_calibrates_on_the_corpus_and_prints_json(pipeline_corpus, clean_pipeline, tmp_path):
    raw, _ = pipeline_corpus
    _, _, counts = clean_pipeline  # the tasks the pipeline ran at --task-bytes 100000
    r = plan_cli(raw, "--cores", 4, "--calibrate", "1MB", "--task-bytes", 100_000, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert set(out["stages"]) == set(STAGES)
    assert abs(out["stages"]["normalize"]["tasks"] - counts["normalize"]) <= 0.2 * counts["normalize"]
    assert all(s["tasks"] >= 1 and s["wall"] >= s["longest_task"] for s in out["stages"].values()), out["stages"]
    assert out["stages"]["normalize"]["core_hours"] > 0 and out["stages"]["tokenize"]["core_hours"] > 0
    assert out["rates"]["calibration"]["text_bytes"] >= 1e6 and 2 < out["rates"]["bytes_per_token"] < 8
    # its rates plan a listing, with no corpus to read
    (tmp_path / "rates.json").write_text(r.stdout)
    r = plan_cli(LISTING, "--cores", 512, "--rates", tmp_path / "rates.json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "normalize" in r.stdout and "total" in r.stdout and "components: one task, a node with" in r.stdout


def test_plan_mistakes_get_one_error_line(tmp_path):
    r = plan_cli(LISTING, "--cores", 8)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "--rates" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "listing.txt"
    bad.write_text("100 a/b.jsonl\nnot a size\n")
    r = plan_cli(bad, "--cores", 8, "--rates", tmp_path / "none.json")
    assert r.returncode == 1 and "line 2" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_rates_from_make_bench_results(tmp_path):
    """make bench's results.json: the real-text end-to-end stages, and the pack plan timed on gigabytes of tokens
    (a calibration slice times it in milliseconds of mostly fixed cost)."""
    stages = {s: {"mb_per_s_per_core": 10.0 + i, "text_mb_in": 100.0, "peak_rss_mb_per_task": 500}
              for i, s in enumerate(STAGES)}
    stages["release-scatter"]["text_mb_in"] = 50.0
    results = {"end_to_end": {"real_text": {"stages": stages, "docs": 1000, "bytes_per_token": 2.5}},
               "pack_parallel": {"gb_tokens": 8.0, "plan_seconds": 0.25}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    from slimpajama.tools.plan import read_rates

    rates = read_rates(str(tmp_path / "results.json"))
    assert rates["mb_per_s_per_core"]["minhash"] == 11.0 and rates["keep_dedup"] == 0.5
    assert rates["mb_per_s_per_core"]["pack-plan"] == pytest.approx(4e9 * 2.5 / 1e6 / 0.25)
    assert rates["bytes_per_doc"] == 1e5
