"""Reruns, continued: what discovery reads (4-7 of the rerun cases), and outputs that must never mix with inputs."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os

import orjson
import zstandard
from rerun_helpers import cli, normalize, text, write_jsonl

from slimpajama.io.discover import discover

# ------------------------------------------------------------------------------------------------ 4-7: discovery


def test_4_out_inside_or_equal_to_an_input_is_refused(tmp_path):
    raw = tmp_path / "raw"
    write_jsonl(raw / "A" / "a.jsonl", [text(1)])
    for out in (raw / "out", raw):
        r = cli("normalize", raw, "--out", out, "--quiet")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.startswith("error: --out") and "inside the input" in r.stderr, r.stderr
    assert not (raw / "out").exists()


def test_4_out_holding_an_input_is_refused_and_nothing_lands_in_the_corpus(tmp_path):
    """`normalize s/RedPajamaC4 --out s` once wrote shards and ledgers into the corpus root, and every later read of
    `s` saw only those (88 of 300 documents, exit 0)."""
    raw = tmp_path / "s"
    write_jsonl(raw / "A" / "a.jsonl", [text(1)])
    write_jsonl(raw / "B" / "b.jsonl", [text(2)])
    before = sorted(raw.rglob("*"))
    for args in (("normalize", raw / "A", "--out", raw), ("ingest", raw / "A" / "a.jsonl", "--out", raw),
                 ("normalize", raw / "B", raw / "A", "--out", tmp_path)):
        r = cli(*args, "--quiet")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith(f"error: --out {args[-1]} holds the input "), r.stderr
    assert sorted(raw.rglob("*")) == before
    assert [f.rel for f in discover(str(raw))] == ["A/a.jsonl", "B/b.jsonl"]


def test_5_one_file_through_two_inputs_is_read_once_under_its_folder(tmp_path):
    raw = tmp_path / "raw"
    write_jsonl(raw / "A" / "a.jsonl", [text(1)])
    for inputs in ([raw, raw / "A" / "a.jsonl"], [raw / "A" / "a.jsonl", raw]):
        assert [f.rel for f in discover([str(p) for p in inputs])] == ["A/a.jsonl"]


def test_6_symlinked_source_folders_are_followed_once(tmp_path):
    raw = tmp_path / "raw"
    write_jsonl(tmp_path / "elsewhere" / "b.jsonl", [text(1)])
    write_jsonl(raw / "A" / "a.jsonl", [text(2)])
    os.symlink(tmp_path / "elsewhere", raw / "B")
    os.symlink(raw, raw / "A" / "loop")  # a link loop ends
    assert [f.rel for f in discover(str(raw))] == ["A/a.jsonl", "B/b.jsonl"]


def test_7_every_json_lines_spelling_is_read_and_unknown_files_are_listed(tmp_path, ray_session):
    raw = tmp_path / "raw"
    write_jsonl(raw / "A" / "a.json", [text(1)])
    write_jsonl(raw / "A" / "b.jsonl.bz2", [text(2)], bz2.open)
    write_jsonl(raw / "A" / "c.jsonl.xz", [text(3)], lzma.open)
    write_jsonl(raw / "A" / "d.JSONL", [text(4)])
    write_jsonl(raw / "A" / "e.jsonl.GZ", [text(5)], gzip.open)
    with open(raw / "A" / "f.jsonl.ZST", "wb") as f:
        f.write(zstandard.ZstdCompressor().compress(orjson.dumps({"text": text(6)}) + b"\n"))
    (raw / "A" / "notes.txt").write_text("not a corpus file")
    report = normalize(raw, tmp_path / "n")
    assert report.ledger.totals().docs_out == 6
    assert report.summary()["skipped_files"] == [str(raw / "A" / "notes.txt")]
    errors = [json.loads(x) for x in (tmp_path / "n" / "_errors.jsonl").read_text().splitlines()]
    assert [(e["file"], e["reason"]) for e in errors] == [(str(raw / "A" / "notes.txt"), "unknown_format")]
