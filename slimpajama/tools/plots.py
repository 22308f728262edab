"""PNG plots of a stats dict (matplotlib, headless). Each plot is written only when its figures exist; counts get
integer ticks and every axis spans the data it shows."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402

from slimpajama.pipelines import registry  # noqa: E402
from slimpajama.tools.units import count, size  # noqa: E402

# SlimPajama's published share of each source in its 627B tokens (the dataset card, cerebras/SlimPajama-627B)
SLIMPAJAMA_SHARES = {"RedPajamaCommonCrawl": 0.522, "RedPajamaC4": 0.267, "RedPajamaGithub": 0.052,
                     "RedPajamaBook": 0.042, "RedPajamaArXiv": 0.046, "RedPajamaWikipedia": 0.038,
                     "RedPajamaStackExchange": 0.033}
STAGE_LABELS = {"input": "input", **{s.ledger_name: s.label for s in registry.STAGES if s.label}}
TOKENS = registry.TOKENIZE.name  # the funnel's last step: tokens, not documents


def _save(fig, out_dir: str, name: str, layout: bool = True, legend=None) -> str:
    """`fig` as `out_dir/name` (closed after); `legend`: an axis whose legend it gets, in the plots' small font."""
    path = os.path.join(out_dir, name)
    if legend is not None:
        legend.legend(fontsize=7)
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _counts(axis, bytes_: bool = False) -> None:
    axis.set_major_locator(MaxNLocator(integer=True))
    axis.set_major_formatter(FuncFormatter(lambda x, _pos: size(x) if bytes_ else count(x)))


def write_plots(stats: dict, out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for plot in (_lengths, _documents, _funnel, _duplication, _tokens, _shares, _clusters, _padding):
        path = plot(stats, out_dir)
        if path:
            written.append(path)
    return written


def _lengths(stats, out_dir):
    corpus = stats.get("corpus")
    if not corpus or not corpus["sources"]:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    lo, hi = np.inf, 0
    for s, v in corpus["sources"].items():
        h = v["chars"]["histogram"]
        edges, counts = np.maximum(np.asarray(h["edges"], float), 1), np.asarray(h["counts"], dtype=float)
        used = np.flatnonzero(counts)
        if len(used):
            lo, hi = min(lo, edges[used[0]]), max(hi, edges[min(used[-1] + 1, len(edges) - 1)])
        # each source as fractions of its own documents: a small source is as visible as a big one
        ax.step(edges, counts / max(counts.sum(), 1), where="post", label=s)
    if hi > 0:  # the axis spans the lengths there are, not the histogram's 1 .. 1e8
        ax.set_xlim(lo / 1.5, hi * 1.5)
    ax.set(xscale="log", xlabel="document length (characters)", ylabel="fraction of the source's documents",
           title="Length distribution per source" + (" (sampled)" if corpus["sampled"] else ""))
    return _save(fig, out_dir, "length_per_source.png", legend=ax)


def _documents(stats, out_dir):
    pipeline = stats.get("pipeline")
    if not pipeline or not pipeline.get("sources"):
        return None
    rows = pipeline["sources"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    left = np.zeros(len(rows))
    for what, color in (("kept_docs", "tab:green"), *((d.reason, d.color) for d in registry.DROPS)):
        n = np.array([r.get(what, 0) for r in rows.values()], dtype=float)
        if n.any():
            ax.barh(list(rows), n, left=left, label=what.replace("_docs", ""), color=color)
            left += n
    _counts(ax.xaxis)
    ax.set(xlabel="documents", title=f"Documents per source: kept and dropped ({', '.join(pipeline['stages'])})")
    return _save(fig, out_dir, "documents_per_source.png", legend=ax)


def _funnel(stats, out_dir):
    """Documents and bytes each stage kept, stacked by source, and the tokens the release became."""
    steps = (stats.get("pipeline") or {}).get("funnel")
    if not steps:
        return None
    funnel = {step["stage"]: step["sources"] for step in steps}
    stages = [s for s in funnel if s != TOKENS]
    sources = sorted({src for s in funnel.values() for src in s})
    panels = [("docs", "documents"), ("bytes", "bytes")] + ([("tokens", "tokens")] if TOKENS in funnel else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels) + 2, 4.5))
    colors = dict(zip(sources, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3, strict=False))
    for ax, (key, label) in zip(axes, panels, strict=True):
        steps = [TOKENS] if key == "tokens" else stages
        bottom = np.zeros(len(steps))
        for src in sources:
            n = np.array([funnel[st].get(src, {}).get(key, 0) for st in steps], dtype=float)
            ax.bar([STAGE_LABELS.get(st, st) for st in steps], n, bottom=bottom, label=src, color=colors[src])
            bottom += n
        _counts(ax.yaxis, bytes_=key == "bytes")
        ax.set(ylabel=label, title=f"{label.capitalize()} per stage")
        ax.tick_params(axis="x", labelsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / fig.get_figwidth(), 1))  # room on the right for the sources
    fig.legend(handles[::-1], labels[::-1], loc="center right", fontsize=7)
    return _save(fig, out_dir, "funnel.png", layout=False)


