"""The `slimpajama` command."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys

import click

from slimpajama.errors import SlimPajamaError

MiB = 1 << 20


def _parse_size(value: str | None) -> int | None:
    """'64MB', '2GiB', '1e9', '0' -> bytes (0 or 'none' -> None)."""
    if value is None or str(value).lower() in ("0", "none", "off"):
        return None
    s = str(value).strip().lower().replace("ib", "b")
    units = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "b": 1}
    for u, mult in units.items():
        if s.endswith(u):
            return int(float(s[: -len(u)]) * mult)
    return int(float(s))


class SizeType(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        try:
            return _parse_size(value)
        except ValueError:
            self.fail(f"{value!r} is not a size like 512MB or 2GB", param, ctx)


SIZE = SizeType()


def _at_least(flag: str, value: int | None, minimum: int, why: str) -> int:
    """A size flag below a sane minimum would plan millions of tasks or hold everything at once: refused."""
    if value is None or value < minimum:
        raise SlimPajamaError(f"{flag} {value or 0} is below the minimum {minimum:,} bytes ({why})")
    return value


def _bucket_bytes(value: int | None) -> int:
    return _at_least("--bucket-bytes", value, 64 << 10, "it sets the number of shuffle buckets")


def _set_wait(ctx, param, value):
    from slimpajama.pipelines import lock

    lock.configure(bool(value))


def ray_options(f):
    f = click.option("--wait", is_flag=True, expose_value=False, callback=_set_wait,
                     help="If another run is writing the output directory, wait for it instead of failing.")(f)
    f = click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Cap on parallel shard tasks (default: every CPU of the Ray cluster).")(f)
    f = click.option("--ray-address", envvar="RAY_ADDRESS", default=None,
                     help="Join this Ray cluster instead of starting an embedded one (also $RAY_ADDRESS).")(f)
    f = click.option("--quiet", is_flag=True, help="No progress bar.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print the stage summary as JSON.")(f)
    return f


def read_options(f):
    f = click.option("--source", default=None,
                     help="Source name for files with neither meta.redpajama_set_name nor a source folder.")(f)
    f = click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
                     help="skip: count bad input under bad_input and log it in _errors.jsonl; fail: stop at the "
                          "first bad record, naming file and line.")(f)
    f = click.option("--max-doc-bytes", type=SIZE, default="32MB", show_default=True,
                     help="Records larger than this are bad input (0: no limit).")(f)
    f = click.option("--task-bytes", type=SIZE, default="512MB", show_default=True,
                     help="Split plain .jsonl and parquet files bigger than this into parts read by separate tasks "
                          "(0: one task per file). Never changes the output.")(f)
    f = click.option("--source-map", default=None,
                     help="Extra source names for folders and red_pajama_subset values: NAME=SOURCE,... or a JSON "
                          "file (RedPajama-1T's arxiv/book/c4/common_crawl/github/stackexchange/wikipedia map to "
                          "SlimPajama's names by default).")(f)
    f = click.option("--verify-inputs", is_flag=True,
                     help="Identify input files by a SHA-256 of their content (default: size and modification "
                          "time), so a rerun notices any change; costs one read of the inputs per run.")(f)
    return f


def _read_opts(source, on_error, max_doc_bytes, source_map=None):
    from slimpajama.core.sources import parse_source_map
    from slimpajama.pipelines import ReadOptions

    return ReadOptions(source=source, on_error=on_error, max_doc_bytes=max_doc_bytes,
                       source_map=parse_source_map(source_map))


def _run_per_file(stage, inputs, out, verify_inputs, task_bytes, workers, ray_address, quiet, as_json) -> None:
    """A document stage over every input file (one shard each, or one per part of a big file), then its summary."""
    from slimpajama.io.discover import discover_all
    from slimpajama.io.paths import DOCUMENTS, require_inputs
    from slimpajama.pipelines import run_stage
    from slimpajama.pipelines.split import split_tasks

    require_inputs(inputs, DOCUMENTS, stage.name)
    found = discover_all(list(inputs), out=out, verify=verify_inputs)
    tasks = split_tasks(found.files, out, task_bytes, workers=workers, ray_address=ray_address)
    report = run_stage(stage, tasks, out, workers=workers, ray_address=ray_address, progress=not quiet,
                       skipped_files=found.skipped)
    _print_report(report, as_json)


def _fail_cleanly(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from slimpajama.pipelines.interrupts import (
            Terminated,
            install_sigterm_handler,
            ray_running,
            shutdown_ray,
        )

        install_sigterm_handler()
        ray_was_up = ray_running()  # a caller's Ray (a test session, a notebook) is theirs to stop
        try:
            try:
                return fn(*args, **kwargs)
            except SystemExit as e:
                if e.code == signal.SIGTERM:  # Ray's own handler, while ray.init was starting: the same SIGTERM
                    raise Terminated() from None
                raise
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): Ray, shut down, stops the tasks
            if not ray_was_up:
                shutdown_ray()
            signame = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
            click.echo(f"error: interrupted ({signame}); completed shards are kept: rerun the same command to "
                       "resume", err=True)
            sys.exit(143 if isinstance(e, Terminated) else 130)
        except SlimPajamaError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except OSError as e:  # the machine's side (disk full, permissions, missing directory): no traceback
            where = f": {e.filename}" if e.filename else ""
            click.echo(f"error: {e.strerror or e}{where}", err=True)
            sys.exit(1)
        except MemoryError:
            click.echo("error: out of memory: run with fewer --workers (or smaller --batch-rows/--bucket-bytes/"
                       "--partition-bytes)", err=True)
            sys.exit(1)
        except Exception as e:  # a bug, not the user's doing: one line, the traceback on request
            if _debug():
                raise
            cause = _root_cause(e)
            first = (str(cause).strip().splitlines() or [""])[0]
            click.echo(f"error: {type(cause).__name__}: {first} (unexpected; rerun with --debug or "
                       "SLIMPAJAMA_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)
        finally:
            if not ray_was_up:
                shutdown_ray()

    return wrapper


def _print_report(report, as_json: bool, console=None) -> None:
    summary = report.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    from rich.console import Console

    names = sorted(report.ledger.sources)
    table = _table(f"{report.stage}: {summary['out']}", ["source", "docs in", "docs out", "dropped", "bytes in",
                                                          "bytes out"], names)
    for src in names:
        c = report.ledger.sources[src]
        dropped = ", ".join(f"{r} {d:,}" for r, (d, _) in sorted(c.dropped.items())) or "-"
        table.add_row(src, f"{c.docs_in:,}", f"{c.docs_out:,}", dropped, f"{c.bytes_in:,}", f"{c.bytes_written:,}")
    console = console or Console(stderr=False)
    console.print(table)
    skipped = f", {len(summary['skipped_files'])} files of unknown format skipped" if summary["skipped_files"] else ""
    removed = f", {summary['removed_stale_outputs']} stale outputs removed" if summary["removed_stale_outputs"] else ""
    console.print(f"{summary['shards']} shards ({summary['resumed']} already complete), "
                  f"{summary['bad_input_records']} bad input records{skipped}{removed}, {summary['seconds']} s")


def _debug() -> bool:
    return os.environ.get("SLIMPAJAMA_DEBUG", "") not in ("", "0")


def _root_cause(e: BaseException) -> BaseException:
    """The exception a Ray task raised, rather than Ray's wrapper around it."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="slimpajama")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error (also SLIMPAJAMA_DEBUG=1).")
