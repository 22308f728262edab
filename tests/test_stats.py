import json
import os

import matplotlib.image
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from slimpajama.cli import main
from slimpajama.core.release import ReleaseConfig
from slimpajama.io.discover import discover
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
from slimpajama.pipelines.dedup import run_dedup
from slimpajama.pipelines.pack import run_shards
from slimpajama.pipelines.release import run_release
from slimpajama.pipelines.tokens import run_tokenize
from slimpajama.tools.stats import STATS_KEYS, cluster_stats, compute, corpus_stats, pipeline_stats


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def test_corpus_figures_by_hand(tmp_path):
    write_jsonl(tmp_path / "A" / "a.jsonl", [{"text": "x" * n} for n in (10, 20, 30, 40)] + [{"nope": 1}])
    write_jsonl(tmp_path / "B" / "b.jsonl", [{"text": "é" * 5}])
    st = corpus_stats(str(tmp_path))
    assert (st["documents"], st["bytes"], st["bad_input_records"], st["sampled"]) == (5, 110, 1, False)
    a, b = st["sources"]["A"], st["sources"]["B"]
    assert (a["documents"], a["bytes"]) == (4, 100) and (b["documents"], b["bytes"]) == (1, 10)
    assert a["chars"]["mean"] == 25 and a["chars"]["p50"] == 25 and a["chars"]["max"] == 40
    assert b["chars"]["max"] == 5 and sum(a["chars"]["histogram"]["counts"]) == 4


def test_sampling_reads_a_fraction_of_files_and_says_so(tmp_path):
    for i in range(20):
        write_jsonl(tmp_path / "S" / f"f{i:02d}.jsonl", [{"text": "word " * 50}] * 10)
    st = corpus_stats(str(tmp_path), sample=0.3)
    assert st["sampled"] and 1 <= st["files_read"] < 20 and st["files"] == 20
    assert st["documents"] == 10 * st["files_read"] and st["estimated_documents"] == 200


def test_pipeline_table_from_ledgers():
    def led(stage, **src):
        return {"stage": stage, "sources": src}

    ledgers = {
        "normalize": led("normalize", A={"docs_in": 10, "bytes_in": 1000, "docs_out": 8, "bytes_out": 800,
                                         "bytes_written": 790, "dropped": {"short": {"docs": 1, "bytes": 100},
                                                                           "bad_input": {"docs": 1, "bytes": 100}}}),
        "dedup": led("dedup", A={"docs_in": 8, "bytes_in": 790, "docs_out": 6, "bytes_out": 600,
                                 "bytes_written": 600, "dropped": {"duplicate": {"docs": 2, "bytes": 190}}}),
    }
    p = pipeline_stats(ledgers, {"A": 150})
    a = p["sources"]["A"]
    assert (a["docs_in"], a["short"], a["bad_input"], a["duplicate"], a["kept_docs"]) == (10, 1, 1, 2, 6)
    assert a["byte_duplication_rate"] == round(190 / 790, 6) and a["byte_share"] == 1.0 and a["token_share"] == 1.0
    assert p["totals"]["bytes_removed_fraction"] == 0.4


def test_cluster_figures(tmp_path):
    t = pa.table({"doc_id": ["a", "b", "c", "d", "e"], "source": ["S", "S", "T", "S", "S"],
                  "cluster_id": [1, 1, 1, 7, 7], "kept_doc_id": ["a", "a", "a", "d", "d"],
                  "kept": [True, False, False, True, False]})
    pq.write_table(t, tmp_path / "duplicates.parquet")
    c = cluster_stats(str(tmp_path))
    assert c["clusters"] == 2 and c["duplicates"] == 3 and c["size_histogram"] == {"2": 1, "3": 1}
    assert c["largest"][0] == {"cluster_id": 1, "size": 3, "kept_doc_id": "a", "sources": ["S", "T"]}


CORPUS_KEYS = ["bad_input_records", "bytes", "documents", "files", "files_read", "sampled", "sources"]
SOURCE_KEYS = ["bytes", "chars", "documents"]
CHAR_KEYS = ["histogram", "max", "mean", "p10", "p50", "p90", "p99", "quantiles_exact"]
PIPELINE_ROW_KEYS = ["bad_input", "byte_duplication_rate", "byte_share", "bytes_in", "contaminated", "decontaminated",
                     "docs_in", "duplicate", "duplicate_of_release", "kept_bytes", "kept_docs", "sampled_out", "short",
                     "token_share", "tokens"]
