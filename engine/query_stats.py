"""Per-query retrieval statistics, so that recall@k and mAP can be summarised overall and per label.

The definitions are those of ``engine.metrics`` (recall@k = share of queries with a relevant result in the first
k; AP = TREC average precision over the ranked list with ``n_relevant`` in the denominator), computed per query
and in chunks, so evaluation never holds a (queries x gallery) matrix at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.metrics import DEFAULT_KS, relevance_matrix


@dataclass
class QueryStats:
    """Per-query outcome of a ranked retrieval.

    Attributes:
        first_hit: (Q,) 0-based rank of the first relevant result, or ``depth`` when none is ranked.
        ap: (Q,) average precision over the ranked list (0 when nothing relevant is ranked).
        n_relevant: (Q,) relevant gallery items of each query.
        depth: Length of the ranked lists.
    """

    first_hit: np.ndarray
    ap: np.ndarray
    n_relevant: np.ndarray
    depth: int

    @classmethod
    def concat(cls, parts: Sequence[QueryStats]) -> QueryStats:
        """Join chunks (all of one depth)."""
        if not parts:
            return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64), 0)
        return cls(np.concatenate([p.first_hit for p in parts]), np.concatenate([p.ap for p in parts]),
                   np.concatenate([p.n_relevant for p in parts]), parts[0].depth)


def query_stats(ranked_ids: np.ndarray, true_ids: np.ndarray | Sequence[Iterable[int]],
                n_relevant: np.ndarray | Sequence[int]) -> QueryStats:
    """Per-query first-hit rank and average precision.

    Args:
        ranked_ids: (Q, D) retrieved gallery ids, best first (-1 = no result).
        true_ids: (Q,) the one relevant id per query, or a length-Q sequence of sets of relevant ids.
        n_relevant: (Q,) number of relevant items in the gallery per query (>= the relevant ids ranked).

    Returns:
        QueryStats over depth D.
    """
    hits = relevance_matrix(ranked_ids, true_ids)
    counts = np.asarray(n_relevant, dtype=np.int64)
    if counts.shape != (hits.shape[0],):
        raise ValueError(f"n_relevant has shape {counts.shape}, expected ({hits.shape[0]},)")
    found = hits.sum(axis=1)
    if np.any(found > counts):
        raise ValueError("a query lists more relevant results than its n_relevant")
    depth = hits.shape[1]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), depth)
    precision = np.cumsum(hits, axis=1) / np.arange(1, depth + 1)
    ap = np.where(counts > 0, (precision * hits).sum(axis=1) / np.maximum(counts, 1), 0.0)
    return QueryStats(first.astype(np.int64), ap.astype(np.float64), counts, depth)


def summarize(stats: QueryStats, ks: Iterable[int] = DEFAULT_KS, mask: np.ndarray | None = None) -> dict[str, float]:
    """``recall@k`` for each k, ``mAP`` and ``n_queries`` over the queries selected by ``mask`` (default: all).

    Queries with n_relevant == 0 count as misses in recall@k and are left out of mAP (as in ``engine.metrics``).
    """
    sel = np.ones(len(stats.first_hit), bool) if mask is None else np.asarray(mask, bool)
    first, ap, counts = stats.first_hit[sel], stats.ap[sel], stats.n_relevant[sel]
    out: dict[str, float] = {}
    for k in ks:
        if not 1 <= k <= max(stats.depth, 1):
            raise ValueError(f"k={k} outside 1..{stats.depth} (the ranked depth)")
        out[f"recall@{k}"] = float(np.mean(first < k)) if len(first) else float("nan")
    scored = counts > 0
    out["mAP"] = float(ap[scored].mean()) if scored.any() else float("nan")
    out["n_queries"] = int(len(first))
    return out


def recall_curve(stats: QueryStats, max_k: int, mask: np.ndarray | None = None) -> list[float]:
    """recall@1 .. recall@max_k (capped at the depth), for plots."""
    sel = np.ones(len(stats.first_hit), bool) if mask is None else np.asarray(mask, bool)
    first = stats.first_hit[sel]
    if not len(first):
        return []
    return [float(np.mean(first < k)) for k in range(1, min(max_k, stats.depth) + 1)]
