"""What the commands print: stage summaries and statistics as rich tables readable at 80 columns."""

from __future__ import annotations

import json

import click


def literal(text: str):
    """Text printed as it is: a source name or path like `[bold]x[/bold]` is not rich markup."""
    from rich.text import Text

    return Text(text)


def table(title: str, columns: list[str], names=()):
    """A rich table readable at 80 columns: the first column (source names) whole, the figures folded."""
    from rich import box
    from rich.table import Table

    class LiteralTable(Table):
        def add_row(self, *cells, **kwargs):
            super().add_row(*(literal(c) if isinstance(c, str) else c for c in cells), **kwargs)

    t = LiteralTable(title=literal(title), box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column(columns[0], no_wrap=True, min_width=max([len(columns[0]), *map(len, names)]))
    for c in columns[1:]:
        t.add_column(c, justify="right", overflow="fold")
    return t


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def print_stats(st: dict, console=None) -> None:
    from rich.console import Console

    from slimpajama.pipelines.paths import what_is

    if not any(st.get(k) for k in ("corpus", "pipeline", "clusters", "release", "tokens", "shards", "export")):
        click.echo(f"{st['path']} holds {what_is(st['path']).describe()}: no figures to show for it")
        return
    console = console or Console()
    corpus = st.get("corpus")
    if corpus:
        title = f"corpus: {corpus['documents']:,} documents, {corpus['bytes']:,} bytes" + (
            f" (sampled: {corpus['files_read']} of {corpus['files']} files; estimated "
            f"{corpus['estimated_documents']:,} documents)" if corpus["sampled"] else "") + (
            f"; {corpus['bad_input_records']:,} bad input records not counted (their lines: `slimpajama ingest`)"
            if corpus.get("bad_input_records") else "")
        t = table(title, ["source", "documents", "bytes", "mean chars", "p10", "p50", "p90", "p99", "max"],
                   corpus["sources"])
        for s, v in corpus["sources"].items():
            ch = v["chars"]
            t.add_row(s, f"{v['documents']:,}", f"{v['bytes']:,}", f"{ch['mean']:,.0f}", f"{ch['p10']:,.0f}",
                      f"{ch['p50']:,.0f}", f"{ch['p90']:,.0f}", f"{ch['p99']:,.0f}", f"{ch['max']:,}")
        console.print(t)
    pipe = st.get("pipeline")
    if pipe:
        has_tokens = any("token_share" in r for r in pipe["sources"].values())
        t = table(f"pipeline ({', '.join(pipe['stages'])}): {pct(pipe['totals']['bytes_removed_fraction'])} of "
                   "bytes removed", ["source", "docs in", "bad input", "short", "duplicate", "decontam.", "kept",
                                     "byte dup. rate", "byte share"] + (["token share"] if has_tokens else []),
                   pipe["sources"])
        for s, r in pipe["sources"].items():
            row = [s, f"{r['docs_in']:,}", f"{r['bad_input']:,}", f"{r['short']:,}", f"{r['duplicate']:,}",
                   f"{r['decontaminated']:,}", f"{r['kept_docs']:,}", pct(r["byte_duplication_rate"]),
                   pct(r["byte_share"])]
            t.add_row(*(row + ([pct(r.get("token_share"))] if has_tokens else [])))
        console.print(t)
    cl = st.get("clusters")
    if cl:
        t = table(f"duplicate clusters: {cl['clusters']:,} clusters, {cl['duplicates']:,} duplicates; "
                   f"sizes {cl['size_histogram']}", ["cluster", "size", "kept doc", "sources"])
        for c in cl["largest"]:
            t.add_row(str(c["cluster_id"]), str(c["size"]), c["kept_doc_id"], ", ".join(c["sources"]))
        console.print(t)
    rel = st.get("release")
    if rel:
        console.print(literal("release: " + ", ".join(f"{k} {v['docs']:,} docs in {v['files']} files"
                                                      for k, v in rel["splits"].items())
                              + f"; {rel['decontaminated']:,} decontaminated"))
    for enc, v in (st.get("tokens") or {}).items():
        t = table(f"token cache {enc}: {v['tokens']:,} tokens", ["source", "tokens", "share"],
                   v["tokens_per_source"])
        for s, n in v["tokens_per_source"].items():
            t.add_row(s, f"{n:,}", pct(n / max(v["tokens"], 1)))
        console.print(t)
    for name, e in (st.get("export") or {}).items():
        t = table(f"Megatron export {name} ({e['split']} split, range {e['range'][0]:g}:{e['range'][1]:g}): "
                  f"{e['documents']:,} documents, {e['tokens']:,} tokens", ["dataset", "documents", "tokens",
                                                                           "prefix"], e["datasets"])
        for d, v in e["datasets"].items():
            t.add_row(d, f"{v['documents']:,}", f"{v['tokens']:,}", v["prefix"])
        console.print(t)
    if st.get("shards"):
        t = table("packed shards", ["shards", "rows", "tokens", "seq", "packing", "padding", "docs/row", "cut docs",
                                     "checksums"], st["shards"])
        for name, v in st["shards"].items():
            t.add_row(name, f"{v['rows']:,}", f"{v['tokens']:,}", str(v["seq_len"]), v["packing"],
                      pct(v["padding_fraction"]), str(v["docs_per_row"]), pct(v["docs_cut_fraction"]),
                      "ok" if v["checksums_ok"] else f"FAILED: {v['error']}")
        console.print(t)


def print_report(report, as_json: bool, console=None) -> None:
    summary = report.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    from rich.console import Console

    names = sorted(report.ledger.sources)
    t = table(f"{report.stage}: {summary['out']}", ["source", "docs in", "docs out", "dropped", "bytes in",
                                                     "bytes out"], names)
    for src in names:
        c = report.ledger.sources[src]
        dropped = ", ".join(f"{r} {d:,}" for r, (d, _) in sorted(c.dropped.items())) or "-"
        t.add_row(src, f"{c.docs_in:,}", f"{c.docs_out:,}", dropped, f"{c.bytes_in:,}", f"{c.bytes_written:,}")
    console = console or Console(stderr=False)
    console.print(t)
    skipped = f", {len(summary['skipped_files'])} files of unknown format skipped" if summary["skipped_files"] else ""
    removed = f", {summary['removed_stale_outputs']} stale outputs removed" if summary["removed_stale_outputs"] else ""
    console.print(literal(f"{summary['shards']} shards ({summary['resumed']} already complete), "
                          f"{summary['bad_input_records']} bad input records{skipped}{removed}, {summary['seconds']} s"))
