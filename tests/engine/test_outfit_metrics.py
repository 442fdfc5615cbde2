"""Outfit evaluation math (AUC, fill-in-the-blank) and MMR, on small arrays with exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from engine.outfits.metrics import compatibility_auc, fitb_accuracy, fitb_scores, mmr_select, outfit_scores


def test_auc_exact_values():
    assert compatibility_auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 1.0
    assert compatibility_auc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([1, 1, 0, 0])) == 0.0
    # one of four (pos, neg) pairs misordered
    assert compatibility_auc(np.array([0.9, 0.3, 0.4, 0.1]), np.array([1, 1, 0, 0])) == 0.75
    # ties count one half
    assert compatibility_auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5


def test_auc_matches_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)
    labels = rng.integers(0, 2, 200)
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert compatibility_auc(scores, labels) == pytest.approx(brute)


def test_auc_needs_both_classes():
    with pytest.raises(ValueError):
        compatibility_auc(np.array([1.0, 2.0]), np.array([1, 1]))


def test_fitb_accuracy_splits_ties():
    scores = np.array([[0.9, 0.1, 0.2, 0.3], [0.1, 0.9, 0.2, 0.3], [0.5, 0.5, 0.1, 0.1]])
    assert fitb_accuracy(scores, np.array([0, 0, 0])) == pytest.approx((1 + 0 + 0.5) / 3)


def test_outfit_and_fitb_scores_average_pairs():
    # pair score = -|a - b| on item values
    values = np.array([0.0, 1.0, 3.0, 0.5])

    def scorer(a, b):
        return -np.abs(values[a] - values[b])

    assert outfit_scores([[0, 1, 2], [0, 3], [1]], scorer).tolist() == pytest.approx([-2.0, -0.5, 0.0])
    got = fitb_scores([[0, 1]], [[3, 2]], scorer)
    assert got.shape == (1, 2) and got[0].tolist() == pytest.approx([-0.5, -2.5])
    with pytest.raises(ValueError):
        fitb_scores([[0], [1]], [[1, 2], [3]], scorer)


def test_mmr_picks_varied_items():
    # candidates 0-2 are near-duplicates with top relevance; 3 is different and a little less relevant
    vecs = np.array([[1.0, 0.0], [0.999, 0.045], [0.998, 0.063], [0.0, 1.0]])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rel = np.array([1.0, 0.99, 0.98, 0.9])
    assert mmr_select(rel, vecs @ vecs.T, 2, 1.0) == [0, 1]
    assert mmr_select(rel, vecs @ vecs.T, 2, 0.7) == [0, 3]
    assert mmr_select(rel, vecs @ vecs.T, 10, 0.7)[:2] == [0, 3]
    assert mmr_select(np.zeros(0), np.zeros((0, 0)), 3, 0.5) == []
