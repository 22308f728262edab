"""`dedup --against`: a new batch deduplicated against an earlier release's index, never touching the release."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_dedup import all_doc_ids, tree_bytes

from slimpajama.cli import main
from slimpajama.core.cleaned import clean_text
from slimpajama.core.lsh import clusters_reference
from slimpajama.core.minhash import MinHashConfig, _datasketch_minhash
from slimpajama.errors import SlimPajamaError, raise_on_bad
from slimpajama.io.discover import discover
from slimpajama.io.documents import read_documents
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
from slimpajama.pipelines.dedup import run_dedup

EXACT = MinHashConfig(hash="slimpajama")
OLD_SOURCES = ("RedPajamaC4", "RedPajamaCommonCrawl")


@pytest.fixture(scope="module")
def batches(sample_corpus, tmp_path_factory, ray_session):
    """The sample normalized; the old release is the dedup of two of its sources (its signatures deleted, as a
    finished run may), the new batch is the whole sample again (the old sources' documents come back)."""
    raw, _ = sample_corpus
    root = tmp_path_factory.mktemp("against")
    run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(str(raw))), str(root / "new"), progress=False)
    for s in OLD_SOURCES:  # the old batch: two sources' shards, under the same relative paths (and doc ids)
        shutil.copytree(root / "new" / s, root / "old-batch" / s)
    run_dedup(str(root / "old-batch"), str(root / "old"), cfg=EXACT, progress=False)
    shutil.rmtree(root / "old" / "_minhash")
    return root


def docs_of(paths) -> list[tuple[str, str]]:
    return [(d, t) for f in discover([str(p) for p in paths]) for b in read_documents(f, raise_on_bad)
            for d, t in zip(b.column("doc_id").to_pylist(), b.column("text").to_pylist(), strict=True)]


def reference(old: list[tuple[str, str]], new: list[tuple[str, str]]) -> tuple[set[str], set[str]]:
    """datasketch MinHash + MinHashLSH over old + new, the old documents first and never removed: (new documents
    removed against the old, new documents removed within the new batch)."""
    from datasketch import MinHashLSH

    hashes = []
    for _, text in old + new:
        c = clean_text(text)
        m = _datasketch_minhash(128, 1)
        m.update_batch([c[i: i + 13].encode("utf-8") for i in range(len(c) - 12)])
        hashes.append(m)
    lsh = MinHashLSH(num_perm=128, params=(9, 13))
    for i, m in enumerate(hashes):
        lsh.insert(i, m)
    a, b = zip(*[(i, j) for i, m in enumerate(hashes) for j in lsh.query(m) if j != i], strict=True)
    members, roots = clusters_reference(len(hashes), np.array(a), np.array(b))
    n = len(old)
    against = {new[m - n][0] for m, r in zip(members, roots, strict=True) if m >= n and r < n}
    within = {new[m - n][0] for m, r in zip(members, roots, strict=True) if m >= n and n <= r != m}
    return against, within


def removed(dedup_dir) -> dict[str, str | None]:
    """Removed doc_id -> the release folder it matched (None: removed within its batch)."""
    t = pq.read_table(os.path.join(dedup_dir, "duplicates.parquet")).to_pylist()
    return {r["doc_id"]: r["release"] for r in t if not r["kept"]}


def test_against_equals_datasketch_over_old_then_new(batches, tmp_path):
    run_dedup(str(batches / "new"), str(tmp_path / "d"), cfg=EXACT, against=[str(batches / "old")], progress=False)
    want_against, want_within = reference(docs_of([batches / "old"]), docs_of([batches / "new"]))
    got = removed(tmp_path / "d")
    assert {d for d, r in got.items() if r} == want_against and want_against
    assert {d for d, r in got.items() if r is None} == want_within and want_within
    ledger = json.loads((tmp_path / "d" / "ledger.json").read_text())["totals"]
    assert ledger["dropped"]["duplicate_of_release"]["docs"] == len(want_against)
    assert ledger["docs_in"] == ledger["docs_out"] + len(want_against) + len(want_within)
    # duplicates.parquet names the old document each one matched: a document of the old release
    old_ids = {d for d, _ in docs_of([batches / "old"])}
    rows = [r for r in pq.read_table(tmp_path / "d" / "duplicates.parquet").to_pylist() if r["release"]]
    assert rows and all(r["release_doc_id"] in old_ids for r in rows)
    exact = [r for r in rows if r["doc_id"] == r["release_doc_id"]]  # the old sources' own documents, back again
    assert len(exact) > len(rows) // 2
    # the old release is as it was: nothing written into it
    assert not (batches / "old" / "_minhash").exists()
    assert json.loads((tmp_path / "d" / "dedup.json").read_text())["duplicates_of_release"] == len(want_against)