SHARD_KEYS = ["checksums_ok", "docs", "docs_cut", "docs_cut_fraction", "docs_per_row", "error", "packing",
              "padding_fraction", "padding_per_row", "range", "rows", "seq_len", "tokenizer", "tokens", "tokens_per_source"]


@pytest.fixture(scope="module")
def data_root(sample_corpus, tmp_path_factory, ray_session):
    raw, _ = sample_corpus
    root = tmp_path_factory.mktemp("data")
    os.symlink(raw, root / "raw")
    run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(str(raw))), str(root / "work/normalized"),
              progress=False)
    run_dedup(str(root / "work/normalized"), str(root / "work/dedup"), progress=False)
    run_release(str(root / "work/dedup/shards"), str(root / "slimpajama"), ReleaseConfig(holdout=0.05),
                progress=False)
    run_tokenize(str(root / "slimpajama"), str(root / "tokens"), progress=False)
    run_shards(str(root / "tokens/gpt2"), str(root / "shards"), 512, packing="bestfit", progress=False)
    return root


def test_json_keys_are_stable_and_plots_are_images(data_root, tmp_path):
    r = CliRunner().invoke(main, ["stats", str(data_root), "--json", "--plot", str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    st = json.loads(r.stdout)
    assert sorted(st) == sorted(STATS_KEYS) and st["kind"] == "data_root"
    assert sorted(st["corpus"]) == CORPUS_KEYS
    src = next(iter(st["corpus"]["sources"].values()))
    assert sorted(src) == SOURCE_KEYS and sorted(src["chars"]) == CHAR_KEYS
    assert sorted(next(iter(st["pipeline"]["sources"].values()))) == PIPELINE_ROW_KEYS
    assert sorted(st["shards"]["seq512-bestfit/train"]) == SHARD_KEYS and st["shards"]["seq512-bestfit/train"]["checksums_ok"]
    assert st["shards"]["seq512-bestfit/train"]["tokenizer"] == {"name": "gpt2", "kind": "tiktoken", "vocab_size": 50257,
                                                         "dtype": "uint16"}
    assert st["pipeline"]["stages"] == ["dedup", "normalize", "release"]
    assert st["clusters"]["duplicates"] == sum(r["duplicate"] for r in st["pipeline"]["sources"].values())
    funnel = {step["stage"]: step["sources"] for step in st["pipeline"]["funnel"]}
    assert list(funnel) == ["input", "normalize", "dedup", "release", "tokenize"]
    assert st["tokens"]["gpt2"]["tokens"] == sum(v["tokens"] for v in funnel["tokenize"].values()) > 0
    docs = [sum(v["docs"] for v in funnel[stage].values()) for stage in ("input", "normalize", "dedup", "release")]
    assert docs == sorted(docs, reverse=True) and docs[0] == st["pipeline"]["totals"]["docs_in"]
    pngs = sorted(os.listdir(tmp_path / "plots"))
    assert pngs == ["cluster_sizes.png", "documents_per_source.png", "duplication_per_source.png", "funnel.png",
                    "length_per_source.png", "padding_per_row.png", "shares.png", "tokens_per_source.png"]
    for p in pngs:
        img = matplotlib.image.imread(tmp_path / "plots" / p)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0.01  # a drawn picture, not blank


def test_each_kind_is_recognized(data_root):
    assert compute(str(data_root / "raw"))["kind"] == "corpus"
    dd = compute(str(data_root / "work/dedup"))
    assert dd["kind"] == "stage" and dd["clusters"]["clusters"] > 0 and dd["pipeline"]["stages"] == ["dedup"]
    rel = compute(str(data_root / "slimpajama"))
    assert rel["kind"] == "release" and rel["release"]["splits"]["train"]["docs"] > 0
    sh = compute(str(data_root / "shards"))
    assert sh["kind"] == "shards" and sh["shards"]["seq512-bestfit/train"]["rows"] > 0


def test_damaged_shards_are_reported(data_root, tmp_path):
    import shutil

    shutil.copytree(data_root / "shards", tmp_path / "shards")
    part = tmp_path / "shards" / "seq512-bestfit" / "train" / "part-00000.arrow"
    part.write_bytes(part.read_bytes()[:-10])
    st = compute(str(tmp_path / "shards"))["shards"]["seq512-bestfit/train"]
    assert not st["checksums_ok"] and "part-00000.arrow" in st["error"]


def test_a_corpus_with_bad_records_says_how_many_it_left_out(tmp_path):
    raw = tmp_path / "raw" / "S"
    raw.mkdir(parents=True)
    good = b"".join(b'{"text": "document number %d with some words"}\n' % i for i in range(4))
    (raw / "a.jsonl").write_bytes(good + b'{"text": 5}\nnot json\n{"no_text": 1}\n' * 2)
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "raw")], terminal_width=200)
    assert r.exit_code == 0
    assert "corpus: 4 documents" in r.output and "6 bad input records not counted" in r.output, r.output


