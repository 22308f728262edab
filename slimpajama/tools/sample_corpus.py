"""A deterministic RedPajama-shaped sample corpus with planted cases and their ground truth.

Text comes from word-level Markov chains trained on real text shipped in `slimpajama/data` (Common Crawl and
arXiv samples, CPython source, UDHR translations), so it has the statistics of language, not of random bytes.

Layout: `<out>/<RedPajama set name>/part-NNNNN.jsonl.zst`, lines `{"text", "meta": {"redpajama_set_name"}}`, and
`<out>/_ground_truth.json` (skipped by the readers) listing every planted case by doc id:
  * `pairs`: exact duplicates (jaccard 1.0) and near-duplicates at known character-13-gram Jaccard levels of the
    cleaned view of the normalized text, within and across sources;
  * `short`: documents whose cleaned view is under 200 characters;
  * `mojibake` / `non_nfc`: documents whose normalized text should differ from the raw (with the SHA-256 of the
    text they should normalize to); `non_english`: documents in other languages.

Every document is a function of (seed, source, file, line) alone, and a planted copy regenerates its base from
the base's slot, so files are generated independently and in parallel with the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import ftfy
import orjson
import zstandard

from slimpajama.core import defaults
from slimpajama.core.cleaned import clean_text
from slimpajama.io.writers import ReleaseChunkWriter, write_bytes_atomic
from slimpajama.tools.sample_text import (
    BASE_SOURCES,
    SHAPES,
    SourceShape,
    chain,
    generate_document,
    languages,
    mojibake,
    near_duplicate,
    with_accents,
)

GROUND_TRUTH_FILE = "_ground_truth.json"
NEAR_LEVELS = (0.95, 0.9, 0.85, 0.7, 0.5)
DOCS_PER_FILE = 250


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Plant:
    kind: str  # exact | near | short | mojibake | non_nfc | non_english
    base: tuple[str, int] | None = None  # (source, slot) of the document copied
    level: float | None = None
    lang: str | None = None


def _counts(docs: int) -> dict[str, int]:
    counts = {}
    for s, shape in SHAPES.items():
        counts[s] = max(1, round(docs * shape.share))
    left = docs - sum(counts.values())
    counts["RedPajamaCommonCrawl"] += left
    return counts


def _mean_chars(shape: SourceShape) -> float:
    mean = shape.median_chars * math.exp(shape.sigma ** 2 / 2)
    return min(shape.max_chars, max(shape.min_chars, mean))


def docs_for_bytes(nbytes: int) -> int:
    per_doc = sum(s.share * _mean_chars(s) for s in SHAPES.values())
    return max(200, int(nbytes / per_doc))


MIN_DOCS = defaults.SAMPLE_MIN_DOCS


def make_plan(seed: int, counts: dict[str, int]) -> dict[tuple[str, int], Plant]:
    """Which slots hold planted documents. Bases are never planted slots themselves."""
    rng = random.Random(f"plan/{seed}")
    total = sum(counts.values())
    used: set[tuple[str, int]] = set()
    plan: dict[tuple[str, int], Plant] = {}

    def pick(pool: tuple[str, ...]) -> tuple[str, int]:
        while True:
            s = pool[rng.randrange(len(pool))]
            slot = (s, rng.randrange(counts[s]))
            if slot not in used:
                used.add(slot)
                return slot

    unit = max(4, total // 100)
    for i in range(unit):  # exact duplicates; every third cluster has two copies
        base = pick(BASE_SOURCES)
        for _ in range(2 if i % 3 == 0 else 1):
            plan[pick(BASE_SOURCES if i % 2 else (base[0],))] = Plant("exact", base, 1.0)
    for level in NEAR_LEVELS:
        for i in range(unit):
            base = pick(BASE_SOURCES)
            plan[pick((base[0],) if i % 2 == 0 else BASE_SOURCES)] = Plant("near", base, level)
    web = ("RedPajamaCommonCrawl", "RedPajamaC4", "RedPajamaWikipedia", "RedPajamaStackExchange")
    for _ in range(unit):
        plan[pick(web)] = Plant("short")
    for _ in range(max(2, unit // 2)):
        plan[pick(web)] = Plant("mojibake")
        plan[pick(web)] = Plant("non_nfc")
    langs = sorted(languages())
    for i in range(unit):
        plan[pick(("RedPajamaCommonCrawl", "RedPajamaWikipedia"))] = Plant("non_english", lang=langs[i % len(langs)])
    return plan


def doc_rng(seed: int, source: str, slot: int) -> random.Random:
    return random.Random(f"doc/{seed}/{source}/{slot}")


def base_text(seed: int, source: str, slot: int) -> str:
    return generate_document(doc_rng(seed, source, slot), source)


def doc_id(source: str, slot: int) -> str:
    return f"{source}/{file_name(slot // DOCS_PER_FILE)}:{slot % DOCS_PER_FILE + 1}"


def file_name(index: int) -> str:
    return f"part-{index:05d}.jsonl.zst"


def _planted_text(seed: int, source: str, slot: int, plant: Plant) -> tuple[str, dict]:
    rng = doc_rng(seed, source, slot)
    if plant.kind == "exact":
        return base_text(seed, *plant.base), {"jaccard": 1.0}
    if plant.kind == "near":
        text, j = near_duplicate(rng, base_text(seed, *plant.base), plant.level)
        return text, {"jaccard": round(j, 6)}
    if plant.kind == "short":
        while True:
            text = chain("web").text(rng, rng.randrange(30, 170))
            if len(clean_text(text)) < 200:
                return text, {"cleaned_chars": len(clean_text(text))}
    if plant.kind in ("mojibake", "non_nfc"):
        original = unicodedata.normalize("NFC", with_accents(rng, rng.randrange(800, 3000)))
        text = mojibake(original) if plant.kind == "mojibake" else unicodedata.normalize("NFD", original)
        expected = ftfy.fix_text(original, normalization="NFC")
        return text, {"expected_sha256": hashlib.sha256(expected.encode()).hexdigest()}
    if plant.kind == "non_english":
        return chain(f"lang:{plant.lang}").text(rng, rng.randrange(800, 3000)), {"lang": plant.lang}
    raise ValueError(plant.kind)


def _write_file(args) -> tuple[str, int, int, list[dict]]:
    out, seed, source, index, n_slots, plan_items = args
    plan = dict(plan_items)
    path = os.path.join(out, source, file_name(index))
    facts = []
    with ReleaseChunkWriter(path) as w:
        for slot in range(index * DOCS_PER_FILE, index * DOCS_PER_FILE + n_slots):
            plant = plan.get(slot)
            if plant is None:
                text = base_text(seed, source, slot)
            else:
                text, fact = _planted_text(seed, source, slot, plant)
                fact.update(kind=plant.kind, doc_id=doc_id(source, slot))
                if plant.base is not None:
                    fact.update(base=doc_id(*plant.base), level=plant.level, cross_source=plant.base[0] != source)
                facts.append(fact)
            w.write(text, source)
    return path, n_slots, os.path.getsize(path), facts


def generate_corpus(out: str, *, seed: int = 0, docs: int | None = None, nbytes: int | None = None,
                    workers: int = 1, progress=None) -> dict:
    """Write the corpus under `out`; returns the ground truth (also written to `<out>/_ground_truth.json`)."""
    docs = docs or (docs_for_bytes(nbytes) if nbytes else 2000)
    if docs < MIN_DOCS:  # fewer slots than the planted documents need: the plan would never complete
        raise ValueError(f"a sample corpus has at least {MIN_DOCS} documents, not {docs}")
    counts = _counts(docs)
    plan = make_plan(seed, counts)
    jobs = []
    for source, n in counts.items():
        for index in range(math.ceil(n / DOCS_PER_FILE)):
            lo = index * DOCS_PER_FILE
            items = tuple((slot, p) for (s, slot), p in plan.items() if s == source and lo <= slot < lo + DOCS_PER_FILE)
            jobs.append((out, seed, source, index, min(DOCS_PER_FILE, n - lo), items))
    results = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for r in pool.map(_write_file, jobs):
                results.append(r)
                if progress:
                    progress(r)
    else:
        for job in jobs:
            results.append(_write_file(job))
            if progress:
                progress(results[-1])
    facts = [f for r in results for f in r[3]]
    truth = {
        "seed": seed,
        "docs": docs,
        "bytes_compressed": sum(r[2] for r in results),
        "docs_per_source": counts,
        "files": [os.path.relpath(r[0], out) for r in results],
        "pairs": [{"a": f["base"], "b": f["doc_id"], "kind": f["kind"], "level": f["level"],
                   "jaccard": f["jaccard"], "cross_source": f["cross_source"]}
                  for f in facts if f["kind"] in ("exact", "near")],
        "short": [f["doc_id"] for f in facts if f["kind"] == "short"],
        "mojibake": [{"doc_id": f["doc_id"], "expected_sha256": f["expected_sha256"]}
                     for f in facts if f["kind"] == "mojibake"],
        "non_nfc": [{"doc_id": f["doc_id"], "expected_sha256": f["expected_sha256"]}
                    for f in facts if f["kind"] == "non_nfc"],
        "non_english": [{"doc_id": f["doc_id"], "lang": f["lang"]} for f in facts if f["kind"] == "non_english"],
    }
    _remove_earlier_files(out, set(truth["files"]))
    write_bytes_atomic(os.path.join(out, GROUND_TRUTH_FILE), json.dumps(truth, indent=1, sort_keys=True).encode())
    return truth


# RedPajama-Data-1T as downloaded: its folders and file names, and its rows' red_pajama_subset
RP1T_SUBSETS = {"RedPajamaArXiv": "arxiv", "RedPajamaBook": "books", "RedPajamaC4": "c4",
                "RedPajamaCommonCrawl": "common_crawl", "RedPajamaGithub": "github",
                "RedPajamaStackExchange": "stackexchange", "RedPajamaWikipedia": "wikipedia"}
RP1T_SINGLE_FILES = {"RedPajamaBook": "book/book.jsonl", "RedPajamaWikipedia": "wikipedia/wiki.jsonl",
                     "RedPajamaStackExchange": "stackexchange/stackexchange.jsonl"}


def _rp1t_path(source: str, index: int) -> str:
    if source in RP1T_SINGLE_FILES:
        return RP1T_SINGLE_FILES[source]  # one file for the whole source, as in the download (74-111 GB there)
    digest = hashlib.sha1(f"{source}/{index}".encode()).hexdigest()
    return {"RedPajamaArXiv": f"arxiv/arxiv_{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:28]}.jsonl",
            "RedPajamaC4": f"c4/c4-train.{index:05d}-of-01024.jsonl",
            "RedPajamaCommonCrawl": f"common_crawl/2019-30/en_head_{index:04d}.json.gz.dedup.classifier.jsonl.zst",
            "RedPajamaGithub": f"github/filtered_{digest[:32]}.sampled.jsonl"}[source]


def to_redpajama_1t(src: str, out: str) -> dict:
    """Rewrite a generated corpus (SlimPajama layout, under `src`) in RedPajama-Data-1T's layout under `out`:
    its folder and file names (book, wikipedia and stackexchange one plain .jsonl each; common_crawl .jsonl.zst)
    and its rows `{"text", "meta": {...}, "red_pajama_subset"}` without `meta.redpajama_set_name`. The ground
    truth is rewritten with the new doc ids. Returns it."""
    from slimpajama.errors import raise_on_bad
    from slimpajama.io.discover import discover
    from slimpajama.io.documents import read_documents

    with open(os.path.join(src, GROUND_TRUTH_FILE), "rb") as f:
        truth = json.load(f)
    new_id, lines, handles = {}, {}, {}
    try:
        for file in discover(src):
            source = file.folder_source
            rel = _rp1t_path(source, int(file.rel.rsplit("-", 1)[1].split(".")[0]))
            if rel not in handles:
                path = os.path.join(out, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                raw = open(path, "wb")
                handles[rel] = (zstandard.ZstdCompressor().stream_writer(raw) if rel.endswith(".zst") else raw)
            for batch in read_documents(file, raise_on_bad):
                for doc_id, text in zip(batch.column("doc_id").to_pylist(), batch.column("text").to_pylist(),
                                        strict=True):
                    lines[rel] = lines.get(rel, 0) + 1
                    new_id[doc_id] = f"{rel}:{lines[rel]}"
                    handles[rel].write(orjson.dumps({"text": text, "meta": {"source_doc": doc_id},
                                                     "red_pajama_subset": RP1T_SUBSETS[source]}) + b"\n")
    finally:
        for h in handles.values():
            h.close()

    def remap(value):
        if isinstance(value, str):
            return new_id.get(value, value)
        if isinstance(value, list):
            return [remap(v) for v in value]
        if isinstance(value, dict):
            return {k: remap(v) for k, v in value.items()}
        return value

    truth = {**remap({k: v for k, v in truth.items() if k != "files"}), "files": sorted(handles), "layout":
             "redpajama-1t"}
    _remove_earlier_files(out, set(handles))
    write_bytes_atomic(os.path.join(out, GROUND_TRUTH_FILE), json.dumps(truth, indent=1, sort_keys=True).encode())
    return truth


def _remove_earlier_files(out: str, current: set[str]) -> None:
    """A rerun into the same folder (say with fewer --docs) removes the files of the earlier corpus it does not
    rewrite (listed in its ground truth), which would otherwise be read as part of this one."""
    try:
        with open(os.path.join(out, GROUND_TRUTH_FILE), "rb") as f:
            earlier = json.load(f).get("files", [])
    except (OSError, ValueError):
        return
    for rel in set(earlier) - current:
        path = os.path.normpath(os.path.join(out, rel))
        if path.startswith(os.path.abspath(out) + os.sep) or path.startswith(os.path.normpath(out) + os.sep):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