def test_same_bytes_at_1_and_2_workers_any_partitioning_and_after_a_kill(batches, tmp_path):
    old = [str(batches / "old")]
    run_dedup(str(batches / "new"), str(tmp_path / "w1"), against=old, workers=1, cfg=EXACT, progress=False)
    run_dedup(str(batches / "new"), str(tmp_path / "w2"), against=old, workers=2, partition_bytes=20_000,
              task_bytes=200_000, cfg=EXACT, progress=False)
    skip = ("_state", "_lsh", "index", "_minhash", "_components", "_audit")  # (the index: per key range)
    one, two = tree_bytes(tmp_path / "w1", skip=skip), tree_bytes(tmp_path / "w2", skip=skip)
    summaries = [json.loads(d.pop("dedup.json")) for d in (one, two)]
    assert summaries[0].pop("lsh_partitions_per_band") < summaries[1].pop("lsh_partitions_per_band")
    assert summaries[0] == summaries[1]
    assert one == two and "duplicates.parquet" in one
    # the index holds the same (key, document) pairs however its key ranges are cut
    for band in range(9):
        pairs = []
        for run in ("w1", "w2"):
            parts = sorted((tmp_path / run / "index").glob(f"b{band:03d}-p*.keys.npy"))
            keys = np.concatenate([np.load(p) for p in parts])
            docs = np.concatenate([np.load(str(p).replace(".keys.", ".docs.")) for p in parts])
            pairs.append(sorted(zip(keys.tolist(), docs.tolist(), strict=True)))
        assert pairs[0] == pairs[1] and pairs[0]
    before = tree_bytes(tmp_path / "w1")
    for victim in ["_lsh/b002-p0000.against.npy", "_components/against.npy", "shards/RedPajamaC4/part-00000.parquet",
                   "index/b004-p0000.keys.npy", "index/index.json", "duplicates.parquet"]:
        os.remove(tmp_path / "w1" / victim)
    report = run_dedup(str(batches / "new"), str(tmp_path / "w1"), against=old, cfg=EXACT, progress=False)
    assert 0 < report.skipped < report.shards
    after = tree_bytes(tmp_path / "w1")
    assert {k: v for k, v in after.items() if "_state" not in k} == \
        {k: v for k, v in before.items() if "_state" not in k}


def test_a_third_batch_against_both_earlier_runs(batches, tmp_path):
    old = str(batches / "old")
    run_dedup(str(batches / "new"), str(tmp_path / "second"), against=[old], cfg=EXACT, progress=False)
    third = run_dedup(str(batches / "new"), str(tmp_path / "third"), against=[old, str(tmp_path / "second")],
                      cfg=EXACT, progress=False)
    # the same documents a third time: every one is in the two releases, so none is kept, each named by one
    assert third.ledger.totals().docs_out == 0
    got = removed(tmp_path / "third")
    assert set(got) == set(all_doc_ids(batches / "new"))
    assert set(got.values()) == {old, str(tmp_path / "second")}
    # the earliest release names a document it holds (C4 and Common Crawl), the second the rest
    assert all(r == old for d, r in got.items() if d.startswith(OLD_SOURCES) and d in
               {i for i, _ in docs_of([batches / "old"])})


def test_a_folder_that_is_no_complete_dedup_run_or_has_other_settings_is_one_error_line(batches, tmp_path):
    (tmp_path / "half").mkdir()
    for args, says in (
        (["--against", str(tmp_path / "half")], "not a complete dedup run (no index/index.json"),
        (["--against", str(tmp_path / "d"), "--hash", "slimpajama"], "is this run's own --out"),
        (["--against", str(batches / "old"), "--ngram", "5"], "other MinHash settings (ngram 13 there, 5 here"),
        (["--against", str(batches / "old"), "--hash", "fast"], "hash 'slimpajama' there, 'fast' here"),
        (["--against", str(batches / "old"), "--verify", "--hash", "slimpajama"], "--verify does not combine"),
    ):
        r = CliRunner().invoke(main, ["dedup", str(batches / "new"), "--out", str(tmp_path / "d"), *args])
        assert r.exit_code == 1 and r.stderr.startswith("error: ") and says in r.stderr, (args, r.output)
        assert len(r.stderr.strip().splitlines()) == 1
    with pytest.raises(SlimPajamaError, match="not a complete dedup run"):
        run_dedup(str(batches / "new"), str(tmp_path / "d"), against=[str(batches / "new")], cfg=EXACT,
                  progress=False)


def test_every_run_indexes_what_it_kept(batches):
    info = json.loads((batches / "old" / "index" / "index.json").read_text())
    kept = len(docs_of([batches / "old"]))
    assert info["docs"] == kept and sum(n for _, n in info["shards"]) == kept
    keys = np.load(batches / "old" / "index" / "b000-p0000.keys.npy")
    docs = np.load(batches / "old" / "index" / "b000-p0000.docs.npy")
    assert np.all(keys[1:] >= keys[:-1]) and docs.max() < kept and len(np.unique(docs)) == len(docs)


