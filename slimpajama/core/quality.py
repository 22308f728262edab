"""Dedup decisions scored against the sample corpus's planted ground truth."""

from __future__ import annotations

from collections import defaultdict


def dedup_quality(truth: dict, cluster_of: dict[str, int], removed: set[str], threshold: float = 0.8) -> dict:
    """Per planted level: pairs, pairs merged into one cluster, recall. Precision: of the documents removed, the
    fraction that are planted copies of a document at true Jaccard >= threshold (every other removal is a false
    positive: the generator plants no other duplicates)."""
    levels: dict[float, list[int]] = defaultdict(lambda: [0, 0])
    justified = set()
    for p in truth["pairs"]:
        merged = p["a"] in cluster_of and cluster_of.get(p["a"]) == cluster_of.get(p["b"])
        levels[p["level"]][0] += 1
        levels[p["level"]][1] += merged
        if p["jaccard"] >= threshold:
            justified.update((p["a"], p["b"]))
    per_level = {str(lvl): {"pairs": n, "merged": m, "recall": round(m / n, 4)}
                 for lvl, (n, m) in sorted(levels.items(), reverse=True)}
    precision = len(removed & justified) / len(removed) if removed else 1.0
    return {"per_level": per_level, "removed": len(removed), "precision": round(precision, 4)}


# ------------------------------------------------------------------------------------------------ the LSH S-curve


def shingle_set(view: str, n: int = 13) -> set[str]:
    return {view[i: i + n] for i in range(len(view) - n + 1)}


def edited_copy(view: str, rng, rate: float) -> str:
    """A copy of a cleaned view with words replaced, deleted or inserted at `rate` (words of the same view)."""
    words = view.split(" ")
    vocab = sorted({w for w in words if w})
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 2:
            out.append(rng.choice(vocab))
        elif r < rate * 0.75:
            continue
        elif r < rate:
            out += [w, rng.choice(vocab)]
        else:
            out.append(w)
    return " ".join(out)


def planted_pairs(views: list[str], rates, seed: int = 0, ngram: int = 13):
    """(originals, edited copies, the true Jaccard of each pair's n-gram sets as a numpy array): a copy per view
    and edit rate."""
    import random

    import numpy as np

    rng = random.Random(seed)
    a, b, jac = [], [], []
    for view in views:
        for rate in rates:
            copy = edited_copy(view, rng, rate)
            x, y = shingle_set(view, ngram), shingle_set(copy, ngram)
            a.append(view)
            b.append(copy)
            jac.append(len(x & y) / len(x | y))
    return a, b, np.array(jac)


def s_curve(hit, jac, bands: int, rows: int, min_pairs: int = 1, width: float = 0.05) -> list[dict]:
    """Per Jaccard bin from 0.5: the pairs, those clustered (`hit`: they share a band key), and the number LSH theory
    expects, the sum of each pair's own 1-(1-J^r)^b, with the standard deviation of that sum of Bernoulli trials
    and the observed count's distance from it in deviations (z). Bins of fewer than `min_pairs` are left out."""
    import numpy as np

    p = 1 - (1 - jac ** rows) ** bands
    out = []
    edges = np.round(np.arange(0.5, 1.0 + width / 2, width), 4)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (jac >= lo) & ((jac < hi) if hi < 1 else (jac <= 1))
        n = int(in_bin.sum())
        if n < min_pairs:
            continue
        expected, sd = float(p[in_bin].sum()), float(np.sqrt((p[in_bin] * (1 - p[in_bin])).sum()))
        got = int(hit[in_bin].sum())
        out.append({"jaccard": [float(lo), float(hi)], "pairs": n, "clustered": got,
                    "share": round(got / n, 4), "theory": round(expected / n, 4), "sd": round(sd, 2),
                    "z": round((got - expected) / sd, 2) if sd else 0.0, "expected": round(expected, 2)})
    return out
