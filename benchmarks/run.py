"""`make bench`: every benchmark, each method in its own process (for its peak memory), one JSON of figures.

Speed is reported as a ratio against a baseline measured in the same run on the same data, never as an absolute
pass/fail: absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, os.path.join(HERE, script), *args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_read(docs: int) -> dict:
    base = run("bench_read.py", "--method", "baseline", "--docs", str(docs))
    ours = run("bench_read.py", "--method", "reader", "--docs", str(docs))
    return {"corpus_mb": round(base["mb"], 1), "docs": ours["docs"],
            "reader_mb_per_s": round(ours["mb_per_s"], 1), "baseline_mb_per_s": round(base["mb_per_s"], 1),
            "ratio_vs_zstandard_json_loads": round(ours["mb_per_s"] / base["mb_per_s"], 2),
            "reader_peak_rss_mb": round(ours["peak_rss_mb"], 1),
            "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1)}


def bench_normalize(docs: int, memory_sizes: list[str], web_mb: float = 0) -> dict:
    def versus(*corpus: str) -> dict:
        ref = run("bench_normalize.py", "--method", "reference", *corpus)
        ours = run("bench_normalize.py", "--method", "ours", *corpus)
        return {"corpus_mb": round(ref["mb"], 1), "docs": ref["docs"], "kept": ours["kept"],
                "ours_mb_per_s_per_core": round(ours["mb_per_s"], 2),
                "reference_mb_per_s_per_core": round(ref["mb_per_s"], 2),
                "speedup_vs_ftfy_and_reference_filter": round(ours["mb_per_s"] / ref["mb_per_s"], 2),
                "identical_output": ours["output_sha256"] == ref["output_sha256"]}

    out = versus("--docs", str(docs))
    if web_mb:
        out["web_pages"] = versus("--web-mb", str(web_mb))
    for size in memory_sizes:
        m = run("bench_normalize.py", "--memory", size)
        out[f"shard_task_{size}"] = {"mb_per_s": round(m["mb_per_s"], 2), "peak_rss_mb": round(m["peak_rss_mb"], 1),
                                     "docs": m["docs"]}
    return out


def bench_dedup(lsh_docs: int) -> dict:
    out = {"signatures": run("bench_dedup.py", "--signatures")}
    out["lsh_components_memory"] = run("bench_dedup.py", "--lsh-docs", str(lsh_docs))
    out["lsh_components_memory_4_partitions"] = run("bench_dedup.py", "--lsh-docs", str(lsh_docs),
                                                    "--partition-bytes", str(lsh_docs * 48 // 4))
    out["quality_sample_corpus"] = run("bench_dedup.py", "--quality")
    out["s_curve_real_text"] = run("bench_dedup.py", "--scurve")
    out["s_curve_web_pages"] = run("bench_dedup.py", "--scurve", "--web")
    return out


def bench_tokens(docs: int) -> dict:
    bare = run("bench_tokens.py", "--method", "bare", "--docs", str(docs))
    ours = run("bench_tokens.py", "--method", "ours", "--docs", str(docs))
    return {"tokens": ours["tokens"], "bare_encode_ordinary_batch_tokens_per_s": round(bare["tokens_per_s"]),
            "tokenize_pack_tokens_per_s": round(ours["tokens_per_s"]),
            "ratio_vs_bare_tiktoken": round(ours["tokens_per_s"] / bare["tokens_per_s"], 3),
            "tokenize_seconds": round(ours["tokenize_seconds"], 2), "pack_seconds": round(ours["pack_seconds"], 2),
            "reader_random_access": run("bench_tokens.py", "--reader"),
            "tokenizer_json": run("bench_tokens.py", "--hf", "--docs", str(docs))}


def bench_dedup_peers(mb: float) -> dict:
    """The whole dedup against SlimPajama's algorithm, datatrove where $PEER_PYTHON has it and rensa where
    $PEER_RENSA has it, on the real text and on web-shaped pages."""
    def versus(*corpus: str) -> dict:
        out = {m: run("bench_dedup_peers.py", "--method", m, "--mb", str(mb), *corpus) for m in ("ours", "reference")}
        for m, env in (("datatrove", "PEER_PYTHON"), ("rensa", "PEER_RENSA")):
            if os.environ.get(env):
                out[m] = run("bench_dedup_peers.py", "--method", m, "--mb", str(mb), *corpus)
        for m in ("reference", "datatrove", "rensa"):
            if m in out:
                out[f"speedup_vs_{m}"] = round(out["ours"]["mb_per_s"] / out[m]["mb_per_s"], 1)
        return out

    return {**versus(), "web_pages": versus("--web")}


def bench_e2e(gb: float, real_mb: float, web_mb: float) -> dict:
    out = run("bench_e2e.py", "--gb", str(gb)) if gb else {}
    if real_mb:
        out["real_text"] = run("bench_e2e.py", "--real-mb", str(real_mb))
    if web_mb:  # the shape of crawled pages: a few non-ASCII characters in nearly every document
        out["web_pages"] = run("bench_e2e.py", "--web-mb", str(web_mb))
    return out


def bench_split(single_gb: float, rp_gb: float) -> dict:
    return run("bench_split.py", "--single-gb", str(single_gb), "--rp-gb", str(rp_gb))


def bench_startup() -> dict:
    return run("bench_startup.py")


def bench_export() -> dict:
    return run("bench_export.py")


def bench_train(loss_tokens: int) -> dict:
    """CPU: the fused chunked loss against autograd through the full logits. CUDA (where torch sees a GPU): the
    issue's targets, with SDPA + bias, uncompiled (the trainer before FlexAttention) as the baseline."""
    plain = run("bench_train.py", "--loss", "plain", "--tokens", str(loss_tokens))
    fused = run("bench_train.py", "--loss", "fused", "--tokens", str(loss_tokens), "--chunk-tokens", "2048")
    out = {"loss_fwd_bwd": {"device": fused["device"], "tokens": loss_tokens, "vocab": 50257, "dim": fused["dim"],
                            "plain_seconds": round(plain["seconds"], 3), "fused_seconds": round(fused["seconds"], 3),
                            "time_ratio_fused_vs_plain": round(fused["seconds"] / plain["seconds"], 2),
                            "plain_peak_mb": round(plain["peak_mb"]), "fused_peak_mb": round(fused["peak_mb"]),
                            "fused_chunk_tokens": 2048}}
    import torch

    if not torch.cuda.is_available():
        out["gpu"] = "no CUDA device here: the GPU cases did not run"
        return out
    out["attention"] = run("bench_train.py", "--attention")
    small = ["--train", "small", "--seq", "2048", "--tokens-per-step", "65536"]
    out["small_2048_sdpa_eager_baseline"] = run("bench_train.py", *small, "--attention-backend", "sdpa",
                                                "--compile", "off")
    out["small_2048"] = run("bench_train.py", *small)
    out["small_2048_speedup_vs_baseline"] = round(out["small_2048"]["tokens_per_s"]
                                                  / out["small_2048_sdpa_eager_baseline"]["tokens_per_s"], 2)
    at8k = ["--train", "small", "--seq", "8192", "--tokens-per-step", "65536"]
    out["small_8192"] = run("bench_train.py", *at8k)
    out["small_8192_doc_mask"] = run("bench_train.py", *at8k, "--doc-mask")
    out["doc_mask_step_time_ratio"] = round(out["small_8192_doc_mask"]["median_step_s"]
                                            / out["small_8192"]["median_step_s"], 2)
    for seq in (2048, 8192):
        out[f"btlm_3b_{seq}"] = run("bench_train.py", "--train", "btlm-3b", "--seq", str(seq), "--tokens-per-step",
                                    "65536", "--micro-batch-rows", "4", "--checkpointing", "--steps", "5")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--docs", type=int, default=20_000, help="documents in the generated benchmark corpus")
    ap.add_argument("--memory-sizes", default="100MB,1GB",
                    help="input sizes for the per-task peak-memory runs (comma separated; '' to skip)")
    ap.add_argument("--lsh-docs", type=int, default=1_000_000, help="documents in the LSH memory run")
    ap.add_argument("--only", default="", help="comma-separated benchmarks to run, e.g. train (on a GPU machine "
                    "without the corpus stages' packages)")
    ap.add_argument("--loss-tokens", type=int, default=8192,
                    help="tokens in the loss benchmark (the plain baseline holds 2 x tokens x 50,257 floats)")
    sizes = (  # how much data each big run takes (0 skips it)
        ("--e2e-gb", 2.0, "GB of text in the end-to-end run of every stage"),
        ("--e2e-real-mb", 200, "MB of real text (benchmarks/common.real_corpus) in a second end-to-end run"),
        ("--e2e-web-mb", 160, "MB of web-shaped real text (benchmarks/common.web_corpus) in a third end-to-end run"),
        ("--tokenize-mb", 40, "MB of web pages, and of the real text, tokenized per core by the stage, tiktoken, the "
                              "tokenizers library and the engine alone"),
        ("--normalize-web-mb", 20, "MB of web-shaped real text normalized by us and by a plain ftfy loop"),
        ("--dedup-peers-mb", 20, "MB of normalized real text deduplicated by us, SlimPajama's algorithm and (with "
                                 "$PEER_PYTHON) datatrove"),
        ("--pack-gb", 8.0, "GB of tokens packed with 1 and 2 workers (twice that on disk)"),
        ("--split-gb", 1.0, "GB of the single plain .jsonl normalized with and without --task-bytes"),
        ("--rp-gb", 0.3, "GB of the RedPajama-1T-shaped corpus run with several --task-bytes"),
        ("--against-old-mb", 1000, "MB of the old release in the dedup --against run (and 1/10 of it new)"),
        ("--decontaminate-mb", 80, "MB of web pages, and of the real text, decontaminated against --eval-items items"),
        ("--eval-items", 100_000, "evaluation items of the decontaminate run"))
    for flag, default, what in sizes:
        ap.add_argument(flag, type=float, default=default, help=f"{what} (0 to skip)")
    args = ap.parse_args()
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()}}
    benches = {"read_jsonl_zst": lambda: bench_read(args.docs),
               "normalize_filter": lambda: bench_normalize(args.docs, [s for s in args.memory_sizes.split(",") if s],
                                                           args.normalize_web_mb),
               "dedup": lambda: bench_dedup(args.lsh_docs),
               "tokenize_pack": lambda: bench_tokens(args.docs),
               "tokenize_engines": lambda: {
                   corpus: run("bench_tokens.py", "--engines", flag, str(args.tokenize_mb))
                   for corpus, flag in (("web_pages", "--web-mb"), ("real_text", "--real-mb"))}
               if args.tokenize_mb else None,
               "end_to_end": lambda: bench_e2e(args.e2e_gb, args.e2e_real_mb, args.e2e_web_mb)
               if args.e2e_gb or args.e2e_real_mb or args.e2e_web_mb else None,
               "task_bytes": lambda: bench_split(args.split_gb, args.rp_gb) if args.split_gb or args.rp_gb else None,
               "dedup_vs_peers": lambda: bench_dedup_peers(args.dedup_peers_mb) if args.dedup_peers_mb else None,
               "dedup_against": lambda: run("bench_against.py", "--old-mb", str(args.against_old_mb), "--new-mb",
                                            str(args.against_old_mb / 10)) if args.against_old_mb else None,
               "decontaminate": lambda: {
                   corpus: run("bench_decontaminate.py", flag, str(args.decontaminate_mb), "--items",
                               str(int(args.eval_items)))
                   for corpus, flag in (("web_pages", "--web-mb"), ("real_text", "--real-mb"))}
               if args.decontaminate_mb else None,
               "pack_parallel": lambda: run("bench_pack.py", "--gb", str(args.pack_gb)) if args.pack_gb else None,
               "export_megatron": bench_export,
               "startup": bench_startup,
               "train": lambda: bench_train(args.loss_tokens)}
    for key in args.only.split(",") if args.only else benches:
        if key not in benches:
            ap.error(f"--only {key}: not one of {', '.join(benches)}")
        result = benches[key]()
        if result is not None:
            results[key] = result
    for key in benches:
        if key in results:
            print(key, json.dumps(results[key], indent=2), file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