@click.option("--verbose", is_flag=True, help="Show Ray's own log lines (hidden by default).")
def main(debug, verbose):
    """SlimPajama data pipeline: normalize, filter, dedup, release, tokenize and pack a RedPajama-style corpus."""
    if debug:
        os.environ["SLIMPAJAMA_DEBUG"] = "1"
    if verbose:
        os.environ["SLIMPAJAMA_VERBOSE"] = "1"


@main.command()
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--docs", type=click.IntRange(min=200), default=None, help="Number of documents (default 2000).")
@click.option("--bytes", "nbytes", type=SIZE, default=None,
              help="Approximate uncompressed size instead of --docs, e.g. 1GB.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes.")
@click.option("--layout", type=click.Choice(["slimpajama", "redpajama-1t"]), default="slimpajama", show_default=True,
              help="slimpajama: <set name>/part-NNNNN.jsonl.zst with meta.redpajama_set_name; redpajama-1t: the "
                   "RedPajama-Data-1T download's folders, file names (book/book.jsonl, wikipedia/wiki.jsonl, ... one "
                   "plain file each) and red_pajama_subset rows.")
@_fail_cleanly
def sample(out, seed, docs, nbytes, workers, layout):
    """Generate a deterministic RedPajama-shaped sample corpus with planted duplicates and ground truth."""
    import contextlib
    import tempfile

    from slimpajama.cli.progress import counter_progress
    from slimpajama.tools.sample_corpus import GROUND_TRUTH_FILE, generate_corpus, to_redpajama_1t

    os.makedirs(out, exist_ok=True)
    with counter_progress("sample", "files") as tick, contextlib.ExitStack() as stack:
        # redpajama-1t: generated in a hidden folder of `out` (never read), then rewritten into it
        target = stack.enter_context(tempfile.TemporaryDirectory(dir=out, prefix=".gen-")) \
            if layout == "redpajama-1t" else out
        truth = generate_corpus(target, seed=seed, docs=docs, nbytes=nbytes, workers=workers,
                                progress=lambda r: tick(1))
        if layout == "redpajama-1t":
            truth = to_redpajama_1t(target, out)
    on_disk = sum(os.path.getsize(os.path.join(out, f)) for f in truth["files"])
    click.echo(f"wrote {truth['docs']:,} documents in {len(truth['files'])} files "
               f"({on_disk / MiB:.1f} MiB) to {out}; planted cases in "
               f"{out}/{GROUND_TRUTH_FILE}")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output directory.")
