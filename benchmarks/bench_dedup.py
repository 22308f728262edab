"""Dedup benchmarks.

    python benchmarks/bench_dedup.py --signatures        fast signatures vs SlimPajama's per-shingle MinHash.update
                                                         loop and MinHash.update_batch, same documents, MB/s per core
                                                         of cleaned text
    python benchmarks/bench_dedup.py --lsh-docs 1000000  peak RSS of the LSH + components steps over generated
                                                         signatures (bytes per document over the process baseline)
    python benchmarks/bench_dedup.py --quality           decisions on the default sample corpus: recall per planted
                                                         level, fast/slimpajama agreement, what --verify changes
    python benchmarks/bench_dedup.py --scurve [--web]    the LSH S-curve on planted pairs of real text (web pages with
                                                         --web; long and short documents): per Jaccard bin, the share
                                                         clustered by the fast hash against 1-(1-J^r)^b for 9x13 and
                                                         20x6, its agreement with the exact (SlimPajama) hash and,
                                                         where $PEER_RENSA has it, rensa's RMinHash and CMinHash
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
from common import current_rss_mb, peak_rss_mb, sample_corpus, timed  # noqa: E402

from slimpajama.core.cleaned import clean_text  # noqa: E402
from slimpajama.core.minhash import MinHashConfig, _datasketch_minhash, fast_signatures, signatures  # noqa: E402
from slimpajama.errors import raise_on_bad  # noqa: E402
from slimpajama.io.discover import discover  # noqa: E402
from slimpajama.io.documents import read_documents  # noqa: E402
from slimpajama.pipelines.memory import peak_rss_mb as current_peak_rss_mb  # noqa: E402
from slimpajama.pipelines.memory import reset_peak_rss  # noqa: E402


def bench_signatures(target_mb: float = 1.5) -> dict:
    cleaned, mb = [], 0.0
    for f in discover(sample_corpus(20_000)):
        for b in read_documents(f, raise_on_bad):
            for t in b.column("text").to_pylist():
                c = clean_text(t)
                if mb < target_mb and len(c) < 50_000:
                    cleaned.append(c)
                    mb += len(c.encode()) / 1e6
    cfg = MinHashConfig()
    fast_signatures(cleaned[:2], cfg)  # compile (cached on disk after the first run)

    def per_shingle():
        for c in cleaned:
            m = _datasketch_minhash(128, 1)
            for i in range(len(c) - 12):
                m.update(c[i: i + 13].encode("utf-8"))

    t_fast, _ = timed(lambda: fast_signatures(cleaned, cfg), repeat=5)
    t_batch, _ = timed(lambda: signatures(cleaned, MinHashConfig(hash="slimpajama"), already_clean=True), repeat=1)
    t_loop, _ = timed(per_shingle, repeat=1)
    return {"docs": len(cleaned), "cleaned_mb": round(mb, 2),
            "fast_mb_per_s": round(mb / t_fast, 2), "update_batch_mb_per_s": round(mb / t_batch, 3),
            "per_shingle_update_mb_per_s": round(mb / t_loop, 3),
            "speedup_vs_per_shingle": round(t_loop / t_fast, 1), "speedup_vs_update_batch": round(t_batch / t_fast, 1)}


def make_signature_shards(root: str, n_docs: int, shards: int, cfg: MinHashConfig, seed: int = 0) -> list[int]:
    """minhash-stage files for `n_docs` documents: random band keys, 5% of documents copying another's bands."""
    rng = np.random.default_rng(seed)
    rows = [n_docs // shards + (i < n_docs % shards) for i in range(shards)]
    for i, n in enumerate(rows):
        bands = rng.integers(0, 2**64, size=(cfg.bands, n), dtype=np.uint64)
        dup = rng.random(n) < 0.05
        src = rng.integers(0, n, size=int(dup.sum()))
        bands[:, dup] = bands[:, src]
        np.save(os.path.join(root, f"s{i:04d}.bands.npy"), bands)
        np.save(os.path.join(root, f"s{i:04d}.valid.npy"), np.ones(n, dtype=bool))
        np.save(os.path.join(root, f"s{i:04d}.sig.npy"), np.zeros((0, cfg.num_perm), dtype=np.uint32))
    return rows


def bench_lsh_memory(n_docs: int, shards: int, partition_bytes: int) -> dict:
    """Runs the measurement in a child process with a fresh peak-memory mark."""
    import subprocess

    with tempfile.TemporaryDirectory() as root:
        out = subprocess.run([sys.executable, __file__, "--lsh-docs", str(n_docs), "--shards", str(shards),
                              "--partition-bytes", str(partition_bytes), "--root", root], check=True,
                             capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def lsh_memory_child(root: str, n_docs: int, shards: int, partition_bytes: int) -> dict:
    from slimpajama.core.lsh import clusters, new_forest, union_edges  # noqa: F401  (compile before the baseline)
    from slimpajama.io.discover import InputFile
    from slimpajama.pipelines.dedup import ComponentsStage, LshStage, lsh_partitions
    from slimpajama.pipelines.stage import Task

    cfg = MinHashConfig()
    rows = make_signature_shards(root, n_docs, shards, cfg)
    p = new_forest(4)
    union_edges(p, np.array([0], np.uint32), np.array([1], np.uint32))
    clusters(p)
    import gc

    gc.collect()
    offsets = [0, *np.cumsum(rows).tolist()]
    parts = lsh_partitions(n_docs, partition_bytes)
    files = {name: tuple(InputFile(os.path.join(root, f"s{i:04d}{s}"), f"s{i:04d}{s}", 0) for i in range(shards))
             for name, s in (("signatures", ".sig.npy"), ("bands", ".bands.npy"), ("valid", ".valid.npy"))}
    baseline = current_rss_mb()
    reset_peak_rss()
    t0 = time.perf_counter()
    lsh_out = os.path.join(root, "lsh")
    os.makedirs(lsh_out)
    stage = LshStage(cfg, verify=False)
    edges = 0
    for b in range(cfg.bands):
        for part in range(parts):
            r = stage.run_task(Task(f"b{b}p{part}", (), {"band": b, "part": part, "parts": parts,
                                                               "offsets": offsets}, side=files), lsh_out)
            edges += r.extra["edges"]
    lsh_peak = current_peak_rss_mb()
    edge_files = tuple(InputFile(os.path.join(lsh_out, f), f, 0) for f in sorted(os.listdir(lsh_out)))
    t1 = time.perf_counter()
    comp = ComponentsStage().run_task(Task("c", edge_files, {"docs": n_docs}), os.path.join(root, "comp"))
    components_seconds = time.perf_counter() - t1
    peak = current_peak_rss_mb()
    return {"docs": n_docs, "lsh_partitions_per_band": parts, "edges": edges,
            "duplicates": comp.extra["duplicates"], "seconds": round(time.perf_counter() - t0, 2),
            "components_seconds": round(components_seconds, 2),
            "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak, 1),
            "lsh_bytes_per_doc": round((lsh_peak - baseline) * 2**20 / n_docs, 1),
            "lsh_components_bytes_per_doc": round((peak - baseline) * 2**20 / n_docs, 1)}


def bench_quality() -> dict:
    import pyarrow.parquet as pq

    from slimpajama.core.quality import dedup_quality
    from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
    from slimpajama.pipelines.dedup import run_dedup
    from slimpajama.tools.sample_corpus import GROUND_TRUTH_FILE

    raw = sample_corpus(2000, seed=0)  # what `make sample` writes
    truth = json.load(open(os.path.join(raw, GROUND_TRUTH_FILE)))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        norm = os.path.join(tmp, "norm")
        run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(raw)), norm, progress=False)
        runs = {"fast": (MinHashConfig(), False), "slimpajama": (MinHashConfig(hash="slimpajama"), False),
                "fast_verify": (MinHashConfig(), True),
                "high_recall_20x6_verify": (MinHashConfig(bands=20, rows=6), True)}
        removed = {}
        docs = [d for f in discover(norm) for b in read_documents(f, raise_on_bad)
                for d in b.column("doc_id").to_pylist()]
        for name, (cfg, verify) in runs.items():
            d = os.path.join(tmp, name)
            run_dedup(norm, d, cfg=cfg, verify=verify, progress=False)
            t = pq.read_table(os.path.join(d, "duplicates.parquet"))
            cluster_of = dict(zip(t["doc_id"].to_pylist(), t["cluster_id"].to_pylist(), strict=True))
            removed[name] = {x for x, k in zip(t["doc_id"].to_pylist(), t["kept"].to_pylist(), strict=True) if not k}
            out[name] = dedup_quality(truth, cluster_of, removed[name])
            high = [p for p in truth["pairs"] if p["jaccard"] >= 0.9]
            out[name]["recall_jaccard_ge_0.9"] = round(
                sum(cluster_of.get(p["a"], -1) == cluster_of.get(p["b"], -2) for p in high) / len(high), 4)
        out["fast_vs_slimpajama_agreement"] = round(
            sum((x in removed["fast"]) == (x in removed["slimpajama"]) for x in docs) / len(docs), 4)
    return out


