"""Triplet losses (batch-hard, semi-hard), distances and the hierarchical taxonomy loss, on hand-made batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.train.losses import (
    batch_hard_triplet_loss,
    hierarchical_classification_loss,
    pairwise_distances,
    semi_hard_triplet_loss,
    triplet_loss,
)


def test_pairwise_distances_match_cdist_and_have_finite_gradients() -> None:
    emb = F.normalize(torch.randn(12, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    emb = torch.cat([emb, emb[:2]])  # exact duplicates: zero off-diagonal distances too
    emb.requires_grad_(True)
    d = pairwise_distances(emb)
    torch.testing.assert_close(d, torch.cdist(emb, emb), atol=1e-3, rtol=1e-4)  # cdist's diagonal is ~5e-4
    d.sum().backward()
    assert torch.isfinite(emb.grad).all()


def points(*xy: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(xy, dtype=torch.float32)


def test_batch_hard_picks_the_farthest_positive_and_closest_negative() -> None:
    # Product 0 at x=0 and x=1, product 1 at x=1.5 and x=3 (1-D on a line, no normalisation).
    emb = points((0, 0), (1, 0), (1.5, 0), (3, 0))
    labels = torch.tensor([0, 0, 1, 1])
    loss, stats = batch_hard_triplet_loss(emb, labels, margin=0.2)
    # anchor 0: pos 1.0, neg 1.5 -> 0; anchor 1: pos 1.0, neg 0.5 -> 0.7; anchor 2: pos 1.5, neg 0.5 -> 1.2;
    # anchor 3: pos 1.5, neg 2.0 -> 0.
    assert loss.item() == pytest.approx((0.7 + 1.2) / 4)
    assert stats.active == pytest.approx(0.5)


def test_batch_hard_is_zero_for_separated_products_and_ignores_lonely_anchors() -> None:
    emb = points((0, 0), (0.1, 0), (5, 0), (5.1, 0), (9, 9))
    labels = torch.tensor([0, 0, 1, 1, 2])  # product 2 has no positive: not an anchor
    loss, stats = batch_hard_triplet_loss(emb, labels, margin=0.2)
    assert loss.item() == 0.0 and stats.active == 0.0
    loss, _ = batch_hard_triplet_loss(emb[:1], labels[:1])
    assert loss.item() == 0.0


def test_semi_hard_prefers_the_closest_negative_beyond_the_positive() -> None:
    emb = points((0, 0), (1, 0), (1.1, 0), (0.5, 0), (3, 0))
    labels = torch.tensor([0, 0, 1, 1, 2])
    loss, _ = semi_hard_triplet_loss(emb, labels, margin=0.2)
    # Pair (0,1), d_ap=1: negatives at 1.1, 0.5, 3 -> semi-hard 1.1 -> 0.1. Pair (1,0): d_ap=1, negatives at
    # 0.1, 0.5, 2 -> 2.0 -> 0. Pair (2,3): d_ap=0.6, negatives 1.1, 0.1, 1.9 -> 1.1 -> 0. Pair (3,2): d_ap=0.6,
    # negatives 0.5, 0.5, 2.5 -> 2.5 -> 0.
    assert loss.item() == pytest.approx(0.1 / 4, abs=1e-6)


def test_semi_hard_falls_back_to_the_farthest_negative() -> None:
    emb = points((0, 0), (2, 0), (0.5, 0), (0.7, 0))
    labels = torch.tensor([0, 0, 1, 1])
    loss, _ = semi_hard_triplet_loss(emb, labels, margin=0.2)
    # Pair (0,1): d_ap=2, negatives 0.5, 0.7 -> none farther -> farthest 0.7 -> 1.5; pair (1,0): d_ap=2, negatives
    # 1.5, 1.3 -> 1.5 -> 0.7; pair (2,3): 0.2 vs negatives 0.5, 1.5 -> 0.5 -> 0; pair (3,2): 0.2 vs 0.7, 1.3 -> 0.
    assert loss.item() == pytest.approx((1.5 + 0.7) / 4, abs=1e-6)


@pytest.mark.parametrize("mining", ["batch-hard", "semi-hard"])
def test_gradient_descent_on_the_loss_separates_products(mining: str) -> None:
    gen = torch.Generator().manual_seed(1)
    emb = torch.randn(16, 4, generator=gen, requires_grad=True)
    labels = torch.arange(4).repeat_interleave(4)
    opt = torch.optim.SGD([emb], lr=0.5)
    first = None
    for _ in range(300):
        loss, _ = triplet_loss(F.normalize(emb, dim=1), labels, mining, margin=0.3)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    d = pairwise_distances(F.normalize(emb.detach(), dim=1)).fill_diagonal_(float("inf"))
    assert (labels[d.argmin(dim=1)] == labels).all()  # every point's nearest neighbour is its own product


def test_unknown_mining_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mining"):
        triplet_loss(torch.zeros(2, 2), torch.tensor([0, 1]), "hardest-ever")


def test_hierarchical_loss_weights_levels_and_ignores_unknown_labels() -> None:
    logits = {"a": torch.tensor([[2.0, 0.0], [0.0, 2.0]]), "b": torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])}
    targets = torch.tensor([[0, 2], [1, -1]])
    loss = hierarchical_classification_loss(logits, targets, ("a", "b"), (1.0, 2.0))
    expected = F.cross_entropy(logits["a"], targets[:, 0]) + 2.0 * F.cross_entropy(logits["b"][:1], targets[:1, 1])
    assert loss.item() == pytest.approx(expected.item())
    none_known = torch.full((2, 2), -1)
    assert hierarchical_classification_loss(logits, none_known, ("a", "b")).item() == 0.0
