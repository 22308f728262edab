"""Exports for the trainers people already use, checked by their own readers: Megatron-core's IndexedDataset reads
our Megatron export (litdata, MosaicML and HF datasets, which cannot share the project's virtualenv: test_peers.py)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from pipeline_helpers import cache_documents

from slimpajama.cli import main
from slimpajama.packers.megatron import MegatronWriter
from slimpajama.pipelines.export import run_export

with warnings.catch_warnings():  # megatron-core warns that Transformer Engine and Apex are not installed
    warnings.simplefilter("ignore")
    from megatron.core.datasets.indexed_dataset import IndexedDataset


@pytest.fixture(scope="module")
def cache(clean_pipeline):
    data, _, _ = clean_pipeline
    return data / "tokens" / "gpt2"


def test_megatron_reads_every_document_of_the_cache(cache, tmp_path):
    want = cache_documents(cache)
    summary = run_export(str(cache.parent), str(tmp_path / "train"))  # the tokenize --out root is enough
    ds = IndexedDataset(str(tmp_path / "train"))
    assert len(ds) == len(want) == summary["documents"] > 100
    assert ds.sequence_lengths.sum() == sum(len(t) for _, t in want) == summary["tokens"]
    for i, (_, tokens) in enumerate(want):
        np.testing.assert_array_equal(ds[i], tokens)
        assert tokens[-1] == 50256  # EOS included, as the cache holds it
    assert list(ds.document_indices) == list(range(len(want) + 1))
    assert run_export(str(cache), str(tmp_path / "train"))["resumed"]


def test_ranges_split_the_documents_and_sources_get_their_own_datasets(cache, tmp_path):
    want = cache_documents(cache)
    a = run_export(str(cache), str(tmp_path / "a"), range_=(0.0, 0.5))
    b = run_export(str(cache), str(tmp_path / "b"), range_=(0.5, 1.0))
    da, db = IndexedDataset(str(tmp_path / "a")), IndexedDataset(str(tmp_path / "b"))
    assert len(da) + len(db) == len(want) and 0 < a["tokens"] < b["tokens"] + a["tokens"]
    np.testing.assert_array_equal(db[0], want[len(da)][1])
    by = run_export(str(cache), str(tmp_path / "src"), by_source=True)
    sources = sorted({s for s, _ in want})
    assert sorted(by["datasets"]) == sources
    for s in sources:
        mine = [t for src, t in want if src == s]
        ds = IndexedDataset(str(tmp_path / by["datasets"][s]["prefix"]))  # a name in PREFIX.json's folder
        assert len(ds) == len(mine) and all(np.array_equal(ds[i], t) for i, t in enumerate(mine))
    weights = [float(w) for w in by["data_path"].split()[0::2]]
    assert abs(sum(weights) - 1) < 1e-4


def test_an_export_moved_elsewhere_is_whole_and_data_path_works_from_any_directory(cache, tmp_path, monkeypatch,
                                                                                      caplog):
    """PREFIX.json names its datasets relative to its own folder (a moved export is still complete: no rewrite);
    data_path, what Megatron's --data-path takes, is absolute. A source too small for Megatron's usual split is
    said at export (Megatron would loop on it)."""
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING", logger="slimpajama"):
        run_export(str(cache), "out/src", by_source=True)
    small = [r.getMessage() for r in caplog.records if "too few for Megatron's usual --split 969,30,1" in r.message]
    assert small and all("--valid-data-path" in m for m in small)
    (tmp_path / "out").rename(tmp_path / "moved")
    monkeypatch.chdir(cache)
    moved = run_export(str(cache), str(tmp_path / "moved" / "src"), by_source=True)
    assert moved["resumed"] and all("/" not in d["prefix"] for d in moved["datasets"].values())
    fresh = run_export(str(cache), str(tmp_path / "again"), by_source=True)
    pairs = fresh["data_path"].split()
    assert pairs[0::2] == moved["data_path"].split()[0::2]  # the same weights
    for path in pairs[1::2]:
        assert path.startswith(str(tmp_path / "again")) and len(IndexedDataset(path)) > 0


def test_an_export_replaces_what_an_earlier_one_at_its_prefix_wrote(cache, tmp_path):
    """--by-source then a plain export at the same prefix: the per-source files go (PREFIX.json no longer lists
    them); an empty range, an empty or directory prefix: refused in one line, nothing written."""
    by = run_export(str(cache), str(tmp_path / "e" / "t"), by_source=True)
    assert len(by["datasets"]) > 1
    run_export(str(cache), str(tmp_path / "e" / "t"))
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["t.bin", "t.idx", "t.json"]
    tokens = sum(len(t) for _, t in cache_documents(cache))
    for args, expect in (
            ([str(cache), "--out", str(tmp_path / "r"), "--range", "0.999999:1"],
             f"error: --range 0.999999:1 holds no document of the train split (a range holds the documents whose "
             f"first token lies in it; the split has {tokens:,} tokens): widen it"),
            ([str(cache), "--out", ""], "error: --out '' is not a file prefix: give one such as data/export/train"),
            ([str(cache), "--out", f"{tmp_path}/d/"], f"error: --out '{tmp_path}/d/' is not a file prefix")):
        r = CliRunner().invoke(main, ["export", *args])
        assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1].startswith(expect), r.output
    assert not list(tmp_path.glob("r*")) and not list(tmp_path.glob(".*")) and not (tmp_path / "d").exists()


def test_stats_and_the_stages_say_a_folder_holds_an_export(cache, tmp_path):
    run_export(str(cache), str(tmp_path / "e" / "train"), by_source=True)
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "e")], terminal_width=200)
    assert r.exit_code == 0 and "corpus:" not in r.output
    assert "megatron-mmap-indexed-dataset export train: train split, range 0:1" in r.output and "RedPajamaC4" in r.output
    st = json.loads(CliRunner().invoke(main, ["stats", "--json", str(tmp_path / "e")]).output)
    assert st["kind"] == "export" and st["corpus"] is None
    assert st["export"]["train"]["documents"] == len(cache_documents(cache))
    r = CliRunner().invoke(main, ["normalize", str(tmp_path / "e"), "--out", str(tmp_path / "n")])
    assert r.exit_code == 1 and "holds an export for other trainers (PREFIX.json and its datasets)" in r.stderr


READ_ONLY = """
import builtins, errno, os, sys
real_open, real_remove = builtins.open, os.remove

