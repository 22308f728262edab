import collections
import hashlib
import json
import os
import re
import shutil

import orjson
import pyarrow as pa
import pytest
import zstandard

from slimpajama.core.release import ReleaseConfig, parse_weights, split_of
from slimpajama.core.schema import DOC_SCHEMA
from slimpajama.errors import raise_on_bad
from slimpajama.io.discover import discover
from slimpajama.io.documents import iter_documents
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
from slimpajama.pipelines.release import run_release


@pytest.fixture(scope="module")
def shards(sample_corpus, tmp_path_factory, ray_session):
    raw, _ = sample_corpus
    out = tmp_path_factory.mktemp("normalized")
    run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(str(raw))), str(out), progress=False)
    return out


def read_table(path):
    return pa.Table.from_batches(list(iter_documents(str(path), raise_on_bad)), schema=DOC_SCHEMA)


def docs(path) -> collections.Counter:
    t = read_table(path)
    return collections.Counter(zip(t["text"].to_pylist(), t["source"].to_pylist(), strict=True))


def release_files(root) -> dict:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if rel.endswith(".jsonl.zst") or rel in ("manifest.json", "ledger.json"):
                out[rel] = open(os.path.join(dirpath, name), "rb").read()
    return out


CFG = ReleaseConfig(holdout=0.1, docs_per_file=40, chunks=3, bucket_bytes=600_000)


def test_every_document_exactly_once_in_slimpajama_layout(shards, tmp_path):
    report = run_release(str(shards), str(tmp_path / "r"), CFG, progress=False)
    r = tmp_path / "r"
    splits = {s: docs(r / s) for s in ("train", "validation", "test")}
    released = sum(splits.values(), collections.Counter())
    assert not released - docs(shards)  # nothing twice, nothing invented
    missing = docs(shards) - released  # only train copies of holdout texts (the input is not deduplicated)
    holdout_texts = {t for s in ("validation", "test") for t, _ in splits[s]}
    assert all(t in holdout_texts for t, _ in missing)
    assert sum(missing.values()) == report.ledger.totals().dropped.get("decontaminated", [0])[0]
    assert splits["validation"] and splits["test"]
    assert not (set(splits["train"]) & (set(splits["validation"]) | set(splits["test"])))
    names = [os.path.relpath(p, r) for p in map(str, r.rglob("*.jsonl.zst"))]
    assert all(re.fullmatch(r"(train/chunk[1-3]/example_train_\d+|(validation|test)/chunk[1-3]/example_holdout_\d+)"
                            r"\.jsonl\.zst", n) for n in names), names
    assert len([n for n in names if n.startswith("train/")]) > 10
    # lines are exactly {"text", "meta": {"redpajama_set_name"}}
    some = next(r.glob("train/chunk1/*.jsonl.zst"))
    lines = zstandard.ZstdDecompressor().decompressobj().decompress(some.read_bytes()).splitlines()
    assert len(lines) <= 40
    for line in lines:
        obj = orjson.loads(line)
        assert list(obj) == ["text", "meta"] and list(obj["meta"]) == ["redpajama_set_name"]
    manifest = json.loads((r / "manifest.json").read_text())
    for f in manifest["files"]:
        assert hashlib.sha256((r / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert manifest["splits"]["train"]["docs"] == sum(splits["train"].values())
    assert abs(sum(manifest["byte_share_per_source"].values()) - 1) < 1e-4
    ledger = json.loads((r / "ledger.json").read_text())
    assert ledger["balanced"] and ledger["totals"]["docs_in"] == sum(docs(shards).values())
    assert report.ledger.totals().docs_out == sum(sum(c.values()) for c in splits.values())
    # the split is the seeded hash of the doc id
    t = read_table(shards)
    held = sum(split_of(d, CFG) != "train" for d in t["doc_id"].to_pylist())
    assert held == sum(splits["validation"].values()) + sum(splits["test"].values())


def test_shuffle_interleaves_sources(shards, tmp_path):
    run_release(str(shards), str(tmp_path / "r"), ReleaseConfig(holdout=0.0), progress=False)
    (only,) = list((tmp_path / "r" / "train").rglob("*.jsonl.zst"))
    sources = read_table(only)["source"].to_pylist()
    runs = sum(a != b for a, b in zip(sources, sources[1:], strict=False))
    assert runs > len(sources) / 3  # the input is sorted by source; the release is not


def test_decontamination_drops_train_copies_of_holdout_texts(tmp_path, ray_session):
    raw = tmp_path / "raw" / "RedPajamaC4"
    raw.mkdir(parents=True)
    with open(raw / "twins.jsonl", "w") as f:
        for i in range(400):  # every text twice, under two doc ids
            text = f"planted document number {i} " * 12
            f.write(json.dumps({"text": text}) + "\n" + json.dumps({"text": text}) + "\n")
    run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(str(tmp_path / "raw"))), str(tmp_path / "n"),
              progress=False)
    cfg = ReleaseConfig(holdout=0.2)
    report = run_release(str(tmp_path / "n"), str(tmp_path / "r"), cfg, progress=False)
    ids = read_table(tmp_path / "n")["doc_id"].to_pylist()
    split = [split_of(d, cfg) for d in ids]
    expected = sum((a == "train") != (b == "train") for a, b in zip(split[0::2], split[1::2], strict=True))
    assert expected > 10
    assert report.ledger.totals().dropped["decontaminated"][0] == expected
    train = set(docs(tmp_path / "r" / "train"))
    holdout = set(docs(tmp_path / "r" / "validation")) | set(docs(tmp_path / "r" / "test"))
    assert not train & holdout
    assert json.loads((tmp_path / "r" / "ledger.json").read_text())["balanced"]


