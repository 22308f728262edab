"""The fast hash (one-permutation hashing, optimally densified) keeps the LSH S-curve: on real text, planted pairs
across Jaccard 0.5-0.99 are clustered as 1-(1-J^r)^b says, per Jaccard bin, for SlimPajama's 9x13 and a 20x6 band
setting; short documents (200-600 cleaned characters, where most bins start empty and densification fills them)
in bins of their own; pages with long runs of a repeated menu or footer; one-shingle documents."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import ARXIV_SAMPLE, CC_SAMPLE, DATA, SHARED_CORPORA

from slimpajama.core.cleaned import clean_text
from slimpajama.core.minhash import EMPTY, MinHashConfig, band_keys, signatures
from slimpajama.core.quality import planted_pairs, s_curve

SETTINGS = ((9, 13), (20, 6))


def real_views() -> list[str]:
    texts = [json.loads(line)["text"] for p in (CC_SAMPLE, ARXIV_SAMPLE, DATA / "web-pages.jsonl")
             for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts += (SHARED_CORPORA / "multilingual.txt").read_text(encoding="utf-8").split("\n\n")
    code = (SHARED_CORPORA / "code_python.txt").read_text(encoding="utf-8")
    return [clean_text(t) for t in texts + [code[i: i + 4000] for i in range(0, len(code), 4000)]]


def assert_s_curve(a: list[str], b: list[str], jac: np.ndarray, min_pairs: int) -> list[tuple]:
    """Per Jaccard bin and band setting: the pairs sharing a band key within three standard deviations (plus one
    pair) of the sum of each pair's own 1-(1-J^r)^b (core/quality.s_curve)."""
    seen = []
    for bands, rows in SETTINGS:
        cfg = MinHashConfig(bands=bands, rows=rows)
        hit = (band_keys(signatures(a, cfg), cfg) == band_keys(signatures(b, cfg), cfg)).any(axis=0)
        for row in s_curve(hit, jac, bands, rows, min_pairs):
            seen.append((bands, rows, row["jaccard"][0]))
            assert abs(row["clustered"] - row["expected"]) <= 3 * row["sd"] + 1, (bands, rows, row)
    return seen


@pytest.fixture(scope="module")
def views():
    return real_views()


def test_the_s_curve_holds_on_real_documents(views):
    bases = [v[i: i + 1000 + (i * 7919) % 5000] for v in views for i in range(0, len(v) - 1000, 5000)]
    a, b, jac = planted_pairs(bases, (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07))
    seen = assert_s_curve(a, b, jac, min_pairs=30)
    assert {lo for _, _, lo in seen} >= {0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95}  # the threshold's whole slope


def test_the_s_curve_holds_on_short_documents(views):
    """200-600 cleaned characters: 190-590 shingles for 128 bins, many empty before densification."""
    bases = [v[i: i + 200 + (i * 31) % 400] for v in views for i in range(0, len(v) - 600, 1600)]
    assert 200 <= min(map(len, bases)) and max(map(len, bases)) < 600 and len(bases) > 600
    a, b, jac = planted_pairs(bases, (0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.25), seed=1)
    seen = assert_s_curve(a, b, jac, min_pairs=100)
    assert len({lo for _, _, lo in seen}) >= 8


def test_the_s_curve_holds_on_pages_with_long_repeated_runs(views):
    """A menu and a footer repeated many times around the content (a repeated shingle counts once: a set)."""
    rng = random.Random(2)
    bases = []
    for v in views[:120]:
        menu = " ".join(rng.choice(v.split(" ")) for _ in range(8)) + " "
        bases.append(menu * rng.randint(5, 40) + v[:3000] + " " + menu * rng.randint(5, 40))
    a, b, jac = planted_pairs(bases, (0.005, 0.01, 0.02, 0.03, 0.05, 0.08), seed=3)
    assert_s_curve(a, b, jac, min_pairs=20)
    cfg = MinHashConfig()  # the signature is the set's: repeating a run whose shingles are all there changes nothing
    one = "home about blog contact " * 30
    assert np.array_equal(signatures([one], cfg), signatures(["home about blog contact " * 60], cfg))


def test_one_shingle_documents():
    cfg = MinHashConfig()
    sigs = signatures(["abcdefghijklm", "abcdefghijklm", "abcdefghijklx", "abcdefghijkl"], cfg)
    assert np.array_equal(sigs[0], sigs[1]) and len(set(sigs[0].tolist())) == 1  # every bin borrows the one value
    assert not (band_keys(sigs[:1], cfg) == band_keys(sigs[2:3], cfg)).any()
    assert (sigs[3] == EMPTY).all()  # fewer characters than the n-gram: no shingle, never a duplicate
