"""Outfit evaluation math (Polyvore Outfits protocol) and variety-aware selection. Pure numpy.

* Compatibility AUC: each outfit (positive, or a negative made of random items of the same slots) gets the mean
  compatibility of its item pairs; AUC is the probability that a random positive outscores a random negative
  (ties count one half), i.e. the normalised Mann-Whitney U statistic.
* Fill-in-the-blank: for an outfit with one item hidden, each candidate (the hidden item and wrong items of the
  same slot) gets its mean compatibility with the outfit's other items; the question is answered correctly when
  the hidden item scores highest. Ties are split: a correct answer tied with t others counts 1 / (t + 1), the
  expected accuracy of breaking ties at random.
* Maximal marginal relevance (Carbonell & Goldstein 1998) picks items that are relevant and unlike each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# (rows_a (P,), rows_b (P,)) -> (P,) compatibility scores, higher = more compatible.
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _pairs(outfit: Sequence[int]) -> list[tuple[int, int]]:
    return [(outfit[i], outfit[j]) for i in range(len(outfit)) for j in range(i + 1, len(outfit))]


def outfit_scores(outfits: Sequence[Sequence[int]], pair_scorer: PairScorer) -> np.ndarray:
    """Mean pairwise compatibility of each outfit (item rows), in one vectorised scorer call.

    Outfits of fewer than two items score 0.
    """
    a: list[int] = []
    b: list[int] = []
    owner: list[int] = []
    for k, outfit in enumerate(outfits):
        for i, j in _pairs(outfit):
            a.append(i)
            b.append(j)
            owner.append(k)
    out = np.zeros(len(outfits), np.float64)
    if not a:
        return out
    scores = np.asarray(pair_scorer(np.asarray(a, np.int64), np.asarray(b, np.int64)), np.float64)
    owners = np.asarray(owner, np.int64)
    counts = np.bincount(owners, minlength=len(outfits))
    np.add.at(out, owners, scores)
    return np.divide(out, np.maximum(counts, 1))


def fitb_scores(questions: Sequence[Sequence[int]], candidates: Sequence[Sequence[int]],
                pair_scorer: PairScorer) -> np.ndarray:
    """(Q, C) mean compatibility of each candidate with its question's items (every question has C candidates)."""
    if len(questions) != len(candidates):
        raise ValueError(f"{len(questions)} questions but {len(candidates)} candidate lists")
    if not questions:
        return np.zeros((0, 0))
    n_cand = len(candidates[0])
    if any(len(c) != n_cand for c in candidates):
        raise ValueError("every fill-in-the-blank question needs the same number of candidates")
    a: list[int] = []
    b: list[int] = []
    owner: list[int] = []
    for q, (items, cands) in enumerate(zip(questions, candidates, strict=True)):
        for c, cand in enumerate(cands):
            for item in items:
                a.append(cand)
                b.append(item)
                owner.append(q * n_cand + c)
    out = np.zeros(len(questions) * n_cand, np.float64)
    if a:
        scores = np.asarray(pair_scorer(np.asarray(a, np.int64), np.asarray(b, np.int64)), np.float64)
        owners = np.asarray(owner, np.int64)
        np.add.at(out, owners, scores)
        out /= np.maximum(np.bincount(owners, minlength=len(out)), 1)
    return out.reshape(len(questions), n_cand)


def compatibility_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of outfit scores against 0/1 labels (ties count one half).

    Raises:
        ValueError: When there are no positives or no negatives.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs positives and negatives (got {n_pos} and {n_neg})")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties (1-based).
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def fitb_accuracy(scores: np.ndarray, correct: np.ndarray) -> float:
    """Fill-in-the-blank accuracy: the share of questions whose correct candidate scores highest (ties split)."""
    scores = np.asarray(scores, np.float64)
    correct = np.asarray(correct, np.int64)
    if len(scores) == 0:
        raise ValueError("no fill-in-the-blank questions")
    best = scores.max(axis=1, keepdims=True)
    at_best = np.isclose(scores, best, rtol=0.0, atol=1e-12)
    hit = at_best[np.arange(len(scores)), correct]
    return float(np.mean(hit / at_best.sum(axis=1)))


def mmr_select(relevance: np.ndarray, similarity: np.ndarray, k: int, lam: float) -> list[int]:
    """Maximal marginal relevance: greedily pick k of M candidates.

    Each step takes the candidate maximising ``lam * relevance - (1 - lam) * max similarity to those picked``.
    Both should be in comparable units (here both are cosines), as in the original formulation.

    Args:
        relevance: (M,) higher = better.
        similarity: (M, M) pairwise similarity (e.g. cosine of image vectors).
        k: How many to pick.
        lam: 1 = relevance only; 0 = variety only.

    Returns:
        Picked candidate positions, in pick order (the first is always the most relevant).
    """
    rel = np.asarray(relevance, np.float64)
    m = len(rel)
    if m == 0 or k <= 0:
        return []
    picked: list[int] = []
    max_sim = np.full(m, -np.inf)
    available = np.ones(m, bool)
    for _ in range(min(k, m)):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        gain = np.where(available, lam * rel - (1.0 - lam) * penalty, -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, similarity[best])
    return picked