def test_sampling_weights(shards, tmp_path):
    cfg = ReleaseConfig(holdout=0.0, weights=parse_weights("RedPajamaC4=0.5,RedPajamaBook=2.0,RedPajamaGithub=1.5"))
    report = run_release(str(shards), str(tmp_path / "r"), cfg, progress=False)
    inp, out = docs(shards), docs(tmp_path / "r" / "train")
    book = {k for k in inp if k[1] == "RedPajamaBook"}
    assert book and all(out[k] == 2 * inp[k] for k in book)
    c4_in = sum(v for k, v in inp.items() if k[1] == "RedPajamaC4")
    c4_out = sum(v for k, v in out.items() if k[1] == "RedPajamaC4")
    assert 0.35 * c4_in < c4_out < 0.65 * c4_in and all(out[k] <= inp[k] for k in inp if k[1] == "RedPajamaC4")
    gh = [out[k] / inp[k] for k in inp if k[1] == "RedPajamaGithub"]
    assert {1, 2} <= set(gh)
    led = report.ledger.sources
    assert led["RedPajamaC4"].dropped["sampled_out"][0] == c4_in - c4_out
    assert report.ledger.balanced()
    with pytest.raises(ValueError):
        parse_weights("RedPajamaC4")


def test_same_bytes_with_1_and_2_workers_and_after_resume(shards, tmp_path):
    run_release(str(shards), str(tmp_path / "a"), CFG, workers=1, progress=False)
    run_release(str(shards), str(tmp_path / "b"), CFG, workers=2, progress=False)
    a, b = release_files(tmp_path / "a"), release_files(tmp_path / "b")
    assert a == b and len(a) > 10
    victims = [k for k in a if k.endswith(".zst")][:3]
    for v in victims:
        os.remove(tmp_path / "a" / v)
    shutil.rmtree(tmp_path / "work" / "release-a" / "RedPajamaC4")
    report = run_release(str(shards), str(tmp_path / "a"), CFG, progress=False)
    assert 0 < report.skipped
    assert release_files(tmp_path / "a") == b


def test_a_zero_weight_samples_a_whole_source_out(shards, tmp_path):
    cfg = ReleaseConfig(holdout=0.0, weights=parse_weights("RedPajamaBook=0"))
    report = run_release(str(shards), str(tmp_path / "r"), cfg, progress=False)
    inp, out = docs(shards), docs(tmp_path / "r" / "train")
    book = sum(v for k, v in inp.items() if k[1] == "RedPajamaBook")
    assert book and not any(k[1] == "RedPajamaBook" for k in out)
    assert report.ledger.sources["RedPajamaBook"].dropped["sampled_out"][0] == book and report.ledger.balanced()
