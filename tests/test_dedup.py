import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ARXIV_SAMPLE, CC_SAMPLE, DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from slimpajama.core.cleaned import clean_text
from slimpajama.core.lsh import clusters, clusters_reference, new_forest, partition_edges, union_edges
from slimpajama.core.minhash import (
    MinHashConfig,
    _datasketch_minhash,
    band_keys,
    fast_signatures,
    fast_signatures_numpy,
    signatures,
)
from slimpajama.core.quality import dedup_quality
from slimpajama.errors import raise_on_bad
from slimpajama.io.discover import discover
from slimpajama.io.documents import read_documents
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
from slimpajama.pipelines.dedup import run_dedup


@pytest.fixture(scope="module")
def normalized(sample_corpus, tmp_path_factory, ray_session):
    raw, truth = sample_corpus
    out = tmp_path_factory.mktemp("normalized")
    run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(str(raw))), str(out), progress=False)
    return out, truth


@pytest.fixture(scope="module")
def real_normalized(tmp_path_factory, ray_session):
    """The two real samples, plus near-copies of some of their documents so there is something to find."""
    root = tmp_path_factory.mktemp("real")
    (root / "raw" / "RedPajamaArXiv").mkdir(parents=True)
    (root / "raw" / "RedPajamaCommonCrawl").mkdir(parents=True)
    shutil.copy(ARXIV_SAMPLE, root / "raw" / "RedPajamaArXiv" / "arxiv.jsonl")
    cc = [json.loads(line) for line in open(CC_SAMPLE)]
    with open(root / "raw" / "RedPajamaCommonCrawl" / "cc.jsonl", "w") as f:
        for row in cc:
            f.write(json.dumps(row) + "\n")
        for row in cc[:4]:  # a copy with a few words changed, and an exact copy
            words = row["text"].split(" ")
            words[len(words) // 2] = "CHANGED"
            f.write(json.dumps({"text": " ".join(words)}) + "\n")
        f.write(json.dumps({"text": cc[5]["text"]}) + "\n")
    out = root / "normalized"
    run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(str(root / "raw"))), str(out), progress=False)
    return out


def removed_ids(dedup_dir) -> set[str]:
    t = pq.read_table(os.path.join(dedup_dir, "duplicates.parquet"))
    return {d for d, k in zip(t["doc_id"].to_pylist(), t["kept"].to_pylist(), strict=True) if not k}


def all_doc_ids(normalized_dir) -> list[str]:
    return [d for f in discover(str(normalized_dir)) for b in read_documents(f, raise_on_bad)
            for d in b.column("doc_id").to_pylist()]


def tree_bytes(root, skip=("_state",)) -> dict:
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in files:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


# ------------------------------------------------------------------------------------------------ signatures


# what the fused kernel treats apart: Σ and İ (left to Python), every kind of whitespace, punctuation, 4-byte
# characters, and surrogates (a Python str may hold them)
_SPECIAL = "ΣİKß\u0345\x1c\x1f\x85\xa0\u2028\u3000 \t\n.,;!-_'\"🙂\ud800"
TEXTS = st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)
                 | st.text(alphabet="ab c", max_size=60) | st.text(alphabet=_SPECIAL + "aZ", max_size=60),
                 min_size=1, max_size=8)


@settings(max_examples=80, deadline=None)
@given(TEXTS)
def test_fast_kernel_matches_its_numpy_definition(texts):
    """The kernel cleans as it reads; the definition cleans with `clean_text` and hashes every shingle."""
    cfg = MinHashConfig(num_perm=32, ngram=5, bands=4, rows=8)
    want = fast_signatures_numpy(texts, cfg)
    assert np.array_equal(fast_signatures(texts, cfg), want)
    assert np.array_equal(fast_signatures([clean_text(t) for t in texts], cfg), want)  # cleaning is idempotent
    if not any("\ud800" in t for t in texts):  # Arrow holds valid UTF-8 only
        assert np.array_equal(fast_signatures(pa.array(["x" * 9, *texts], pa.large_string())[1:], cfg), want)


