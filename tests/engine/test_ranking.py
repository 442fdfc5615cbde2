"""Per-query ranking statistics agree with engine.metrics, and hand-checked AP values."""

from __future__ import annotations

import numpy as np
import pytest

from engine.metrics import mean_average_precision, recall_at_k, relevance_matrix
from engine.query_stats import QueryStats, query_stats, recall_curve, summarize


def test_hand_checked_average_precision_and_first_hit() -> None:
    ranked = np.array([[5, 1, 7, 2], [3, 4, -1, -1]])
    relevant = [{1, 2, 9}, {8}]
    stats = query_stats(ranked, relevant, [3, 1])
    # Query 0: hits at ranks 2 and 4 -> AP = (1/2 + 2/4) / 3; query 1: nothing ranked -> AP 0, first hit = depth.
    assert stats.ap[0] == pytest.approx((0.5 + 0.5) / 3)
    assert stats.first_hit.tolist() == [1, 4]
    out = summarize(stats, ks=(1, 2, 4))
    assert out == {"recall@1": 0.0, "recall@2": 0.5, "recall@4": 0.5, "mAP": pytest.approx(1 / 6), "n_queries": 2}


def test_agrees_with_engine_metrics_on_random_rankings() -> None:
    rng = np.random.default_rng(0)
    n_q, depth, gallery = 200, 30, 60
    ranked = np.stack([rng.permutation(gallery)[:depth] for _ in range(n_q)])
    relevant = [set(rng.choice(gallery, rng.integers(1, 6), replace=False).tolist()) for _ in range(n_q)]
    n_rel = np.array([len(r) for r in relevant])
    chunks = [query_stats(ranked[s:s + 64], relevant[s:s + 64], n_rel[s:s + 64]) for s in range(0, n_q, 64)]
    stats = QueryStats.concat(chunks)
    ours = summarize(stats, ks=(1, 5, 10, 20))
    ref = recall_at_k(ranked, relevant, (1, 5, 10, 20))
    for k, v in ref.items():
        assert ours[f"recall@{k}"] == pytest.approx(v)
    assert ours["mAP"] == pytest.approx(mean_average_precision(relevance_matrix(ranked, relevant), n_rel))
    curve = recall_curve(stats, 20)
    assert len(curve) == 20 and curve == sorted(curve) and curve[0] == pytest.approx(ref[1])


def test_mask_selects_queries_and_too_many_relevant_is_an_error() -> None:
    stats = query_stats(np.array([[1, 2], [2, 1]]), np.array([1, 1]), [1, 1])
    assert summarize(stats, ks=(1,), mask=np.array([True, False]))["recall@1"] == 1.0
    assert summarize(stats, ks=(1,), mask=np.array([False, True]))["recall@1"] == 0.0
    with pytest.raises(ValueError):
        query_stats(np.array([[1, 2]]), [{1, 2}], [1])
    with pytest.raises(ValueError):
        summarize(stats, ks=(3,))