@read_options
@ray_options
@_fail_cleanly
def ingest(inputs, out, source, on_error, max_doc_bytes, task_bytes, source_map, verify_inputs, workers, ray_address,
           quiet, as_json):
    """Read a corpus (jsonl, jsonl.zst, jsonl.gz, parquet; files, directories or globs) into parquet shards of
    (doc_id, source, text, meta), counting and logging bad input."""
    from slimpajama.pipelines import DocumentStage

    stage = DocumentStage(_read_opts(source, on_error, max_doc_bytes, source_map))
    _run_per_file(stage, inputs, out, verify_inputs, task_bytes, workers, ray_address, quiet, as_json)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/work/normalized", show_default=True, type=click.Path(file_okay=False),
              help="Output directory.")
@click.option("--min-chars", type=click.IntRange(min=0), default=200, show_default=True,
              help="Drop documents whose cleaned view (lowercase, no punctuation, collapsed whitespace) is shorter.")
@read_options
@ray_options
@_fail_cleanly
def normalize(inputs, out, min_chars, source, on_error, max_doc_bytes, task_bytes, source_map, verify_inputs, workers,
              ray_address, quiet, as_json):
    """Normalize text exactly as SlimPajama did (ftfy.fix_text, NFC) and drop low-length documents, writing
    parquet shards (one per input file), the ledger (per source: in, kept, short, bad_input) and _errors.jsonl."""
    from slimpajama.pipelines import NormalizeStage

    stage = NormalizeStage(_read_opts(source, on_error, max_doc_bytes, source_map), min_chars)
    _run_per_file(stage, inputs, out, verify_inputs, task_bytes, workers, ray_address, quiet, as_json)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/work/dedup", show_default=True, type=click.Path(file_okay=False),
              help="Output directory: shards/ (unique documents), duplicates.parquet, ledger.json, dedup.json.")
@click.option("--minhash-dir", default=None, type=click.Path(file_okay=False),
              help="Where signatures go (default: <out>/_minhash, private to this dedup; deletable once it is "
                   "complete).")
@click.option("--ngram", type=click.IntRange(min=1), default=13, show_default=True, help="Character n-gram width.")
@click.option("--num-perm", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--bands", type=click.IntRange(min=1), default=None, help="LSH bands (default 9, or from --threshold).")
@click.option("--rows", type=click.IntRange(min=1), default=None, help="Rows per band (default 13).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Jaccard threshold: picks bands x rows like datasketch's MinHashLSH (default 0.8 -> 9 x 13).")
@click.option("--hash", "hash_mode", type=click.Choice(["fast", "slimpajama"]), default="fast", show_default=True,
              help="slimpajama: datasketch MinHash signatures, bit-identical to SlimPajama's; fast: compiled 64-bit.")
@click.option("--verify", is_flag=True,
              help="Drop candidate pairs whose signature-estimated Jaccard is below the threshold.")
@click.option("--partition-bytes", type=SIZE, default="256MB", show_default=True,
              help="Working-set budget of one LSH task: sets how many key ranges each band is split into.")
@ray_options
@_fail_cleanly
def dedup(inputs, out, minhash_dir, ngram, num_perm, bands, rows, threshold, hash_mode, verify, partition_bytes,
          workers, ray_address, quiet, as_json):
    """Global near-duplicate removal with MinHash LSH over normalized parquet shards (within and across sources);
    one document per duplicate cluster is kept: the first in corpus order (shards by path, then row)."""
    from slimpajama.core.minhash import MinHashConfig
    from slimpajama.pipelines.dedup import run_dedup

    common = dict(ngram=ngram, hash=hash_mode)
    try:
        if bands is None and rows is None:
            cfg = MinHashConfig.for_threshold(0.8 if threshold is None else threshold, num_perm, **common)
        else:
            cfg = MinHashConfig(num_perm=num_perm, bands=bands or 9, rows=rows or 13,
                                threshold=0.8 if threshold is None else threshold, **common)
    except ValueError as e:
        raise SlimPajamaError(str(e)) from None
    report = run_dedup(list(inputs), out, minhash_dir=minhash_dir, cfg=cfg, verify=verify, workers=workers,
                       ray_address=ray_address, progress=not quiet,
                       partition_bytes=_at_least("--partition-bytes", partition_bytes, 1 << 20,
                                                 "it sets the number of LSH tasks per band"))
    _print_report(report, as_json)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/slimpajama", show_default=True, type=click.Path(file_okay=False),
              help="Release directory: train/, validation/, test/, manifest.json, ledger.json.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the split, weights and shuffle.")
