"""Combine the dense and BM25 rankings into one.

Reciprocal rank fusion only looks at ranks, so it needs no calibration between cosine
similarities and BM25 scores; the weighted sum min-max normalises each retriever's scores over
the candidates first, and so keeps how far apart they are. bench/kb_eval.py measures which
ranks better: on the OpenMMLab corpus the weighted sum did (the default).
"""

from __future__ import annotations


def reciprocal_rank(rankings: list[list[str]], k: int = 60) -> dict[str, float]:
    """Sum of 1 / (k + rank) over the rankings a candidate appears in (rank from 1)."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, 1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return fused


def _min_max(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high <= low:
        return {key: 1.0 if high > 0 else 0.0 for key in scores}
    return {key: (value - low) / (high - low) for key, value in scores.items()}


def weighted_sum(
    dense: dict[str, float], bm25: dict[str, float], dense_weight: float
) -> dict[str, float]:
    """``w * dense + (1 - w) * bm25``, each min-max normalised over the same candidates."""
    candidates = set(dense) | set(bm25)
    d = _min_max({c: dense.get(c, 0.0) for c in candidates})
    b = _min_max({c: bm25.get(c, 0.0) for c in candidates})
    return {c: dense_weight * d[c] + (1 - dense_weight) * b[c] for c in candidates}
