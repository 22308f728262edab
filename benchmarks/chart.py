"""docs/stage-speed.png: each stage's speed per core as a multiple of the bare read (zstd + orjson of the same
files on every core, measured in the same run), from `bench_e2e.py` results, and the dedup peers' per core.

    python benchmarks/chart.py E2E_WEB.json [E2E_REAL.json] [--peers PEERS.json] [--out docs/stage-speed.png]

E2E_*.json: a `bench_e2e.py` output line (or make bench's results.json, whose end_to_end entry holds them)."""

from __future__ import annotations

import argparse
import json

STAGES = ("normalize", "minhash", "lsh", "dedup", "release-scatter", "release-shuffle", "tokenize", "pack")


def load(path: str) -> dict:
    with open(path) as f:
        data = json.loads(f.read().strip().splitlines()[-1])
    return data.get("end_to_end", {}).get("web_pages", data) if "end_to_end" in data else data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--names", default="web pages,real text")
    ap.add_argument("--out", default="docs/stage-speed.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = [load(p) for p in args.runs]
    names = args.names.split(",")
    stages = [s for s in STAGES if all(s in r["stages"] for r in runs)]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / len(runs)
    for k, (run, name) in enumerate(zip(runs, names, strict=False)):
        ratios = [run["stages"][s]["ratio_vs_bare_parse"] for s in stages]
        x = np.arange(len(stages)) + k * width
        bars = ax.bar(x, ratios, width, label=f"{name} (bare read {run['baseline_bare_parse_mb_per_s']:.0f} MB/s)")
        ax.bar_label(bars, [f"{r:.2f}" for r in ratios], fontsize=7)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(stages)) + width * (len(runs) - 1) / 2, stages, rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("MB/s per core / bare read per core")
    ax.set_title("each stage per core against a bare zstd + orjson read of the same text (2 cores)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