@click.option("--holdout", type=click.FloatRange(0, 1, max_open=True), default=0.0017, show_default=True,
              help="Fraction of documents held out, split evenly into validation and test.")
@click.option("--weights", default=None,
              help="Per-source sampling weights, e.g. RedPajamaC4=0.5,RedPajamaBook=2.0 (below 1 subsamples; above 1 "
                   "repeats whole copies plus a subsample).")
@click.option("--chunks", type=click.IntRange(min=1), default=10, show_default=True,
              help="Files are spread over <split>/chunk1..chunkN.")
@click.option("--docs-per-file", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--bucket-bytes", type=SIZE, default="256MB", show_default=True,
              help="Text per shuffle bucket (what one pass-2 task holds in memory).")
@ray_options
@_fail_cleanly
def release(inputs, out, seed, holdout, weights, chunks, docs_per_file, bucket_bytes, workers, ray_address, quiet,
            as_json):
    """Shuffle the deduplicated shards into SlimPajama's layout with a decontaminated holdout: train documents
    whose text equals a validation or test document's (SHA-256) are dropped."""
    from slimpajama.core.release import ReleaseConfig, parse_weights
    from slimpajama.pipelines.release import run_release

    try:
        cfg = ReleaseConfig(seed=seed, holdout=holdout, weights=parse_weights(weights), chunks=chunks,
                            docs_per_file=docs_per_file, bucket_bytes=_bucket_bytes(bucket_bytes))
    except ValueError as e:
        raise SlimPajamaError(str(e)) from None
    report = run_release(list(inputs), out, cfg, workers=workers, ray_address=ray_address, progress=not quiet)
    _print_report(report, as_json)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--data", default="data", show_default=True,
              help="Root of every stage's output (work/, slimpajama/, tokens/, shards/), a path or an s3:// URI.")