def test_fast_kernel_matches_its_numpy_definition_on_real_pages():
    """The default settings on long documents: blocks of shingles and a short last one, 128 permutations, from
    the Arrow column the stage reads."""
    cfg = MinHashConfig()
    texts = [json.loads(line)["text"][:20_000 + i] for i, line in enumerate(open(CC_SAMPLE))]
    texts += [json.loads(line)["text"] for line in open(DATA / "web-pages.jsonl")]
    assert np.array_equal(fast_signatures(pa.array(texts), cfg), fast_signatures_numpy(texts, cfg))


@pytest.mark.parametrize("text", [
    "home about docs blog. " * 40 + "the page itself, once. " + "home about docs blog. " * 40,
    "a" * 3000,
    "ab" * 1500 + "abc" * 1000,
    "".join(chr(97 + (i * i) % 26) for i in range(2000)) * 3,  # a whole page repeated
])
def test_repeated_runs_give_the_signature_of_the_shingle_set(text):
    cfg = MinHashConfig(num_perm=16, ngram=13, bands=2, rows=8)
    assert np.array_equal(fast_signatures([text, "x" + text], cfg), fast_signatures_numpy([text, "x" + text], cfg))


def test_a_document_of_a_megabyte():
    """~750k characters of distinct text and a repeat of part of it: the kernel equals the definition."""
    rng = np.random.default_rng(0)
    page = "".join(rng.choice(list("abcdefghij klmnopqrstuvwxyz"), size=700_000))
    text = page + page[:50_000]
    cfg = MinHashConfig(num_perm=4, ngram=13, bands=1, rows=4)
    assert np.array_equal(fast_signatures([text], cfg), fast_signatures_numpy([text], cfg))


def test_slimpajama_mode_is_bit_identical_to_datasketch_per_shingle_updates():
    cfg = MinHashConfig(hash="slimpajama")
    texts = [t for t in (open(CC_SAMPLE).read().split("\n")) if t][:3] + ["Ünïcödé 文字 🙂 test " * 5]
    ours = signatures(texts, cfg)
    for text, sig in zip(texts, ours, strict=True):
        m = _datasketch_minhash(128, 1)  # SlimPajama: MinHash(num_perm=128) fed one UTF-8 shingle at a time
        c = clean_text(text)
        for i in range(len(c) - 12):
            m.update(c[i: i + 13].encode("utf-8"))
        assert np.array_equal(sig, np.asarray(m.hashvalues).astype(np.uint32))


def test_threshold_picks_bands_like_datasketch():
    cfg = MinHashConfig.for_threshold(0.8)
    assert (cfg.bands, cfg.rows) == (9, 13)  # SlimPajama's setting
    assert MinHashConfig.for_threshold(0.5).bands > 9


def test_band_keys_collide_exactly_when_band_values_match():
    cfg = MinHashConfig(num_perm=8, bands=2, rows=4)
    sigs = np.array([[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 9, 9, 9, 9], [1, 2, 3, 5, 5, 6, 7, 8]], np.uint32)
    k = band_keys(sigs, cfg)
    assert k[0, 0] == k[0, 1] != k[0, 2]
    assert k[1, 0] == k[1, 2] != k[1, 1]


# ------------------------------------------------------------------------------------------------ lsh + components


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 60), st.lists(st.tuples(st.integers(0, 59), st.integers(0, 59)), max_size=80))
def test_union_find_matches_scipy_connected_components(n, edges):
    edges = [(a % n, b % n) for a, b in edges]
    a = np.array([e[0] for e in edges], np.uint32)
    b = np.array([e[1] for e in edges], np.uint32)
    parent = new_forest(n)
    union_edges(parent, a, b)
    members, roots = clusters(parent)
    ref_m, ref_r = clusters_reference(n, a, b)
    assert members.tolist() == ref_m.tolist() and roots.tolist() == ref_r.tolist()


def test_partition_edges_are_stars_from_the_first_document():
    keys = np.array([7, 3, 7, 3, 9, 7], np.uint64)
    a, b = partition_edges(keys, np.arange(10, 16, dtype=np.uint32))
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [(10, 12), (10, 15), (11, 13)]


# ------------------------------------------------------------------------------------------------ the stage


def merged_fraction(pairs, cluster_of) -> float:
    return sum(cluster_of.get(p["a"], -1) == cluster_of.get(p["b"], -2) for p in pairs) / len(pairs)