def test_tables_fit_80_columns_with_every_figure_whole():
    """A pipe or a log is 80 columns: no figure wrapped digit by digit, no header cut mid-word, nothing elided."""
    import io

    from rich.console import Console

    from slimpajama.cli.render import count, print_stats, size

    assert [count(n) for n in (0, 9_999, 10_000, 999_999, 123_456_789, 4_800_000_000_000)] == \
        ["0", "9,999", "10k", "1M", "123M", "4.8T"]
    assert [size(n) for n in (512, 12_345, 123_456_789, 3_400_000_000)] == ["512 B", "12.3 kB", "123 MB", "3.4 GB"]
    names = ["RedPajamaStackExchange", "RedPajamaCommonCrawl", "RedPajamaC4"]
    chars = {"mean": 123_456.7, "p10": 1234, "p50": 45_678, "p90": 987_654, "p99": 12_345_678, "max": 98_765_432}
    big = {"docs_in": 987_654_321, "bad_input": 12_345, "short": 98_765_432, "duplicate": 456_789_012,
           "decontaminated": 1_234, "kept_docs": 432_109_876, "byte_duplication_rate": 0.123456,
           "byte_share": 0.5, "token_share": 0.456789}
    st = {"path": "data", "corpus": {"documents": 2_000_000_000, "bytes": 4_800_000_000_000, "sampled": False,
                                     "sources": {n: {"documents": 987_654_321, "bytes": 2_345_678_901_234,
                                                     "chars": chars} for n in names}},
          "pipeline": {"stages": ["normalize", "dedup", "release"], "totals": {"bytes_removed_fraction": 0.49},
                       "sources": {n: big for n in names}},
          "clusters": {"clusters": 123_456_789, "duplicates": 345_678_901, "size_histogram": {"2": 100_000_000,
                                                                                                "3": 23_456_789},
                       "largest": [{"cluster_id": 42, "size": 123_456, "kept_doc_id": "common_crawl/2023-06/"
                                    "en_head_0000.json.gz.dedup.classifier.jsonl.zst:123456", "sources": names}]},
          "tokens": {"gpt2": {"tokens": 627_000_000_000, "tokens_per_source": {n: 209_000_000_000 for n in names}}},
          "shards": {"seq2048-0-0.75/validation": {"rows": 0, "tokens": 0, "seq_len": 2048, "packing": "concat",
                                                   "padding_fraction": 0.0, "docs_per_row": None,
                                                   "docs_cut_fraction": 0.0, "checksums_ok": True, "error": None},
                     "seq8192-0.75-1/train": {"rows": 19_000_000, "tokens": 155_000_000_000, "seq_len": 8192,
                                              "packing": "bestfit", "padding_fraction": 0.012345,
                                              "docs_per_row": 3.14159, "docs_cut_fraction": 0.001,
                                              "checksums_ok": True, "error": None}}}
    out = io.StringIO()
    print_stats(st, console=Console(file=out, width=80, color_system=None))
    text = out.getvalue()
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in text, text
    for whole in ("988M", "2.3 TB", "123k", "45.7k", "12.3M", "98.8M", "457M", "12.35%", "45.68%", "3.14",
                  "627B", "155B", "RedPajamaStackExchange", "duplicate", "decontam.",
                  "clusters by size: 2: 100M, 3: 23.5M", "all 2 splits ok"):
        assert whole in text, (whole, text)
    validation = next(line for line in lines if line.startswith("seq2048-0-0.75/validation"))
    assert "None" not in validation and validation.split()[-2:] == ["-", "0.00%"]


def test_the_padding_plot_is_for_bestfit_only(data_root, tmp_path):
    run_shards(str(data_root / "tokens/gpt2"), str(tmp_path / "shards"), 512, progress=False)  # concat: no padding
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "shards"), "--plot", str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(tmp_path / "plots")) == ["tokens_per_source.png"]