def test_stats_shows_the_duplicates_of_the_release_in_the_funnel(batches, tmp_path):
    run_dedup(str(batches / "new"), str(tmp_path / "d"), cfg=EXACT, against=[str(batches / "old")], progress=False)
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "d"), "--json"])
    rows = json.loads(r.stdout)["pipeline"]["sources"]
    want = json.loads((tmp_path / "d" / "dedup.json").read_text())["duplicates_of_release"]
    assert sum(v["duplicate_of_release"] for v in rows.values()) == want > 0
    assert rows["RedPajamaC4"]["duplicate_of_release"] > 0
    # issue 44.6: every dropped document counted (clusters matching the release keep none), and a source removed
    # as duplicates of the release has a duplication rate
    clusters = json.loads(r.stdout)["clusters"]
    assert clusters["duplicates"] == sum(v["duplicate"] + v["duplicate_of_release"] for v in rows.values())
    assert rows["RedPajamaC4"]["byte_duplication_rate"] > 0.5
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "d")], terminal_width=80)
    assert r.exit_code == 0 and "dup. of" in r.stdout and max(map(len, r.stdout.splitlines())) <= 80


def test_sigkill_mid_lookup_then_rerun_gives_the_same_bytes_and_release_reads_it(batches, tmp_path):
    import subprocess
    import sys

    from rerun_helpers import sigkill_once_started

    from slimpajama.core.release import ReleaseConfig
    from slimpajama.pipelines.release import run_release

    old = str(batches / "old")
    clean = tmp_path / "clean"
    run_dedup(str(batches / "new"), str(clean), cfg=EXACT, against=[old], progress=False)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "slimpajama.cli", "dedup", str(batches / "new"), "--out", str(out), "--against",
           old, "--hash", "slimpajama", "--workers", "1", "--quiet"]
    sigkill_once_started(cmd, out / "_lsh" / "_state")  # the LSH tasks: where the old index is read
    assert not (out / "index" / "index.json").exists()
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert tree_bytes(out) == tree_bytes(clean)
    # release takes the new run's output as it takes any dedup's
    report = run_release(str(out), str(tmp_path / "release"), ReleaseConfig(holdout=0.0), progress=False)
    assert report.ledger.totals().docs_in == json.loads((out / "ledger.json").read_text())["totals"]["docs_out"]


def test_a_dedup_that_fails_after_remove_leaves_nothing_release_or_against_takes(batches, tmp_path, monkeypatch):
    """Issue 44.2: OLD rerun on other data and interrupted in its index stage kept its earlier index.json beside
    band files of the new run: `dedup NEW --against OLD` removed every document of both sources, then failed, and
    `release` took what it had published. A run is complete only once its index and run file are written."""
    from slimpajama.pipelines import dedup as dedup_module
    from slimpajama.pipelines.paths import what_is
    from slimpajama.pipelines.release import run_release

    old = tmp_path / "old"
    shutil.copytree(batches / "old", old)  # a complete run, indexed
    assert what_is(str(old)).kind == "dedup"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # the driver stopped while the rerun's index tasks ran

    monkeypatch.setattr(dedup_module, "write_index_file", interrupted)
    with pytest.raises(KeyboardInterrupt):  # a rerun of OLD on other data (the whole sample)
        run_dedup(str(batches / "new"), str(old), cfg=EXACT, progress=False)
    monkeypatch.undo()
    assert what_is(str(old)).kind == "unfinished_dedup"
    with pytest.raises(SlimPajamaError, match="not a complete dedup run"):
        run_dedup(str(batches / "new"), str(tmp_path / "new"), cfg=EXACT, against=[str(old)], progress=False)
    with pytest.raises(SlimPajamaError, match="an unfinished dedup run .*rerun that dedup"):
        run_release(str(old), str(tmp_path / "release"), progress=False)
    r = CliRunner().invoke(main, ["release", str(old), "--out", str(tmp_path / "r2")])
    assert r.exit_code == 1 and r.output.startswith("error: ") and "unfinished dedup run" in r.output
    run_dedup(str(batches / "new"), str(old), cfg=EXACT, progress=False)  # the rerun finishes it
    assert what_is(str(old)).kind == "dedup"


def test_an_index_of_the_earlier_fast_scheme_is_refused_saying_to_rebuild_it(batches, tmp_path):
    """Issue 45: the fast hash's scheme is in every fingerprint and index; band keys of scheme 1 (128
    permutations) never match scheme 2's (one permutation, densified)."""
    from slimpajama.pipelines.dedup import MinhashStage

    old = tmp_path / "old"
    shutil.copytree(batches / "old", old)
    index = old / "index" / "index.json"
    info = json.loads(index.read_text())
    info["config"] = {**info["config"], "hash": "fast"}
    info["config"].pop("scheme", None)  # an index written before schemes were versioned
    index.write_text(json.dumps(info))
    with pytest.raises(SlimPajamaError, match=r"made by the fast hash's scheme 1, this version's is 2 .*rebuild it"):
        run_dedup(str(batches / "new"), str(tmp_path / "d"), against=[str(old)], progress=False)
    assert MinhashStage(MinHashConfig()).fingerprint()["scheme"] == 2  # signatures of scheme 1 are recomputed
