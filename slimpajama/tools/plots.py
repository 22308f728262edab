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
            counts = np.asarray(h["counts"], dtype=float)
            # each source as fractions of its own documents: a small source is as visible as a big one
            ax.step(np.maximum(h["edges"], 1), counts / max(counts.sum(), 1), where="post", label=s)
        ax.set(xscale="log", xlabel="document length (characters)", ylabel="fraction of the source's documents",
               title="Length distribution per source" + (" (sampled)" if corpus["sampled"] else ""))
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir, "length_per_source.png"))
    pipeline = stats.get("pipeline")
    if pipeline and pipeline.get("sources"):
        rows = pipeline["sources"]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        left = np.zeros(len(rows))
        for what in ("kept_docs", "short", "duplicate", "decontaminated", "bad_input"):
            n = np.array([r[what] for r in rows.values()], dtype=float)
            if n.any():
                ax.barh(list(rows), n, left=left, label=what.replace("_docs", ""))
                left += n
        ax.set(xlabel="documents", title=f"Documents per source: kept and dropped ({', '.join(pipeline['stages'])})")
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir, "documents_per_source.png"))
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
