"""recall_at_k and (mean) average precision on small arrays with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from engine.metrics import average_precision, mean_average_precision, recall_at_k, relevance_matrix

RANKED = np.array([
    [7, 3, 9, 1],   # true 3: first hit at rank 2
    [4, 5, 6, 8],   # true 2: never
    [2, 0, 1, 5],   # true 2: rank 1
    [-1, -1, -1, -1],  # true -1 must not match FAISS padding
])


def test_recall_single_true_id() -> None:
    out = recall_at_k(RANKED, np.array([3, 2, 2, -1]), ks=(1, 2, 4))
    assert out == {1: 0.25, 2: 0.5, 4: 0.5}


def test_recall_sets_of_true_ids() -> None:
    out = recall_at_k(RANKED[:3], [{9, 1}, {8}, set()], ks=(1, 3, 4))
    assert out == pytest.approx({1: 0.0, 3: 1 / 3, 4: 2 / 3})


def test_recall_rejects_bad_k_and_empty() -> None:
    with pytest.raises(ValueError):
        recall_at_k(RANKED, np.array([3, 2, 2, 1]), ks=(5,))
    with pytest.raises(ValueError):
        recall_at_k(np.empty((0, 4), dtype=np.int64), np.empty(0, dtype=np.int64), ks=(1,))


def test_average_precision_definition() -> None:
    # relevant at ranks 1 and 3 out of 3 relevant in the gallery: (1/1 + 2/3) / 3
    assert average_precision(np.array([True, False, True, False]), 3) == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision(np.array([True, True, False]), 2) == 1.0
    assert average_precision(np.array([False, False]), 1) == 0.0
    with pytest.raises(ValueError):
        average_precision(np.array([True, True]), 1)


def test_mean_average_precision_skips_queries_without_relevant_items() -> None:
    rel = np.array([[True, False, True], [False, True, False], [False, False, False]])
    expected = np.mean([(1 + 2 / 3) / 2, 0.5 / 4])
    assert mean_average_precision(rel, [2, 4, 0]) == pytest.approx(expected)
    with pytest.raises(ValueError):
        mean_average_precision(rel, [0, 0, 0])


def test_relevance_matrix_matches_recall() -> None:
    rng = np.random.default_rng(0)
    ranked = rng.integers(0, 20, (50, 10))
    truth = rng.integers(0, 20, 50)
    rel = relevance_matrix(ranked, truth)
    assert rel.shape == (50, 10)
    assert recall_at_k(ranked, truth, ks=(10,))[10] == pytest.approx(rel.any(axis=1).mean())
    same = relevance_matrix(ranked, [{int(t)} for t in truth])
    np.testing.assert_array_equal(rel, same)
