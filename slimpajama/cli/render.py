"""What the commands print: stage summaries and statistics as rich tables readable at 80 columns."""

from __future__ import annotations

import json
import textwrap

import click

from slimpajama.pipelines import registry
from slimpajama.tools.units import count, size


def literal(text: str):
    """Text printed as it is: a source name or path like `[bold]x[/bold]` is not rich markup."""
    from rich.text import Text

    return Text(text)


def table(title: str, columns: list[str], names=(), text=()):
    """A rich table that fits 80 columns: the first column (source names) whole, figures never wrapped (they are
    compact: `count`, `size`, `pct`), headers on up to two lines ("a\nb"), only the `text` columns folded."""
    from rich import box
    from rich.table import Table

    class LiteralTable(Table):
        def add_row(self, *cells, **kwargs):
            super().add_row(*(literal(c) if isinstance(c, str) else c for c in cells), **kwargs)

    t = LiteralTable(title=literal(title), box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                     collapse_padding=True)
    t.add_column(columns[0], no_wrap=True, min_width=max([len(columns[0]), *map(len, names)]))
    for c in columns[1:]:
        if c in text:
            t.add_column(c, overflow="fold")
        else:
            t.add_column(c, justify="right", no_wrap=True)
    return t


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def print_stats(st: dict, console=None) -> None:
    from rich.console import Console

    from slimpajama.pipelines.paths import what_is

    if not any(st.get(k) for k in ("corpus", "pipeline", "clusters", "contamination", "release", "tokens", "shards",
                                   "export")):
        click.echo(textwrap.fill(f"{st['path']} holds {what_is(st['path']).describe()}: no figures to show for it",
                                 80, break_long_words=False, break_on_hyphens=False))
        return
    console = console or Console()
    corpus = st.get("corpus")
    if corpus:
        title = f"corpus: {count(corpus['documents'])} documents, {size(corpus['bytes'])}" + (
            f" (sampled: {corpus['files_read']} of {corpus['files']} files; estimated "
            f"{count(corpus['estimated_documents'])} documents)" if corpus["sampled"] else "")
        t = table(title, ["source", "docs", "bytes", "mean\nchars", "p10", "p50", "p90", "p99", "max"],
                  corpus["sources"])
        for s, v in corpus["sources"].items():
            ch = v["chars"]
            t.add_row(s, count(v["documents"]), size(v["bytes"]), count(round(ch["mean"])),
                      *(count(round(ch[q])) for q in ("p10", "p50", "p90", "p99")), count(ch["max"]))
        console.print(t)
        if corpus.get("bad_input_records"):
            console.print(literal(f"{corpus['bad_input_records']:,} bad input records not counted (their lines: "
                                  "`slimpajama ingest`)"))
    pipe = st.get("pipeline")
    if pipe:
        # every stage's drop reasons (pipelines/registry.py); the rare ones (a dedup --against run's duplicates of
        # the earlier release, release --weights' sampled out) only where there are any
        drops = [d for d in registry.DROPS if d.always or any(r.get(d.reason) for r in pipe["sources"].values())]
        keys = ["docs_in", *(d.reason for d in drops), "kept_docs"]
        t = table(f"pipeline ({', '.join(pipe['stages'])}): documents",
                  ["source", "in", *(d.label for d in drops), "kept"], pipe["sources"])
        for s, r in pipe["sources"].items():
            t.add_row(s, *(count(r.get(k, 0)) for k in keys))
        console.print(t)
        has_tokens = any("token_share" in r for r in pipe["sources"].values())
        t = table(f"pipeline: {pct(pipe['totals']['bytes_removed_fraction'])} of bytes removed",
                  ["source", "byte dup.\nrate", "byte\nshare"] + (["token\nshare"] if has_tokens else []),
                  pipe["sources"])
        for s, r in pipe["sources"].items():
            t.add_row(s, pct(r["byte_duplication_rate"]), pct(r["byte_share"]),
                      *([pct(r.get("token_share"))] if has_tokens else []))
        console.print(t)
    cl = st.get("clusters")
    if cl:
        sizes = ", ".join(f"{k}: {count(v)}" for k, v in cl["size_histogram"].items())
        t = table(f"duplicate clusters: {count(cl['clusters'])} clusters, {count(cl['duplicates'])} duplicates",
                  ["cluster", "size", "kept doc", "sources"], text=("kept doc", "sources"))
        for c in cl["largest"]:
            t.add_row(str(c["cluster_id"]), count(c["size"]), c["kept_doc_id"], ", ".join(c["sources"]))
        console.print(t)
        console.print(literal(f"clusters by size: {sizes or 'none'}"))
    if st.get("contamination"):
        t = table("evaluation sets (decontaminate)", ["items", "too\nshort", "found", "docs\ndropped", "docs\ncut",
                                                      "file"], text=("file",))
        for f, c in st["contamination"].items():  # the file last: a long path folds, the figures never do
            t.add_row(count(c["items"]), count(c["too_short"]), count(c["items_found"]),
                      count(c["documents_dropped"]), count(c["documents_cut"]), f)
        console.print(t)
    rel = st.get("release")
    if rel:
        console.print(literal("release: " + ", ".join(f"{k} {count(v['docs'])} docs in {v['files']} files"
                                                      for k, v in rel["splits"].items())
                              + f"; {count(rel['decontaminated'])} decontaminated"))
    for enc, v in (st.get("tokens") or {}).items():
        t = table(f"token cache {enc}: {count(v['tokens'])} tokens", ["source", "tokens", "share"],
                  v["tokens_per_source"])
        for s, n in v["tokens_per_source"].items():
            t.add_row(s, count(n), pct(n / max(v["tokens"], 1)))
        console.print(t)
        if v.get("engines"):  # the guard re-checks what the engine encoded; the reference has nothing to check
            checked = (f"; {count(v['guard_checked'])} documents re-encoded by the reference library and found equal"
                       if v.get("guard_checked") else "")
            console.print(literal(f"encoded by {', '.join(v['engines'])}{checked}"))
    for name, e in (st.get("export") or {}).items():
        # above the table, not as its title: a title is wrapped to the table's width (3-4 lines at 80 columns)
        console.print(literal(f"{e['format']} export {name}: {e['split']} split, range {e['range'][0]:g}:"
                              f"{e['range'][1]:g}, {count(e['documents'])} documents, {count(e['tokens'])} tokens"))
        t = table("", ["dataset", "documents", "tokens", "files"], e["datasets"], text=("files",))
        for d, v in e["datasets"].items():
            t.add_row(d, count(v["documents"]), count(v["tokens"]), v["prefix"])
        console.print(t)
    if st.get("shards"):
        t = table("packed shards", ["split", "rows", "tokens", "seq", "packing", "padding", "docs/\nrow",
                                    "cut\ndocs"], st["shards"])
        for name, v in st["shards"].items():
            t.add_row(name, count(v["rows"]), count(v["tokens"]), str(v["seq_len"]), v["packing"],
                      pct(v["padding_fraction"]), "-" if v["docs_per_row"] is None else f"{v['docs_per_row']:.2f}",
                      pct(v["docs_cut_fraction"]))
        console.print(t)
        for tok in sorted({json.dumps(v["tokenizer"], sort_keys=True) for v in st["shards"].values()
                           if v.get("tokenizer")}):
            tok = json.loads(tok)
            console.print(literal(f"tokenizer: {tok['name']} ({tok['kind']}, vocab {count(tok['vocab_size'] or 0)}, "
                                  f"{tok['dtype']})"))
        bad = {name: v["error"] for name, v in st["shards"].items() if not v["checksums_ok"]}
        console.print(literal("checksums: " + ("; ".join(f"{n} FAILED: {e}" for n, e in bad.items()) if bad
                                               else f"all {len(st['shards'])} splits ok")))


def print_report(report, as_json: bool, console=None) -> None:
    summary = report.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    from rich.console import Console

    names = sorted(report.ledger.sources)
    t = table(f"{report.stage}: {summary['out']}", ["source", "docs\nin", "docs\nout", "dropped", "bytes\nin",
                                                     "bytes\nout"], names, text=("dropped",))
    for src in names:
        c = report.ledger.sources[src]
        dropped = ", ".join(f"{r} {count(d)}" for r, (d, _) in sorted(c.dropped.items())) or "-"
        t.add_row(src, count(c.docs_in), count(c.docs_out), dropped, size(c.bytes_in), size(c.bytes_written))
    console = console or Console(stderr=False)
    console.print(t)
    skipped = f", {len(summary['skipped_files'])} files of unknown format skipped" if summary["skipped_files"] else ""
    removed = f", {summary['removed_stale_outputs']} stale outputs removed" if summary["removed_stale_outputs"] else ""
    console.print(literal(f"{summary['shards']} shards ({summary['resumed']} already complete), "
                          f"{summary['bad_input_records']} bad input records{skipped}{removed}, {summary['seconds']} s"))