@click.option("--holdout", type=click.FloatRange(0, 1, max_open=True), default=0.0017, show_default=True)
@click.option("--docs-per-file", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--bucket-bytes", type=SIZE, default="256MB", show_default=True)
@click.option("--batch-rows", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Documents per read batch (memory per task; never changes the output).")
@click.option("--seq", "seqs", type=click.IntRange(min=1), multiple=True, default=(2048,), show_default=True,
              help="Sequence length of a packed output; repeat with --range for BTLM's schedule.")
@click.option("--range", "ranges", multiple=True, default=None, help="Train range A:B per --seq (default 0:1).")
@click.option("--packing", type=click.Choice(["concat", "bestfit"]), default="concat", show_default=True)
@click.option("--encoding", default="gpt2", show_default=True)
@read_options
@ray_options
@_fail_cleanly
def pipeline(inputs, data, holdout, docs_per_file, bucket_bytes, batch_rows, seqs, ranges, packing, encoding, source,
             on_error, max_doc_bytes, task_bytes, source_map, verify_inputs, workers, ray_address, quiet, as_json):
    """Every stage in one driver: normalize, dedup, release, tokenize, pack (`make dedup` + `make shards` in one
    Ray session). Resumes like each stage: rerun the same command after a crash."""
    from dataclasses import replace

    from slimpajama.core.release import ReleaseConfig
    from slimpajama.pipelines.pipeline import PipelineConfig, run_pipeline

    if ranges and len(ranges) != len(seqs):
        raise SlimPajamaError("give one --range per --seq")
    read = replace(_read_opts(source, on_error, max_doc_bytes, source_map), batch_rows=batch_rows)
    cfg = PipelineConfig(read=read, release=ReleaseConfig(holdout=holdout, docs_per_file=docs_per_file,
                                                          bucket_bytes=_bucket_bytes(bucket_bytes)),
                         encoding=encoding, packing=packing, task_bytes=task_bytes or 0,
                         shards=tuple(zip(seqs, [_parse_range(r) for r in ranges] if ranges else
                                          [(0.0, 1.0)] * len(seqs), strict=True)))
    reports = run_pipeline(list(inputs), data, cfg, workers=workers, ray_address=ray_address, progress=not quiet,
                           verify_inputs=verify_inputs)
    summaries = [r.summary() for r in reports]
    if as_json:
        click.echo(json.dumps(summaries, indent=2, sort_keys=True))
    else:
        for s in summaries:
            what = (", ".join(f"{split} {rows:,} rows" for split, rows in s["rows"].items()) if "rows" in s else
                    f"{s['docs_in']:,} docs in, {s['docs_out']:,} out, dropped {s['dropped']}")
            click.echo(f"{s['stage']}: {what} ({s['resumed']}/{s['shards']} shards resumed) -> {s['out']}")


@main.group()
def encodings():
    """tiktoken encodings (GPT-2 obtained and verified offline)."""


@encodings.command("fetch")
@click.option("--encoding", default="gpt2", show_default=True)
@_fail_cleanly
def encodings_fetch(encoding):
    """Obtain, verify and cache an encoding (GPT-2 from PyPI's openai-whisper sdist, else tiktoken's download)."""
    from slimpajama.tokenize.encodings import get_encoding

    enc = get_encoding(encoding)
    click.echo(f"{enc.name}: vocab {enc.n_vocab}, EOS {enc.eot_token}")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/tokens", show_default=True, type=click.Path(file_okay=False),
              help="Token cache root; the cache goes to <out>/<encoding>/.")
@click.option("--encoding", default="gpt2", show_default=True,
              help="gpt2 (= r50k_base, BTLM's), another tiktoken encoding name, or a .tiktoken file.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="tiktoken threads per task (tasks already run one per core).")
@read_options
@ray_options
@_fail_cleanly
def tokenize(inputs, out, encoding, threads, source, on_error, max_doc_bytes, task_bytes, source_map, verify_inputs,
             workers, ray_address, quiet, as_json):
    """Tokenize documents (a release, or any corpus/parquet shards) once into a token cache, EOS after each."""
    from slimpajama.pipelines.tokens import run_tokenize

    report = run_tokenize(list(inputs), out, encoding, threads=threads,
                          read=_read_opts(source, on_error, max_doc_bytes, source_map), verify_inputs=verify_inputs,
                          task_bytes=task_bytes,
                          workers=workers, ray_address=ray_address, progress=not quiet)
    _print_report(report, as_json)


def _parse_range(value: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not A:B, e.g. 0:0.75") from None
    return a, b


@main.command()
@click.argument("cache", type=click.Path(file_okay=False))
@click.option("--seq", type=click.IntRange(min=1), required=True, help="Sequence length (2048, 8192, ...).")
@click.option("--packing", type=click.Choice(["concat", "bestfit"]), default="concat", show_default=True)
@click.option("--range", "range_", default="0:1", show_default=True,
              help="Contiguous fraction A:B of the train cache (document-aligned): 0:0.75 then 0.75:1 is BTLM's "
                   "75/25 schedule on disjoint tokens.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the global row shuffle.")
@click.option("--out-root", default="data/shards", show_default=True, type=click.Path(file_okay=False))
@click.option("--out", "-o", default=None, type=click.Path(file_okay=False),
              help="Exact output directory (default <out-root>/seq<N>[-<A>-<B>]).")
@click.option("--file-bytes", type=SIZE, default="256MB", show_default=True, help="Target size of a shard file.")
@click.option("--encoding", default=None,
              help="Which token cache, when CACHE is a tokenize --out root holding several (default: the only one).")
@click.option("--verify-outputs", is_flag=True,
              help="Check existing shard files by SHA-256 (default: size and modification time) and rebuild any "
                   "that changed; `verify` suggests it for a damaged file.")
@ray_options
@_fail_cleanly
def shards(cache, seq, packing, range_, seed, out_root, out, file_bytes, encoding, verify_outputs, workers, ray_address,
           quiet, as_json):
    """Pack a token cache into training shards (Arrow IPC + index.json), train and validation splits."""
    from slimpajama.pipelines.tokens import run_shards

    report = run_shards(cache, out_root, seq, packing=packing, range_=_parse_range(range_), seed=seed,
                        file_bytes=file_bytes or 1, out_dir=out, workers=workers, ray_address=ray_address,
                        progress=not quiet, verify_outputs=verify_outputs, encoding=encoding)
    summary = {"out": report.out_dir, "splits": {m["key"]: m["extra"] for m in report.markers}}
    click.echo(json.dumps(summary, indent=2) if as_json else
               "\n".join(f"{k}: {v['rows']:,} rows, padding {v['padding_fraction']:.2%}"
                         for k, v in summary["splits"].items()) + f"\nwrote {report.out_dir}")


@main.command()
@click.argument("path", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["megatron"]), default="megatron", show_default=True,
              help="megatron: Megatron-core's MMap indexed dataset (PREFIX.bin + PREFIX.idx), read by Megatron-LM, "
                   "NeMo and GPT-NeoX.")
@click.option("--out", "-o", "prefix", required=True, help="Output prefix: writes PREFIX.bin, PREFIX.idx, PREFIX.json.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="train", show_default=True)
@click.option("--range", "range_", default="0:1", show_default=True,
              help="The documents whose first token lies in this fraction A:B of the split's tokens (as shards).")
@click.option("--by-source", is_flag=True,
              help="One dataset per source (PREFIX_<source>.bin/.idx); PREFIX.json gives Megatron's --data-path "
                   "with the sources' token shares as weights.")
@click.option("--encoding", default=None, help="Which token cache of a tokenize --out root (default: the only one); "
                                                "the encoding to tokenize with when PATH is a release.")
@click.option("--tokens", "tokens_root", default=None,
              help="Where a release given as PATH is tokenized first (default: a 'tokens' folder beside it).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_fail_cleanly
def export(path, fmt, prefix, split, range_, by_source, encoding, tokens_root, as_json):
    """Export a token cache (or a release, tokenized first) for other trainers: each document one sequence, EOS
    included; streamed, atomic, with a summary and SHA-256s in PREFIX.json."""
    from slimpajama.io.paths import DOCUMENTS, what_is
    from slimpajama.pipelines.export import run_export

    if what_is(path).kind in DOCUMENTS:
        from slimpajama.pipelines.tokens import run_tokenize

        tokens_root = tokens_root or os.path.join(os.path.dirname(os.path.abspath(path)), "tokens")
        run_tokenize([path], tokens_root, encoding or "gpt2", progress=False)
        path = tokens_root
    del fmt  # one format so far
    if os.path.dirname(prefix):
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
    summary = run_export(path, prefix, split=split, range_=_parse_range(range_), by_source=by_source,
                         encoding=encoding)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        for name, d in summary["datasets"].items():
            click.echo(f"{name}: {d['documents']:,} documents, {d['tokens']:,} tokens -> {d['prefix']}.bin/.idx")
        click.echo(("already complete: " if summary["resumed"] else "wrote ") + f"{prefix}.json")


@main.command("verify")
@click.argument("directories", nargs=-1, required=True, type=click.Path(file_okay=False))
@_fail_cleanly
def verify_cmd(directories):
    """Check a packed shard directory (or a seq<N> folder holding split directories): every file's SHA-256,
    row count and width against index.json. Fails naming the first bad file."""
    from slimpajama.io.paths import packed_splits
    from slimpajama.packers.format import verify
    from slimpajama.pipelines.tokens import rebuild_command

    for d in directories:
        for t in packed_splits(d, "verify"):
            try:
                index = verify(t)
            except SlimPajamaError as e:
                command = rebuild_command(os.path.dirname(os.path.abspath(t)))
                raise SlimPajamaError(f"{e}; rebuild it with: {command}" if command else str(e)) from None
            click.echo(f"ok {t}: {index['rows']:,} rows x {index['seq_len'] + 1} tokens, {len(index['files'])} files")


def _table(title: str, columns: list[str], names=()):
    """A rich table readable at 80 columns: the first column (source names) whole, the figures folded."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column(columns[0], no_wrap=True, min_width=max([len(columns[0]), *map(len, names)]))
    for c in columns[1:]:
        t.add_column(c, justify="right", overflow="fold")
    return t


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _print_stats(st: dict, console=None) -> None:
    from rich.console import Console

    from slimpajama.io.paths import what_is

    if not any(st.get(k) for k in ("corpus", "pipeline", "clusters", "release", "tokens", "shards")):
        click.echo(f"{st['path']} holds {what_is(st['path']).describe()}: no figures to show for it")
        return
    console = console or Console()
    corpus = st.get("corpus")
    if corpus:
        title = f"corpus: {corpus['documents']:,} documents, {corpus['bytes']:,} bytes" + (
            f" (sampled: {corpus['files_read']} of {corpus['files']} files; estimated "
            f"{corpus['estimated_documents']:,} documents)" if corpus["sampled"] else "")
        t = _table(title, ["source", "documents", "bytes", "mean chars", "p10", "p50", "p90", "p99", "max"],
                   corpus["sources"])
        for s, v in corpus["sources"].items():
            ch = v["chars"]
            t.add_row(s, f"{v['documents']:,}", f"{v['bytes']:,}", f"{ch['mean']:,.0f}", f"{ch['p10']:,.0f}",
                      f"{ch['p50']:,.0f}", f"{ch['p90']:,.0f}", f"{ch['p99']:,.0f}", f"{ch['max']:,}")
        console.print(t)
    pipe = st.get("pipeline")
    if pipe:
        has_tokens = any("token_share" in r for r in pipe["sources"].values())
        t = _table(f"pipeline ({', '.join(pipe['stages'])}): {_pct(pipe['totals']['bytes_removed_fraction'])} of "
                   "bytes removed", ["source", "docs in", "bad input", "short", "duplicate", "decontam.", "kept",
                                     "byte dup. rate", "byte share"] + (["token share"] if has_tokens else []),
                   pipe["sources"])
        for s, r in pipe["sources"].items():
            row = [s, f"{r['docs_in']:,}", f"{r['bad_input']:,}", f"{r['short']:,}", f"{r['duplicate']:,}",
                   f"{r['decontaminated']:,}", f"{r['kept_docs']:,}", _pct(r["byte_duplication_rate"]),
                   _pct(r["byte_share"])]
            t.add_row(*(row + ([_pct(r.get("token_share"))] if has_tokens else [])))
        console.print(t)
    cl = st.get("clusters")
    if cl:
        t = _table(f"duplicate clusters: {cl['clusters']:,} clusters, {cl['duplicates']:,} duplicates; "
                   f"sizes {cl['size_histogram']}", ["cluster", "size", "kept doc", "sources"])
        for c in cl["largest"]:
            t.add_row(str(c["cluster_id"]), str(c["size"]), c["kept_doc_id"], ", ".join(c["sources"]))
        console.print(t)
    rel = st.get("release")
    if rel:
        console.print("release: " + ", ".join(f"{k} {v['docs']:,} docs in {v['files']} files"
                                              for k, v in rel["splits"].items())
                      + f"; {rel['decontaminated']:,} decontaminated")
    for enc, v in (st.get("tokens") or {}).items():
        t = _table(f"token cache {enc}: {v['tokens']:,} tokens", ["source", "tokens", "share"],
                   v["tokens_per_source"])
        for s, n in v["tokens_per_source"].items():
            t.add_row(s, f"{n:,}", _pct(n / max(v["tokens"], 1)))
        console.print(t)
    if st.get("shards"):
        t = _table("packed shards", ["shards", "rows", "tokens", "seq", "packing", "padding", "docs/row", "cut docs",
                                     "checksums"], st["shards"])
        for name, v in st["shards"].items():
            t.add_row(name, f"{v['rows']:,}", f"{v['tokens']:,}", str(v["seq_len"]), v["packing"],
                      _pct(v["padding_fraction"]), str(v["docs_per_row"]), _pct(v["docs_cut_fraction"]),
                      "ok" if v["checksums_ok"] else f"FAILED: {v['error']}")
        console.print(t)


@main.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON document (stable keys).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write PNG plots (length, duplication, cluster sizes, tokens per source, padding) here.")
@click.option("--write-json", type=click.Path(dir_okay=False), default=None, help="Also save the JSON here.")
@click.option("--sample", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="For a raw corpus: read only this fraction of its files (the output says it is sampled).")
@_fail_cleanly
def stats(path, as_json, plot_dir, write_json, sample):
    """Figures for PATH: a raw corpus, a stage output (ledger.json), a release, packed shards, or a data/ tree."""
    from slimpajama.tools.stats import compute

    st = compute(path, sample)
    text = json.dumps(st, indent=2, sort_keys=True)
    if write_json:
        from slimpajama.io.writers import write_bytes_atomic

        write_bytes_atomic(write_json, text.encode())
    if as_json:
        click.echo(text)
    else:
        _print_stats(st)
    if plot_dir:
        from slimpajama.io.paths import what_is
        from slimpajama.tools.plots import write_plots

        written = write_plots(st, plot_dir)
        for p in written:
            click.echo(f"wrote {p}", err=as_json)
        if not written:
            click.echo(f"no plots apply to {path} ({what_is(path).describe()})", err=as_json)


@main.command()
@click.option("--stage1", required=True, type=click.Path(file_okay=False),
              help="Packed train split for stage 1 (short sequences), e.g. data/shards/seq2048-0-0.75/train.")
@click.option("--stage2", default=None, type=click.Path(file_okay=False),
              help="Packed train split for stage 2 (long sequences), e.g. data/shards/seq8192-0.75-1/train.")
@click.option("--validation", default=None, type=click.Path(file_okay=False),
              help="Packed validation split (default: stage 1's sibling 'validation').")
@click.option("--out", "-o", default="runs/train", show_default=True, type=click.Path(file_okay=False))
@click.option("--preset", type=click.Choice(["tiny", "small", "btlm-3b"]), default="tiny", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--tokens-per-step", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Global batch: all processes, all micro-batches of one optimizer step.")
@click.option("--micro-batch-rows", type=click.IntRange(min=1), default=None,
              help="Rows per forward/backward and process at the stage-1 length (gradient accumulation; stage 2 "
                   "keeps the tokens). Default: the whole step at once.")
@click.option("--lr", type=float, default=6e-3, show_default=True, help="Peak (muP base) learning rate.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--doc-mask", is_flag=True, help="Attend within documents only (from the rows' document lengths).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (under torchrun: each process's "
              "LOCAL_RANK GPU).")
@click.option("--attention", type=click.Choice(["auto", "sdpa", "flex"]), default="auto", show_default=True,
              help="auto: FlexAttention (ALiBi score_mod, block masks) on CUDA, SDPA with a bias on the CPU.")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="torch.compile the blocks (default: on CUDA only).")
@click.option("--checkpointing", is_flag=True, help="Recompute block activations in the backward pass (memory).")
@click.option("--loader-workers", type=click.IntRange(min=0), default=None,
              help="DataLoader worker processes (default: 2 on CUDA, 0 on the CPU).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--eval-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--stop-at", type=click.IntRange(min=1), default=None,
              help="Stop, checkpointed, after this step (a job's time slice); the same command continues.")
@click.option("--peak-tflops", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Peak dense bf16 TFLOP/s per device for MFU, where the GPU is not recognized.")
@click.option("--no-resume", is_flag=True, help="Start over even if the run folder has a checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True)
@_fail_cleanly
def train(stage1, stage2, validation, out, preset, steps, tokens_per_step, micro_batch_rows, lr, warmup_steps,
          doc_mask, device, attention, compile_, checkpointing, loader_workers, checkpoint_every, eval_every,
          log_every, stop_at, peak_tflops, no_resume, seed):
    """Train the bundled BTLM-style model (ALiBi, SwiGLU, muP) on packed shards, BTLM's two-stage context schedule;
    writes metrics.json, loss.png and per_position_loss.png to the run folder. Several GPUs:
    `torchrun --nproc-per-node N -m slimpajama.train_minimal ...` (the same options)."""
    from slimpajama.io.paths import require, train_split
    from slimpajama.train_minimal.train import TrainConfig, run

    stage1 = train_split(stage1)  # a packed set (seq2048-0-0.75) or its train split
    stage2 = train_split(stage2) if stage2 else None
    if validation:
        require(validation, ("packed_split",), "train --validation")
    cfg = TrainConfig(stage1=stage1, stage2=stage2, validation=validation, out=out, preset=preset, steps=steps,
                      tokens_per_step=tokens_per_step, micro_batch_rows=micro_batch_rows, lr=lr,
                      warmup_steps=min(warmup_steps, steps), doc_mask=doc_mask, device=device, attention=attention,
                      compile=compile_, checkpointing=checkpointing, loader_workers=loader_workers,
                      checkpoint_every=checkpoint_every, eval_every=eval_every, log_every=log_every, stop_at=stop_at,
                      peak_tflops=peak_tflops, seed=seed)
    import torch

    try:
        result = run(cfg, resume=not no_resume, log=lambda m: click.echo(m, err=True))
    except torch.cuda.OutOfMemoryError:  # outside a training step (the step names its own settings)
        raise SlimPajamaError(f"out of GPU memory (--preset {preset}): lower --micro-batch-rows, add "
                              "--checkpointing, or pick a smaller --preset; the run folder keeps its last "
                              "checkpoint") from None
    if result is not None:  # under torchrun, the first process reports
        click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