def refuse(path):
    raise OSError(errno.EROFS, "Read-only file system", str(path))

def ro_open(path, mode="r", *args, **kwargs):  # the export's folder is read-only: nothing can be created in it
    if str(path).startswith(sys.argv[2]) and any(c in mode for c in "wax+"):
        refuse(path)
    return real_open(path, mode, *args, **kwargs)

def ro_remove(path, *args, **kwargs):
    if str(path).startswith(sys.argv[2]):
        refuse(path)
    return real_remove(path, *args, **kwargs)

builtins.open, os.remove = ro_open, ro_remove
from slimpajama.cli import main
main(["export", sys.argv[1], "--out", sys.argv[2] + "/e"])
"""


def test_a_read_only_output_folder_is_one_line(cache, tmp_path):
    """The export's temporary files cannot be created, nor removed: one line, no 'Exception ignored' traceback."""
    import subprocess
    import sys

    (tmp_path / "ro").mkdir()
    r = subprocess.run([sys.executable, "-c", READ_ONLY, str(cache), str(tmp_path / "ro")], capture_output=True,
                       text=True)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Read-only file system: "), r.stderr


def test_uint32_tokens_export_as_int32(tmp_path):
    tokens = np.array([70000, 5, 100256, 1, 2], dtype=np.uint32)
    with MegatronWriter(str(tmp_path / "big"), np.int32) as w:
        w.add(tokens, np.array([3, 2]))
    ds = IndexedDataset(str(tmp_path / "big"))
    assert [list(ds[i]) for i in range(len(ds))] == [[70000, 5, 100256], [1, 2]]


def test_export_cli_takes_a_release_and_validation_split(clean_pipeline, tmp_path):
    data, _, _ = clean_pipeline
    r = CliRunner().invoke(main, ["export", str(data / "slimpajama"), "--out", str(tmp_path / "x" / "val"),
                                  "--tokens", str(tmp_path / "tokens"), "--split", "validation", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    ds = IndexedDataset(str(tmp_path / "x" / "val"))
    assert len(ds) == summary["documents"] == len(cache_documents(tmp_path / "tokens" / "gpt2", "validation")) > 0
    r = CliRunner().invoke(main, ["export", str(data / "work" / "dedup" / "_minhash"), "--out", str(tmp_path / "y")])
    assert r.exit_code == 1 and "export needs a token cache" in r.stderr


def test_two_releases_side_by_side_get_their_own_token_caches(clean_pipeline, tmp_path):
    import shutil

    from slimpajama.core.release import ReleaseConfig
    from slimpajama.pipelines.release import run_release

    data, _, _ = clean_pipeline
    shutil.copytree(data / "slimpajama", tmp_path / "r1")
    run_release(str(data / "work" / "dedup"), str(tmp_path / "r2"), ReleaseConfig(seed=7, holdout=0.05))
    summaries = []
    for name in ("r1", "r2"):
        r = CliRunner().invoke(main, ["export", str(tmp_path / name), "--out", str(tmp_path / "e" / name), "--json"])
        assert r.exit_code == 0, r.output
        summaries.append(json.loads(r.stdout))
    assert [s["cache"] for s in summaries] == [str(tmp_path / f"tokens-{n}" / "gpt2") for n in ("r1", "r2")]
    first = IndexedDataset(str(tmp_path / "e" / "r1"))  # the first export's cache still holds its tokens
    want = cache_documents(tmp_path / "tokens-r1" / "gpt2")
    assert len(first) == len(want) and np.array_equal(first[0], want[0][1])
