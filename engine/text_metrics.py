"""Text-to-image retrieval metrics of the public fashion protocol (Marqo's KAGL benchmark): pure numpy, no I/O.

Title -> image: relevant = every gallery item with the identical title; recall@k = share of the relevant items in
the top k (so a title shared by 3 items caps recall@1 at 1/3), MRR@k = 1 / rank of the first relevant item.
Label -> product: a bare label (an article type, a colour) as the query; precision@k = share of the top k that
carry it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k_exact(queries: np.ndarray, gallery: np.ndarray, k: int, chunk: int = 1024,
                bonus_weights: np.ndarray | None = None, bonus_features: np.ndarray | None = None) -> np.ndarray:
    """(Q, k) row indices of the gallery with the largest inner product per query, best first (exact).

    With ``bonus_weights`` (Q, F) and ``bonus_features`` (len(gallery), F), each score also gains
    ``bonus_weights[q] . bonus_features[item]`` (the colour bonus of word queries).
    """
    k = min(k, len(gallery))
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ gallery.T
        if bonus_weights is not None and bonus_features is not None:
            scores += bonus_weights[start:start + chunk] @ bonus_features.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
        out[start:start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def title_retrieval(ranked: np.ndarray, query_titles: Sequence[str], gallery_titles: Sequence[str],
                    ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """recall@k (share of the relevant items found) and MRR@max(ks), averaged over the queries.

    Args:
        ranked: (Q, K) gallery row indices, best first.
        query_titles: The query title per row of ``ranked``.
        gallery_titles: Title per gallery row.
    """
    gallery = np.asarray(gallery_titles, dtype=object)
    counts: dict[str, int] = {}
    for t in gallery_titles:
        counts[t] = counts.get(t, 0) + 1
    hits = gallery[ranked] == np.asarray(query_titles, dtype=object)[:, None]
    n_rel = np.array([max(1, counts.get(t, 0)) for t in query_titles], np.float64)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean(hits[:, :k].sum(axis=1) / n_rel))
    depth = max(ks)
    first = np.where(hits[:, :depth].any(axis=1), hits[:, :depth].argmax(axis=1) + 1, 0)
    out[f"mrr@{depth}"] = float(np.mean(np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)))
    return out


def label_precision(ranked: np.ndarray, query_labels: Sequence[str], gallery_labels: Sequence[str | None],
                    ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """precision@k of label queries: share of the top k carrying the queried label, averaged over labels."""
    gallery = np.asarray([g if g is not None else "" for g in gallery_labels], dtype=object)
    hits = gallery[ranked] == np.asarray(query_labels, dtype=object)[:, None]
    return {f"precision@{k}": float(np.mean(hits[:, :k].mean(axis=1))) for k in ks}
