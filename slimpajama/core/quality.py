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
