"""What the project writes, read by the libraries other trainers use, each with its own reader, in the peers'
virtualenv (`make peers`, which `make test` builds; tests/peers/read.py): MosaicML's and litdata's readers get
the token cache's documents token for token from the exports; HF datasets' `load_dataset` loads a shards folder
(empty splits included) and a release folder whole."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import cache_documents

from slimpajama.packers import ShardReader
from slimpajama.pipelines.export import run_export
from slimpajama.pipelines.pack import run_shards

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / os.environ.get("SLIMPAJAMA_PEERS", ".venv-peers")  # relative: to the repository


def peer_env(home) -> dict[str, str]:
    """The environment of a process in the peers' virtualenv: offline, its caches under `home`."""
    if not (PEERS / "bin" / "python").exists():
        pytest.fail(f"no peers' virtualenv at {PEERS}: run `make peers` (`make test` builds it)")
    return {"PATH": os.environ["PATH"], "HOME": str(home), "HF_HOME": str(home / "hf"), "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "tests" / "peers" / "stub")}


def peer(tmp_path, *args) -> None:
    r = subprocess.run([str(PEERS / "bin" / "python"), str(ROOT / "tests" / "peers" / "read.py"), *map(str, args)],
                       env=peer_env(tmp_path), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.fixture(scope="module")
def data(clean_pipeline):
    return clean_pipeline[0]


def test_mosaicml_streaming_reads_the_mds_export_document_for_document(data, tmp_path):
    cache = data / "tokens" / "gpt2"
    want = cache_documents(cache)
    summary = run_export(str(cache), str(tmp_path / "mds" / "train"), fmt="mds", chunk_bytes=50_000)
    assert summary["format"] == "mosaicml-mds" and len(summary["datasets"]["all"]["files"]) > 3
    peer(tmp_path, "mds", tmp_path / "mds" / "train", tmp_path / "got.npz")
    got = np.load(tmp_path / "got.npz")
    assert list(got["lengths"]) == [len(t) for _, t in want] and str(got["dtype"]) == "uint16"
    np.testing.assert_array_equal(got["tokens"], np.concatenate([t for _, t in want]))


def test_litdata_reads_the_litdata_export_block_for_block_per_source(data, tmp_path):
    cache, block = data / "tokens" / "gpt2", 65
    want = cache_documents(cache)
    summary = run_export(str(cache), str(tmp_path / "lit" / "train"), fmt="litdata", by_source=True,
                         chunk_bytes=40_000)
    source = max(summary["datasets"], key=lambda s: summary["datasets"][s]["tokens"])
    folder = tmp_path / "lit" / summary["datasets"][source]["prefix"]
    peer(tmp_path, "litdata", folder, block, tmp_path / "got.npz")
    got = np.load(tmp_path / "got.npz")
    # TokensLoader cuts each chunk's tokens (whole documents, back to back) into blocks; a chunk's tail is unread
    tokens = np.concatenate([t for s, t in want if s == source])
    index = json.loads((folder / "index.json").read_text())
    expected, start = [], 0
    for chunk in index["chunks"]:
        expected += [tokens[start + j * block: start + (j + 1) * block] for j in range(chunk["dim"] // block)]
        start += chunk["dim"]
    assert start == len(tokens) and len(index["chunks"]) > 1 and str(got["dtype"]) == "uint16"
    np.testing.assert_array_equal(got["blocks"], np.stack(expected))


def test_hf_load_dataset_loads_a_shards_folder_with_an_empty_split(data, tmp_path, caplog):
    """HF has no empty splits: one that packed to 0 rows (said at pack) is absent from what load_dataset returns,
    the others load whole (the hidden index is no data file to it)."""
    cache = data / "tokens" / "gpt2"
    with caplog.at_level("WARNING", logger="slimpajama"):  # validation: fewer tokens than a row
        run_shards(str(cache), str(tmp_path / "shards"), 8192, progress=False)
    assert "seq8192/validation: 0 rows (its tokens are fewer than one row of 8,193)" in caplog.text
    shards = tmp_path / "shards" / "seq8192"
    rows = {s: len(ShardReader(str(shards / s))) for s in ("train", "validation", "test")}
    assert rows["train"] > 0 and rows["test"] > 0 and rows["validation"] == 0
    peer(tmp_path, "hf", shards, tmp_path / "got.json")
    got = json.loads((tmp_path / "got.json").read_text())
    assert {s: v["rows"] for s, v in got.items()} == {"train": rows["train"], "test": rows["test"]}
    assert got["train"]["columns"] == ["tokens", "doc_lens", "padding"]
    assert got["train"]["first"]["tokens"] == ShardReader(str(shards / "train"))[0].tolist()
    assert ShardReader(str(shards / "train")).manifest["encoding"] == "gpt2"  # as every command names it


def test_hf_load_dataset_loads_a_release_folder_whole(data, tmp_path):
    release = data / "slimpajama"
    manifest = json.loads((release / "manifest.json").read_text())
    peer(tmp_path, "hf", release, tmp_path / "got.json")
    got = json.loads((tmp_path / "got.json").read_text())
    assert {s: v["rows"] for s, v in got.items()} == {s: v["docs"] for s, v in manifest["splits"].items()}
    assert got["train"]["columns"] == ["text", "meta"] and "redpajama_set_name" in got["train"]["first"]["meta"]