RENSA_SIGS = r'''
import json, sys
from rensa import CMinHash, RMinHash

views, out = json.load(open(sys.argv[1])), {}
for name, cls in (("rmin", RMinHash), ("cmin", CMinHash)):
    out[name] = []
    for v in views:
        m = cls(num_perm=128, seed=1)
        m.update([v[i: i + 13] for i in range(len(v) - 12)])
        out[name].append([int(x) for x in m.digest()])
json.dump(out, open(sys.argv[2], "w"))
'''


def bench_scurve(web: bool) -> dict:
    """Planted pairs of the bench corpus's real text (its documents' cleaned views cut into pieces: long ones of
    1-6k characters, short ones of 200-600), each clustered or not by each hash at 9x13 and 20x6 (a pair is
    clustered when its two documents share a band key)."""
    import subprocess

    from common import real_corpus, web_corpus

    from slimpajama.core.minhash import band_keys
    from slimpajama.core.quality import planted_pairs, s_curve

    raw = web_corpus(20) if web else real_corpus(20)
    views = [clean_text(t) for f in discover(raw) for b in read_documents(f, raise_on_bad)
             for t in b.column("text").to_pylist()]
    views = views[:: max(1, len(views) // 400)]
    long_ = [v[i: i + 1000 + (i * 7919) % 5000] for v in views for i in range(0, len(v) - 1000, 5000)][:400]
    short = [v[i: i + 200 + (i * 31) % 400] for v in views for i in range(0, len(v) - 600, 1600)][:400]
    out = {"corpus": "web pages" if web else "real text (code, docs, LaTeX, web)"}
    for kind, bases, rates in (("long", long_, (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07)),
                               ("short", short, (0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.25))):
        a, b, jac = planted_pairs(bases, rates)
        sigs = {"fast": (signatures(a, MinHashConfig()), signatures(b, MinHashConfig())),
                "exact": (signatures(a, MinHashConfig(hash="slimpajama"), already_clean=True),
                          signatures(b, MinHashConfig(hash="slimpajama"), already_clean=True))}
        if os.environ.get("PEER_RENSA"):
            with tempfile.TemporaryDirectory() as d:
                got = {}
                for side, texts in (("a", a), ("b", b)):
                    with open(os.path.join(d, f"{side}.json"), "w") as f:
                        json.dump(texts, f)
                    subprocess.run([os.environ["PEER_RENSA"], "-c", RENSA_SIGS, os.path.join(d, f"{side}.json"),
                                    os.path.join(d, f"{side}.sigs.json")], check=True)
                    with open(os.path.join(d, f"{side}.sigs.json")) as f:
                        got[side] = json.load(f)
                for name in ("rmin", "cmin"):  # (rensa 0.5 has no OptDensMinHash)
                    sigs[f"rensa_{name}"] = tuple(np.array(got[side][name], np.uint32) for side in "ab")
        res = {"pairs": len(a)}
        for bands, rows in ((9, 13), (20, 6)):
            cfg = MinHashConfig(bands=bands, rows=rows)
            hits = {k: (band_keys(x, cfg) == band_keys(y, cfg)).any(axis=0) for k, (x, y) in sigs.items()}
            res[f"{bands}x{rows}"] = {
                "fast": s_curve(hits["fast"], jac, bands, rows, min_pairs=20),
                "exact": s_curve(hits["exact"], jac, bands, rows, min_pairs=20),
                **{f"fast_agrees_with_{k}": round(float((hits["fast"] == h).mean()), 4)
                   for k, h in hits.items() if k != "fast"},
                **{f"{k}_agrees_with_exact": round(float((hits[k] == hits["exact"]).mean()), 4)
                   for k in hits if k.startswith("rensa")}}
            res[f"{bands}x{rows}"]["max_abs_z_fast"] = max(abs(r["z"]) for r in res[f"{bands}x{rows}"]["fast"])
        out[kind] = res
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--signatures", action="store_true")
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--scurve", action="store_true")
    ap.add_argument("--web", action="store_true")
    ap.add_argument("--lsh-docs", type=int, default=0)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--partition-bytes", type=int, default=256 << 20)
    ap.add_argument("--root", default=None)
    args = ap.parse_args()
    if args.signatures:
        result = bench_signatures()
    elif args.quality:
        result = bench_quality()
    elif args.scurve:
        result = bench_scurve(args.web)
    elif args.root:
        result = lsh_memory_child(args.root, args.lsh_docs, args.shards, args.partition_bytes)
    else:
        result = bench_lsh_memory(args.lsh_docs, args.shards, args.partition_bytes)
    result["peak_rss_mb_process"] = round(peak_rss_mb(), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
