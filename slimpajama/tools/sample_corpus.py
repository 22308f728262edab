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
import functools
import hashlib
import json
import math
import os
import random
import re
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources

import ftfy
import orjson
import zstandard

from slimpajama.core.schema import REDPAJAMA_SOURCES
from slimpajama.core.textnorm import char_shingles, clean_text, jaccard
from slimpajama.io.writers import ReleaseChunkWriter, write_bytes_atomic

GROUND_TRUTH_FILE = "_ground_truth.json"
NEAR_LEVELS = (0.95, 0.9, 0.85, 0.7, 0.5)
DOCS_PER_FILE = 250


@dataclass(frozen=True)
class SourceShape:
    share: float  # fraction of documents
    median_chars: int
    sigma: float
    min_chars: int
    max_chars: int
    style: str  # web | code | book | arxiv | wiki | qa


SHAPES = {
    "RedPajamaCommonCrawl": SourceShape(0.38, 2500, 0.8, 600, 40_000, "web"),
    "RedPajamaC4": SourceShape(0.30, 1500, 0.6, 600, 10_000, "web"),
    "RedPajamaGithub": SourceShape(0.06, 2500, 0.9, 600, 30_000, "code"),
    "RedPajamaBook": SourceShape(0.004, 120_000, 0.4, 50_000, 400_000, "book"),
    "RedPajamaArXiv": SourceShape(0.02, 30_000, 0.5, 8_000, 120_000, "arxiv"),
    "RedPajamaWikipedia": SourceShape(0.10, 3000, 0.8, 600, 30_000, "wiki"),
    "RedPajamaStackExchange": SourceShape(0.136, 1200, 0.6, 600, 8_000, "qa"),
}
assert tuple(SHAPES) == REDPAJAMA_SOURCES
# Sources whose documents serve as bases of planted near-duplicates (moderate length, prose or code).
BASE_SOURCES = ("RedPajamaCommonCrawl", "RedPajamaC4", "RedPajamaWikipedia", "RedPajamaStackExchange",
                "RedPajamaGithub")
ACCENTED = ("café", "naïve", "résumé", "Zürich", "São Paulo", "façade", "jalapeño", "Ångström", "Dvořák",
            "crème brûlée", "fiancée", "Köln", "coöperate", "déjà vu", "Øresund")


# ------------------------------------------------------------------------------------------------ Markov chains


class Markov:
    """An order-k Markov chain over tokens; generation restarts at a random state at a dead end."""

    def __init__(self, tokens: list[str], order: int, joiner: str):
        self.order, self.joiner = order, joiner
        succ: dict[tuple, list[str]] = {}
        for i in range(len(tokens) - order):
            succ.setdefault(tuple(tokens[i: i + order]), []).append(tokens[i + order])
        self.succ = succ
        self.states = sorted(succ)
        self.vocab = sorted(set(tokens))

    def generate(self, rng: random.Random, n_chars: int) -> Iterator[str]:
        state = self.states[rng.randrange(len(self.states))]
        yield from state
        total = sum(map(len, state))
        while total < n_chars:
            nxt = self.succ.get(state)
            if nxt is None:
                state = self.states[rng.randrange(len(self.states))]
                continue
            tok = nxt[rng.randrange(len(nxt))]
            yield tok
            total += len(tok) + len(self.joiner)
            state = state[1:] + (tok,)

    def text(self, rng: random.Random, n_chars: int) -> str:
        return self.joiner.join(self.generate(rng, n_chars))


def _data_text(name: str) -> str:
    return resources.files("slimpajama.data").joinpath(name).read_text(encoding="utf-8")


def _jsonl_texts(name: str) -> list[str]:
    return [json.loads(line)["text"] for line in _data_text(name).splitlines() if line.strip()]


_CODE_TOKEN = re.compile(r"\n[ \t]*|[ \t]+|\w+|[^\w\s]")


@functools.cache
def chain(kind: str) -> Markov:
    if kind == "web":
        return Markov(" ".join(_jsonl_texts("cc-en-head-sample.jsonl")).split(), 1, " ")
    if kind == "arxiv":
        return Markov(" ".join(_jsonl_texts("redpajama-arxiv-sample.jsonl")).split(), 1, " ")
    if kind == "code":
        return Markov(_CODE_TOKEN.findall(_data_text("code_python.txt")), 2, "")
    if kind.startswith("lang:"):
        return Markov(_language_tokens(kind[5:]), 1, "" if kind[5:] in ("zh", "ja") else " ")
    raise ValueError(kind)


