"""PNG plots of a stats dict (matplotlib, headless). Each plot is written only when its figures exist."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, out_dir: str, name: str) -> str:
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(stats: dict, out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    written = []
    corpus = stats.get("corpus")
    if corpus and corpus["sources"]:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for s, v in corpus["sources"].items():
            h = v["chars"]["histogram"]
            ax.step(np.maximum(h["edges"], 1), h["counts"], where="post", label=s)
        ax.set(xscale="log", xlabel="document length (characters)", ylabel="documents",
               title="Length distribution per source" + (" (sampled)" if corpus["sampled"] else ""))
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir, "length_per_source.png"))
    pipeline = stats.get("pipeline")
    if pipeline and pipeline.get("sources"):
        rates = {s: r["byte_duplication_rate"] for s, r in pipeline["sources"].items()
                 if r["byte_duplication_rate"] is not None}
        if rates:
            fig, ax = plt.subplots(figsize=(8, 4.5))
            ax.barh(list(rates), [100 * v for v in rates.values()])
            ax.set(xlabel="bytes removed as duplicates (%)", title="Byte duplication rate per source")
            written.append(_save(fig, out_dir, "duplication_per_source.png"))
    tokens = None
    if pipeline and any("tokens" in r for r in pipeline.get("sources", {}).values()):
        tokens = {s: r.get("tokens", 0) for s, r in pipeline["sources"].items()}
    elif stats.get("shards"):
        tokens = {}
        for sh in stats["shards"].values():
            for s, n in sh["tokens_per_source"].items():
                tokens[s] = tokens.get(s, 0) + n
    if tokens:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.barh(list(tokens), list(tokens.values()))
        ax.set(xlabel="tokens", title="Tokens per source")
        written.append(_save(fig, out_dir, "tokens_per_source.png"))
    clusters = stats.get("clusters")
    if clusters and clusters.get("size_histogram"):
        sizes = sorted(clusters["size_histogram"], key=int)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.bar([int(s) for s in sizes], [clusters["size_histogram"][s] for s in sizes])
        ax.set(yscale="log", xlabel="cluster size (documents)", ylabel="clusters", title="Duplicate cluster sizes")
        written.append(_save(fig, out_dir, "cluster_sizes.png"))
    shards = {k: v for k, v in (stats.get("shards") or {}).items() if v.get("padding_per_row")}
    if shards:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for name, v in shards.items():
            h = v["padding_per_row"]
            ax.step(h["edges"][:-1], h["counts"], where="post", label=name)
        ax.set(xlabel="pad tokens per row", ylabel="rows", title="Padding per row")
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir, "padding_per_row.png"))
    return written
