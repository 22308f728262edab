"""docs/stage-speed.png: each stage's speed per core as a multiple of the bare read (zstd + orjson of the same
files on every core, measured in the same run), from `bench_e2e.py` results, and the dedup peers' per core.

    python benchmarks/chart.py E2E_WEB.json [E2E_REAL.json] [--peers DEDUP_PEERS.json] [--tokenize ENGINES.json]
                               [--out docs/stage-speed.png]

E2E_*.json: a `bench_e2e.py` output line. DEDUP_PEERS.json: make bench's results.json holding `dedup_vs_peers`;
ENGINES.json: a `bench_tokens.py --engines --web-mb M` line. With them, a second panel: MB/s per core of the whole
dedup and of tokenize against their peers, on web pages."""

from __future__ import annotations

import argparse
import json

STAGES = ("normalize", "minhash", "lsh", "dedup", "release-scatter", "release-shuffle", "tokenize", "pack")


def load(path: str) -> dict:
    with open(path) as f:
        data = json.loads(f.read().strip().splitlines()[-1])
    return data.get("end_to_end", {}).get("web_pages", data) if "end_to_end" in data else data


def _peer_bars(peers: str | None, tokenize: str | None) -> list[tuple[str, float, str]]:
    out = []
    if peers:
        with open(peers) as f:
            web = json.load(f)["dedup_vs_peers"]["web_pages"]
        out += [(f"dedup: {name}", web[m]["mb_per_s"], color) for m, name, color in (
            ("ours", "slimpajama", "tab:blue"), ("rensa", "rensa 0.5", "tab:gray"),
            ("datatrove", "datatrove 0.10", "tab:gray"), ("reference", "SlimPajama's algorithm", "tab:gray"))
            if m in web]
    if tokenize:
        with open(tokenize) as f:
            gpt2 = json.loads(f.read().strip().splitlines()[-1])["gpt2"]
        out += [(f"tokenize GPT-2: {name}", gpt2[k], color) for k, name, color in (
            ("stage", "slimpajama stage", "tab:blue"), ("engine_alone", "engine alone", "tab:cyan"),
            ("tiktoken", "tiktoken", "tab:gray"), ("tokenizers", "tokenizers", "tab:gray"))]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--names", default="web pages,real text")
    ap.add_argument("--peers", default=None)
    ap.add_argument("--tokenize", default=None)
    ap.add_argument("--out", default="docs/stage-speed.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = [load(p) for p in args.runs]
    names = args.names.split(",")
    stages = [s for s in STAGES if all(s in r["stages"] for r in runs)]
    peers = _peer_bars(args.peers, args.tokenize)
    fig, axes = plt.subplots(1, 2 if peers else 1, figsize=(15 if peers else 9, 4.6),
                             gridspec_kw={"width_ratios": [3, 2]} if peers else None)
    ax = axes[0] if peers else axes
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
    if peers:
        names, values, colors = zip(*peers, strict=True)
        bars = axes[1].barh(range(len(names)), values, color=colors)
        axes[1].bar_label(bars, [f"{v:.3g}" for v in values], fontsize=7, padding=2)
        axes[1].set_yticks(range(len(names)), names, fontsize=8)
        axes[1].invert_yaxis()
        axes[1].set_xscale("log")
        axes[1].set_xlabel("MB/s per core (web pages)")
        axes[1].set_title("against the peers, same documents, one core each")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