def test_quality_against_planted_ground_truth(normalized, tmp_path):
    norm, truth = normalized
    report = run_dedup(str(norm), str(tmp_path / "d"), progress=False)
    t = pq.read_table(tmp_path / "d" / "duplicates.parquet")
    cluster_of = dict(zip(t["doc_id"].to_pylist(), t["cluster_id"].to_pylist(), strict=True))
    q = dedup_quality(truth, cluster_of, removed_ids(tmp_path / "d"))
    # SlimPajama's 9 x 13 bands catch a pair at Jaccard J with probability 1 - (1 - J^13)^9: 0.998 at 0.95,
    # 0.93 at 0.9, 0.69 at 0.85, 0.08 at 0.7, 0.0011 at 0.5.
    assert merged_fraction([p for p in truth["pairs"] if p["jaccard"] >= 0.95], cluster_of) == 1.0, q
    assert merged_fraction([p for p in truth["pairs"] if p["jaccard"] >= 0.9], cluster_of) >= 0.9, q
    low = [p for p in truth["pairs"] if p["jaccard"] <= 0.5]
    assert low and merged_fraction(low, cluster_of) == 0.0
    assert q["precision"] >= 0.9, q
    # the ledger: in = kept + duplicate, per source, and it matches the audit table
    ledger = json.loads((tmp_path / "d" / "ledger.json").read_text())
    assert ledger["balanced"] and report.ledger.totals().dropped["duplicate"][0] == q["removed"]
    # every removed document's kept document is in the output, and only kept documents are
    kept_ids = set(all_doc_ids(tmp_path / "d" / "shards"))
    for doc_id, kept in zip(t["doc_id"].to_pylist(), t["kept_doc_id"].to_pylist(), strict=True):
        assert kept in kept_ids and (doc_id == kept) == (doc_id in kept_ids)


def test_high_recall_setting_reaches_98_percent_at_jaccard_09(normalized, tmp_path):
    """More, shorter bands find nearly every pair above 0.9; --verify then drops the candidates whose estimated
    Jaccard is under the 0.8 threshold, so precision stays."""
    norm, truth = normalized
    cfg = MinHashConfig(bands=20, rows=6)
    run_dedup(str(norm), str(tmp_path / "d"), cfg=cfg, verify=True, progress=False)
    t = pq.read_table(tmp_path / "d" / "duplicates.parquet")
    cluster_of = dict(zip(t["doc_id"].to_pylist(), t["cluster_id"].to_pylist(), strict=True))
    assert merged_fraction([p for p in truth["pairs"] if p["jaccard"] >= 0.9], cluster_of) >= 0.98
    assert merged_fraction([p for p in truth["pairs"] if p["jaccard"] <= 0.7], cluster_of) == 0.0
    assert dedup_quality(truth, cluster_of, removed_ids(tmp_path / "d"))["precision"] == 1.0


def reference_duplicates(normalized_dir) -> set[str]:
    """SlimPajama's method written plainly: datasketch MinHash per document, datasketch MinHashLSH with the same
    9 x 13 bands, candidate pairs, scipy connected components, keep the first document of each component."""
    from datasketch import MinHashLSH

    ids, hashes = [], []
    for f in discover(str(normalized_dir)):
        for b in read_documents(f, raise_on_bad):
            for doc_id, text in zip(b.column("doc_id").to_pylist(), b.column("text").to_pylist(), strict=True):
                c = clean_text(text)
                m = _datasketch_minhash(128, 1)
                m.update_batch([c[i: i + 13].encode("utf-8") for i in range(len(c) - 12)])
                ids.append(doc_id)
                hashes.append(m)
    lsh = MinHashLSH(num_perm=128, params=(9, 13))
    for i, m in enumerate(hashes):
        lsh.insert(i, m)
    a, b = [], []
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i:
                a.append(i)
                b.append(j)
    members, roots = clusters_reference(len(ids), np.array(a, np.int64), np.array(b, np.int64))
    return {ids[m] for m, r in zip(members, roots, strict=True) if m != r}


@pytest.mark.parametrize("which", ["sample", "real"])
def test_exact_mode_equals_plain_reference(which, normalized, real_normalized, tmp_path):
    norm = normalized[0] if which == "sample" else real_normalized
    run_dedup(str(norm), str(tmp_path / "d"), cfg=MinHashConfig(hash="slimpajama"), progress=False)
    ours = removed_ids(tmp_path / "d")
    assert ours == reference_duplicates(norm)
    assert ours  # there is something to agree on