@functools.cache
def _languages() -> dict[str, str]:
    out, lang = {}, None
    for line in _data_text("multilingual.txt").splitlines():
        if line.startswith("## "):
            lang = line[3:].strip()
        elif line.strip() and lang:
            out[lang] = out.get(lang, "") + line.strip() + " "
    return out


def _language_tokens(lang: str) -> list[str]:
    text = _languages()[lang]
    return list(text.replace(" ", "")) if lang in ("zh", "ja") else text.split()


# ------------------------------------------------------------------------------------------------ documents


def _paragraphs(rng: random.Random, kind: str, n_chars: int) -> str:
    words = chain(kind).text(rng, n_chars).split(" ")
    out, cur = [], []
    for w in words:
        cur.append(w)
        if w.endswith((".", "?", "!")) and len(cur) > 40 and rng.random() < 0.3:
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))
    return "\n\n".join(out)


def _title(rng: random.Random) -> str:
    words = [w.strip(".,;:()\"'") for w in chain("web").text(rng, 30).split()]
    return " ".join(w.capitalize() for w in words if w) or "Untitled"


def _doc_length(rng: random.Random, shape: SourceShape) -> int:
    n = int(shape.median_chars * math.exp(rng.gauss(0.0, shape.sigma)))
    return max(shape.min_chars, min(shape.max_chars, n))


def generate_document(rng: random.Random, source: str) -> str:
    shape = SHAPES[source]
    n = _doc_length(rng, shape)
    style = shape.style
    if style == "web":
        return _title(rng) + "\n\n" + _paragraphs(rng, "web", n)
    if style == "code":
        return chain("code").text(rng, n)
    if style == "arxiv":
        return "\\section{Introduction}\n" + _paragraphs(rng, "arxiv", n)
    if style == "wiki":
        parts = [_title(rng)]
        while sum(map(len, parts)) < n:
            parts.append(_paragraphs(rng, "web", min(1500, n)))
            if rng.random() < 0.4:
                parts.append(f"== {_title(rng)} ==")
        return "\n\n".join(parts)
    if style == "qa":
        q = max(200, n // 3)
        return f"Q:\n\n{_title(rng)}\n\n{_paragraphs(rng, 'web', q)}\n\nA:\n\n{_paragraphs(rng, 'web', n - q)}"
    if style == "book":
        parts, chapter = [], 1
        while sum(map(len, parts)) < n:
            parts.append(f"CHAPTER {chapter}\n\n" + _paragraphs(rng, "web", min(20_000, n)))
            chapter += 1
        return "\n\n\n".join(parts)
    raise ValueError(style)


def _with_accents(rng: random.Random, n_chars: int) -> str:
    words = chain("web").text(rng, n_chars).split(" ")
    for i in range(0, len(words), 7):
        words[i] = ACCENTED[rng.randrange(len(ACCENTED))]
    text = " ".join(words)
    return text.replace(" don't ", " don\u2019t ").replace(". ", ".\u201d \u201c", 3)


def _mojibake(text: str) -> str:
    raw = text.encode("utf-8")
    try:
        return raw.decode("windows-1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def dedup_view(text: str) -> str:
    """What the dedup stage hashes: the cleaned view of the normalized text."""
    return clean_text(ftfy.fix_text(text, normalization="NFC"))


def near_duplicate(rng: random.Random, base: str, target: float, ngram: int = 13) -> tuple[str, float]:
    """Replace words of `base` until the 13-gram Jaccard of the cleaned views is as close to `target` as
    word granularity allows (binary search over the number of replaced words)."""
    words = base.split(" ")
    order = list(range(len(words)))
    rng.shuffle(order)
    vocab = chain("web").vocab
    replacements = [vocab[rng.randrange(len(vocab))] for _ in order]
    base_sh = char_shingles(dedup_view(base), ngram)

    def mutate(k: int) -> tuple[str, float]:
        w = list(words)
        for idx, rep in zip(order[:k], replacements[:k], strict=True):
            w[idx] = rep
        text = " ".join(w)
        return text, jaccard(base_sh, char_shingles(dedup_view(text), ngram))

    lo, hi = 1, len(words)
    while lo < hi:  # smallest k whose jaccard <= target (jaccard falls as k grows)
        mid = (lo + hi) // 2
        if mutate(mid)[1] <= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = [mutate(k) for k in {max(1, lo - 1), lo}]
    return min(candidates, key=lambda c: abs(c[1] - target))


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
    langs = sorted(_languages())
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
        original = unicodedata.normalize("NFC", _with_accents(rng, rng.randrange(800, 3000)))
        text = _mojibake(original) if plant.kind == "mojibake" else unicodedata.normalize("NFD", original)
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
