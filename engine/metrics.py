"""Retrieval metrics over ranked result lists: pure numpy, no I/O.

Conventions: a query's ranked list is a row of gallery ids, best first. Negative ids (FAISS pads short result
lists with -1) never count as relevant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10, 20)


def relevance_matrix(ranked_ids: np.ndarray, true_ids: np.ndarray | Sequence[Iterable[int]]) -> np.ndarray:
    """Mark which retrieved ids are relevant.

    Args:
        ranked_ids: (Q, K) integer array, row q = gallery ids retrieved for query q, best first.
        true_ids: Either a (Q,) integer array (exactly one relevant id per query) or a length-Q sequence of
            sets/iterables of relevant ids.

    Returns:
        (Q, K) bool array, True where ``ranked_ids[q, i]`` is relevant to query q (and ``>= 0``).
    """
    ranked = np.asarray(ranked_ids)
    if ranked.ndim != 2:
        raise ValueError(f"ranked_ids must be (Q, K), got shape {ranked.shape}")
    if len(true_ids) != ranked.shape[0]:
        raise ValueError(f"{len(true_ids)} true-id entries for {ranked.shape[0]} queries")
    if isinstance(true_ids, np.ndarray) and true_ids.ndim == 1:
        hits = ranked == true_ids[:, None]
    else:
        hits = np.zeros(ranked.shape, dtype=bool)
        for q, relevant in enumerate(true_ids):
            wanted = np.fromiter(relevant, dtype=ranked.dtype) if not isinstance(relevant, np.ndarray) else relevant
            hits[q] = np.isin(ranked[q], wanted)
    return hits & (ranked >= 0)


def recall_at_k(ranked_ids: np.ndarray, true_ids: np.ndarray | Sequence[Iterable[int]],
                ks: Iterable[int] = DEFAULT_KS) -> dict[int, float]:
    """Recall@k in the retrieval ("hit rate") sense used by street-to-shop benchmarks.

    For each query, hit@k = 1 if at least one relevant id is among its first k results, else 0.
    Recall@k = mean of hit@k over all Q queries (queries with no relevant id count as misses).

    Args:
        ranked_ids: (Q, K) integer array of retrieved gallery ids, best first (-1 = no result).
        true_ids: (Q,) array of the one relevant id per query, or a length-Q sequence of sets of relevant ids.
        ks: Cut-offs; each must satisfy 1 <= k <= K.

    Returns:
        {k: recall@k} as Python floats in [0, 1].

    Raises:
        ValueError: Q == 0, a k outside [1, K], or mismatched lengths.
    """
    hits = relevance_matrix(ranked_ids, true_ids)
    n_queries, depth = hits.shape
    if n_queries == 0:
        raise ValueError("recall_at_k needs at least one query")
    # first_hit[q] = 0-based rank of the first relevant result, or depth when none.
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), depth)
    out = {}
    for k in ks:
        if not 1 <= k <= depth:
            raise ValueError(f"k={k} outside 1..{depth} (the number of ranked results)")
        out[int(k)] = float(np.mean(first_hit < k))
    return out


def average_precision(ranked_relevance: np.ndarray, n_relevant: int) -> float:
    """Average precision of one ranked list, truncated at its length K (AP@K).

    AP@K = (1 / n_relevant) * sum over ranks i = 1..K with rel_i true of precision@i, where
    precision@i = (number of relevant results in the first i) / i and n_relevant is the number of relevant items
    in the whole gallery. Relevant items missing from the first K therefore lower AP (the TREC definition), and a
    list with every relevant item at the top scores 1.0.

    Args:
        ranked_relevance: (K,) bool array, True where the i-th result is relevant.
        n_relevant: Relevant items in the gallery; must be >= the number of True entries and > 0.

    Returns:
        AP@K in [0, 1].
    """
    rel = np.asarray(ranked_relevance, dtype=bool)
    if rel.ndim != 1:
        raise ValueError(f"ranked_relevance must be 1-D, got shape {rel.shape}")
    found = int(rel.sum())
    if n_relevant <= 0 or found > n_relevant:
        raise ValueError(f"n_relevant={n_relevant} must be positive and >= the {found} relevant results listed")
    precision_at_i = np.cumsum(rel) / np.arange(1, rel.size + 1)
    return float(precision_at_i[rel].sum() / n_relevant)


def mean_average_precision(ranked_relevance: np.ndarray, n_relevant: np.ndarray | Sequence[int]) -> float:
    """mAP@K: the mean of ``average_precision`` over queries that have at least one relevant item.

    Queries with n_relevant == 0 have no defined AP and are left out of the mean.

    Args:
        ranked_relevance: (Q, K) bool array (see ``relevance_matrix``).
        n_relevant: (Q,) relevant items per query in the gallery.

    Returns:
        mAP@K in [0, 1].

    Raises:
        ValueError: When shapes disagree, a row lists more relevant results than its n_relevant, or no query
            has any relevant item.
    """
    rel = np.asarray(ranked_relevance, dtype=bool)
    counts = np.asarray(n_relevant, dtype=np.int64)
    if rel.ndim != 2 or counts.shape != (rel.shape[0],):
        raise ValueError(f"shapes disagree: ranked_relevance {rel.shape}, n_relevant {counts.shape}")
    found = rel.sum(axis=1)
    if np.any(found > counts):
        raise ValueError("a query lists more relevant results than its n_relevant")
    scored = counts > 0
    if not scored.any():
        raise ValueError("no query has a relevant item; mAP is undefined")
    precision_at_i = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)
    ap = (precision_at_i * rel).sum(axis=1)[scored] / counts[scored]
    return float(ap.mean())


def synthetic_recall(emb: np.ndarray, ks: Sequence[int] = (1, 5, 10, 20)) -> dict[int, float]:
    """Street-to-shop recall on held-out products: view 0 of every product is the gallery, every other view a query.

    Args:
        emb: (N, V, D) L2-normalised embeddings, V >= 2.

    Returns:
        {k: recall@k} (k capped at N).
    """
    n, v, _ = emb.shape
    gallery = emb[:, 0]
    queries = emb[:, 1:].reshape(-1, emb.shape[2])
    truth = np.repeat(np.arange(n), v - 1)
    depth = min(max(ks), n)
    ranked = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")[:, :depth]
    return recall_at_k(ranked, truth, [k for k in ks if k <= depth])


def category_recall_at_1(emb: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out recall@1 of a label: share of items whose nearest other item has the same label (-1 = skip)."""
    keep = labels >= 0
    e, lab = emb[keep], labels[keep]
    if len(e) < 2:
        return float("nan")
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return float((lab[sim.argmax(axis=1)] == lab).mean())
