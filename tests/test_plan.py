"""`slimpajama plan`: the tasks the stages would run, scheduled on N cores, from a corpus or a listing of one."""

import heapq
import json
import math
import subprocess
import sys

import click
import numpy as np
import pytest
from conftest import REPO

from slimpajama.tools.plan import STAGES, Corpus, Settings, list_corpus, model
from slimpajama.tools.schedule import Tasks, schedule

LISTING = REPO / "tests" / "data" / "redpajama-1t-sizes.txt"
# fixed rates, so the model's arithmetic can be checked by hand (MB/s of text per core)
RATES = {"mb_per_s_per_core": {"normalize": 35.0, "minhash": 22.0, "lsh": 2500.0, "components": 10000.0,
                               "dedup": 190.0, "index": 2500.0, "release-scatter": 220.0, "release-shuffle": 120.0,
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
    assert set(out["rates"]["docs_per_s"]) == {"components", "pack-plan"}
    assert out["rates"]["sources"]["normalize"].startswith("a calibration slice of")
    # its rates plan a listing, with no corpus to read
    (tmp_path / "rates.json").write_text(r.stdout)
    r = plan_cli(LISTING, "--cores", 512, "--rates", tmp_path / "rates.json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "normalize" in r.stdout and "total" in r.stdout and "components: one task, a node with" in r.stdout
    # the row order: 8 bytes per row at seq 2048
    assert "pack-plan: one task per split (bestfit: one per 16.8M documents), then the split's row order: a node " \
           "with" in r.stdout


def test_plan_mistakes_get_one_error_line(tmp_path):
    r = plan_cli(LISTING, "--cores", 8)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "--rates" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "listing.txt"
    bad.write_text("100 a/b.jsonl\nnot a size\n")
    r = plan_cli(bad, "--cores", 8, "--rates", tmp_path / "none.json")
    assert r.returncode == 1 and "line 2" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_rates_from_make_bench_results(tmp_path):
    """make bench's results.json: the real-text end-to-end stages; the per-document stages from its runs big enough
    to time them (a calibration slice times them in milliseconds of mostly fixed cost)."""
    stages = {s: {"mb_per_s_per_core": 10.0 + i, "text_mb_in": 100.0, "peak_rss_mb_per_task": 500}
              for i, s in enumerate(STAGES)}
    stages["release-scatter"]["text_mb_in"] = 50.0
    results = {"end_to_end": {"real_text": {"stages": stages, "docs": 1000, "bytes_per_token": 2.5}},
               "pack_parallel": {"gb_tokens": 8.0, "plan_seconds": 0.25, "plan_docs": 2_400_000},
               "dedup": {"lsh_components_memory": {"docs": 10**8, "components_seconds": 3.3}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    from slimpajama.tools.plan import BUILT_IN, DOCS_PER_S, read_rates

    rates = read_rates(str(tmp_path / "results.json"))
    assert rates["mb_per_s_per_core"]["minhash"] == 11.0 and rates["keep_dedup"] == 0.5
    assert rates["docs_per_s"] == {"pack-plan": 9_600_000, "components": round(1e8 / 3.3)}
    assert rates["bytes_per_doc"] == 1e5 and "2.4M documents" in rates["sources"]["pack-plan"]
    # an older results.json, without those runs: built-in rates, said so
    # ... and from before the index stage: it is planned at LSH's rate (the same sort per band x key range), said so
    del results["pack_parallel"], results["dedup"], stages["index"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    rates = read_rates(str(tmp_path / "results.json"))
    assert rates["docs_per_s"] == DOCS_PER_S and rates["sources"]["components"] == BUILT_IN
    assert rates["mb_per_s_per_core"]["index"] == rates["mb_per_s_per_core"]["lsh"] == 12.0
    assert rates["sources"]["index"] == "lsh's rate (these rates predate the index stage)"


@pytest.mark.parametrize("lines, bad_line", [
    ("-5 a.jsonl\n", 1),  # a negative size was read as 5
    ("1e9 a.jsonl\n", 1),  # read as 9 bytes
    ("1000000000 a.jsonl\n-1000000000 b.jsonl\n", 2),  # read as 1.9 GB
    ("100 a.jsonl\n12 KiB b.jsonl\n", 2),  # aws s3 ls --human-readable
    ("100 a.jsonl\na.jsonl 100\n", 2),
])
def test_a_listing_line_of_no_known_shape_is_an_error_naming_it(tmp_path, lines, bad_line):
    listing = tmp_path / "listing.txt"
    listing.write_text(lines)
    r = plan_cli(listing, "--cores", 8, "--rates", REPO / "benchmarks" / "reference-rates.json")
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert r.stderr.startswith(f"error: {listing}, line {bad_line}: not a listing line") and "non-negative" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_the_listing_shapes_of_find_aws_gsutil_and_ls(tmp_path):
    listing = tmp_path / "listing.txt"
    listing.write_text(
        "# find -printf '%s %p\\n'\n"
        "100 a/one.jsonl\n"
        "200\tb/two words.jsonl\n"
        "2023-04-17 12:34:56   300 c/three.jsonl.zst\n"
        "                           PRE d/\n"
        "     400  2023-04-17T12:34:56Z  gs://bucket/e/four.parquet\n"
        "TOTAL: 1 objects, 400 bytes (400 B)\n"
        "total 8\n"
        "drwxr-xr-x 2 user group 4096 Apr 17 12:34 folder\n"
        "-rw-r--r-- 1 user group 500 Apr 17 12:34 five.jsonl\n"
        "-rw-r--r--. 1 user group 600 Apr 17  2023 six.json.gz\n"
        "700 notes.txt\n"  # not a corpus file: listed, not planned
        "Total Objects: 1\n")
    assert list_corpus(str(listing)).files == [
        ("a/one.jsonl", 100), ("b/two words.jsonl", 200), ("c/three.jsonl.zst", 300),
        ("gs://bucket/e/four.parquet", 400), ("five.jsonl", 500), ("six.json.gz", 600)]


def test_plan_time_and_memory_do_not_grow_with_the_corpus(tmp_path):
    """1 PB took 7.2 s and 1.8 GB, 100 PB never ended, 23 digits ran out of memory: tasks are counted, not listed."""
    for size in (10**15, 10**17, 12345678901234567890123):
        out = model(Corpus([("huge/one.jsonl", size)]), RATES, Settings(cores=64))
        parts = math.ceil(size * 0.95 / ((512 << 20) * 0.95))
        assert out["stages"]["normalize"]["tasks"] == parts
        # equal tasks on 64 cores: the wall is the ceiling of tasks per core times one task
        one = size * 0.95 / parts / 35e6
        assert out["stages"]["normalize"]["wall"] == pytest.approx(math.ceil(parts / 64) * one, rel=1e-6)
    listing = tmp_path / "listing.txt"
    listing.write_text("12345678901234567890123 huge/one.jsonl\n")
    r = plan_cli(listing, "--cores", 64, "--rates", REPO / "benchmarks" / "reference-rates.json")
    assert r.returncode == 0 and "out of memory" not in r.stderr, r.stderr
    assert "plan: 1 file," in r.stdout


def test_equal_tasks_in_bulk_schedule_as_one_at_a_time():
    rng = np.random.default_rng(0)
    for _ in range(300):
        cores = int(rng.integers(1, 10))
        tasks = [float(t) for t in rng.choice([0.3, 1.0, 2.5, 3.0, 7.0], int(rng.integers(0, 6)))
                 for _ in range(int(rng.integers(1, 40)))]
        loads = [0.0] * min(cores, max(len(tasks), 1))
        for t in sorted(tasks, reverse=True):  # one at a time, longest first onto the least loaded core
            heapq.heappush(loads, heapq.heappop(loads) + t)
        assert schedule(Tasks((t, tasks.count(t)) for t in set(tasks)), cores) == pytest.approx(max(loads))


def test_per_document_stages_are_timed_on_enough_documents():
    """Components and the pack plan took their rates from a slice's sub-millisecond runs (and pack's rate): 3.7 h
    and 2.5 h on RedPajama at 64 cores where they take minutes. Now from their stages run on 10M documents."""
    rates = json.loads((REPO / "benchmarks" / "reference-rates.json").read_text())["rates"]
    assert rates["docs_per_s"]["components"] > 1e6 and rates["docs_per_s"]["pack-plan"] > 1e6
    out = model(list_corpus(str(LISTING)), rates, Settings(cores=64, layouts=2))
    assert out["stages"]["components"]["wall"] < 600 and out["stages"]["pack-plan"]["wall"] < 600
    # docs/cluster.md's example, as written, on a fresh clone: its rates file is in the repository
    r = plan_cli(LISTING, "--cores", 64, "--rates", REPO / "benchmarks" / "reference-rates.json", "--layouts", 2)
    assert r.returncode == 0, r.stderr
    assert "rates from" in r.stdout and "components, pack-plan: timed on 10M generated documents" in r.stdout
    readme = (REPO / "docs" / "cluster.md").read_text()
    assert "--rates benchmarks/reference-rates.json" in readme and "--rates benchmarks/results.json" not in readme


def test_an_interrupted_plan_does_not_offer_to_resume():
    from click.testing import CliRunner

    from slimpajama.cli.guard import fail_cleanly

    @click.command()
    @fail_cleanly(kept=None, memory="nothing to do")
    def planning():
        raise KeyboardInterrupt

    r = CliRunner().invoke(planning)
    assert r.exit_code == 130 and r.output.strip() == "error: interrupted (SIGINT)"