def test_fast_mode_agrees_with_slimpajama_mode(normalized, real_normalized, tmp_path):
    for i, norm in enumerate([normalized[0], real_normalized]):
        run_dedup(str(norm), str(tmp_path / f"f{i}"), progress=False)
        run_dedup(str(norm), str(tmp_path / f"s{i}"), cfg=MinHashConfig(hash="slimpajama"), progress=False)
        docs = all_doc_ids(norm)
        fast, exact = removed_ids(tmp_path / f"f{i}"), removed_ids(tmp_path / f"s{i}")
        agree = sum((d in fast) == (d in exact) for d in docs) / len(docs)
        assert agree >= 0.99, (i, agree)


def test_verify_only_removes_candidates(normalized, tmp_path):
    norm, truth = normalized
    run_dedup(str(norm), str(tmp_path / "plain"), progress=False)
    run_dedup(str(norm), str(tmp_path / "verified"), verify=True, progress=False)
    assert removed_ids(tmp_path / "verified") <= removed_ids(tmp_path / "plain")
    plain = json.loads((tmp_path / "plain" / "dedup.json").read_text())
    verified = json.loads((tmp_path / "verified" / "dedup.json").read_text())
    assert verified["candidate_edges"] == plain["candidate_edges"] >= verified["edges"]


def test_same_bytes_with_1_and_2_workers_any_partitioning_and_after_resume(normalized, tmp_path):
    norm, _ = normalized
    run_dedup(str(norm), str(tmp_path / "w1"), minhash_dir=str(tmp_path / "m1"), workers=1, progress=False)
    run_dedup(str(norm), str(tmp_path / "w2"), minhash_dir=str(tmp_path / "m2"), workers=2, progress=False,
              partition_bytes=20_000)  # many key ranges per band
    skip = ("_state", "_lsh", "index")  # (both cut by key range: as many files as ranges per band)
    one, two = tree_bytes(tmp_path / "w1", skip=skip), tree_bytes(tmp_path / "w2", skip=skip)
    summaries = [json.loads(d.pop("dedup.json")) for d in (one, two)]
    assert summaries[0].pop("lsh_partitions_per_band") < summaries[1].pop("lsh_partitions_per_band")
    assert summaries[0] == summaries[1]
    assert one.keys() == two.keys() and one == two
    assert len(os.listdir(tmp_path / "w2" / "_lsh")) > len(os.listdir(tmp_path / "w1" / "_lsh"))
    # a run killed mid-way leaves some shards of each stage missing: the rerun redoes them, same bytes
    before = tree_bytes(tmp_path / "w1")
    for victim in ["_lsh/b003-p0000.npy", "shards/RedPajamaC4/part-00000.parquet", "_components/roots.npy",
                   "duplicates.parquet"]:
        os.remove(tmp_path / "w1" / victim)
    shutil.rmtree(tmp_path / "m1" / "RedPajamaGithub")
    report = run_dedup(str(norm), str(tmp_path / "w1"), minhash_dir=str(tmp_path / "m1"), progress=False)
    assert 0 < report.skipped < report.shards
    after = tree_bytes(tmp_path / "w1")
    assert {k: v for k, v in after.items() if "_state" not in k} == {k: v for k, v in before.items()
                                                                      if "_state" not in k}


def test_sigkill_mid_dedup_then_rerun_gives_the_same_bytes(normalized, tmp_path):
    import subprocess
    import sys

    from rerun_helpers import sigkill_once_started

    norm, _ = normalized
    clean = tmp_path / "clean"
    run_dedup(str(norm), str(clean / "dedup"), progress=False)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "slimpajama.cli", "dedup", str(norm), "--out", str(out / "dedup"), "--workers",
           "1", "--quiet"]
    sigkill_once_started(cmd, out / "dedup" / "_minhash" / "_state")  # the default: private to this dedup
    assert not (out / "dedup" / "ledger.json").exists()
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert tree_bytes(out / "dedup").keys() == tree_bytes(clean / "dedup").keys()
    assert tree_bytes(out / "dedup") == tree_bytes(clean / "dedup")
