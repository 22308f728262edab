"""The sample corpus's text: word-level Markov chains trained on real text shipped in `slimpajama/data` (Common
Crawl and arXiv samples, CPython source, UDHR translations), documents shaped like each RedPajama source, and the
planted variants (near-duplicates at a target Jaccard, mojibake, accents)."""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import ftfy

from slimpajama.core.cleaned import char_shingles, clean_text, jaccard
from slimpajama.core.schema import REDPAJAMA_SOURCES


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
def languages() -> dict[str, str]:
    out, lang = {}, None
    for line in _data_text("multilingual.txt").splitlines():
        if line.startswith("## "):
            lang = line[3:].strip()
        elif line.strip() and lang:
            out[lang] = out.get(lang, "") + line.strip() + " "
    return out


def _language_tokens(lang: str) -> list[str]:
    text = languages()[lang]
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


def with_accents(rng: random.Random, n_chars: int) -> str:
    words = chain("web").text(rng, n_chars).split(" ")
    for i in range(0, len(words), 7):
        words[i] = ACCENTED[rng.randrange(len(ACCENTED))]
    text = " ".join(words)
    return text.replace(" don't ", " don\u2019t ").replace(". ", ".\u201d \u201c", 3)


def mojibake(text: str) -> str:
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