def _duplication(stats, out_dir):
    pipeline = stats.get("pipeline") or {}
    rates = {s: r["byte_duplication_rate"] for s, r in pipeline.get("sources", {}).items()
             if r["byte_duplication_rate"] is not None}
    if not rates:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.barh(list(rates), [100 * v for v in rates.values()])
    ax.set(xlabel="bytes removed as duplicates (%)", title="Byte duplication rate per source")
    return _save(fig, out_dir, "duplication_per_source.png")


def _token_counts(stats) -> dict[str, int] | None:
    pipeline = stats.get("pipeline")
    if pipeline and any("tokens" in r for r in pipeline.get("sources", {}).values()):
        return {s: r.get("tokens", 0) for s, r in pipeline["sources"].items()}
    tokens: dict[str, int] = {}
    for sh in (stats.get("shards") or {}).values():
        for s, n in sh["tokens_per_source"].items():
            tokens[s] = tokens.get(s, 0) + n
    return tokens or None


def _tokens(stats, out_dir):
    tokens = _token_counts(stats)
    if not tokens:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.barh(list(tokens), list(tokens.values()))
    _counts(ax.xaxis)
    ax.set(xlabel="tokens", title="Tokens per source")
    return _save(fig, out_dir, "tokens_per_source.png")


def _shares(stats, out_dir):
    """This run's share of each source (bytes kept, tokens) next to SlimPajama's published one."""
    rows = (stats.get("pipeline") or {}).get("sources")
    if not rows:
        return None
    sources = sorted(set(rows) | set(SLIMPAJAMA_SHARES), key=lambda s: -SLIMPAJAMA_SHARES.get(s, 0))
    bars = [("bytes kept (this run)", [rows.get(s, {}).get("byte_share", 0) for s in sources])]
    if any("token_share" in r for r in rows.values()):
        bars.append(("tokens (this run)", [rows.get(s, {}).get("token_share", 0) for s in sources]))
    bars.append(("SlimPajama-627B (published)", [SLIMPAJAMA_SHARES.get(s, 0) for s in sources]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    y, height = np.arange(len(sources)), 0.8 / len(bars)
    for k, (label, values) in enumerate(bars):
        ax.barh(y + (k - (len(bars) - 1) / 2) * height, [100 * v for v in values], height, label=label)
    ax.set_yticks(y, sources)
    ax.invert_yaxis()
    ax.set(xlabel="share (%)", title="Source shares: this run against SlimPajama's")
    return _save(fig, out_dir, "shares.png", legend=ax)


def _clusters(stats, out_dir):
    clusters = stats.get("clusters")
    if not clusters or not clusters.get("size_histogram"):
        return None
    sizes = sorted(clusters["size_histogram"], key=int)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar([int(s) for s in sizes], [clusters["size_histogram"][s] for s in sizes])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # a cluster has 2, 3, ... documents, never 2.5
    ax.set(yscale="log", xlabel="cluster size (documents)", ylabel="clusters", title="Duplicate cluster sizes")
    ax.set_ylim(bottom=0.7)  # a size with one cluster still shows a bar
    ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _pos: count(x)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    return _save(fig, out_dir, "cluster_sizes.png")


def _padding(stats, out_dir):
    # concat rows have no padding: the plot is for bestfit only
    shards = {k: v for k, v in (stats.get("shards") or {}).items()
              if v.get("padding_per_row") and v.get("packing") == "bestfit"}
    if not shards:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, v in shards.items():
        h = v["padding_per_row"]
        counts = np.asarray(h["counts"], dtype=float)
        # fractions of each split's rows (a validation split is as readable as train), the last bin closed
        ax.step(h["edges"], np.append(counts, counts[-1]) / max(counts.sum(), 1), where="post", label=name)
    ax.set(xlabel="pad tokens per row", ylabel="fraction of the split's rows", title="Padding per row (bestfit)")
    return _save(fig, out_dir, "padding_per_row.png", legend=ax)
