"""Metric-learning losses: triplet loss with batch-hard or semi-hard mining, and the hierarchical taxonomy loss.

Pure torch on small tensors: a batch of embeddings and its integer labels (the product each view belongs to).
Mining happens inside the batch that a P x K sampler builds (P products, K views each).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MINING_STRATEGIES = ("batch-hard", "semi-hard")


@dataclass
class TripletStats:
    """What one triplet-loss call saw, for progress lines.

    Attributes:
        loss: The mean loss (a float copy).
        active: Share of triplets with a positive loss.
        pos_dist: Mean anchor-positive distance of the used triplets.
        neg_dist: Mean anchor-negative distance of the used triplets.
    """

    loss: float
    active: float
    pos_dist: float
    neg_dist: float


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between all rows of ``emb`` (N, D) -> (N, N), with a zero, differentiable diagonal.

    For L2-normalised rows this is sqrt(2 - 2 cos), so ranking by it equals ranking by cosine similarity.
    """
    sq = (emb * emb).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * emb @ emb.T).clamp_min(0.0)
    # sqrt has an infinite gradient at 0: take it only where the distance is positive.
    zero = d2 <= 1e-12
    return torch.where(zero, torch.zeros_like(d2), torch.sqrt(d2.masked_fill(zero, 1.0)))


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def batch_hard_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2,
                            soft: bool = False) -> tuple[torch.Tensor, TripletStats]:
    """Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss").

    For each anchor a with at least one positive and one negative in the batch:
    loss_a = max(0, margin + max_p d(a, p) - min_n d(a, n)) (or softplus of the same difference when ``soft``).
    The result is the mean over those anchors.

    Args:
        emb: (N, D) embeddings (normally L2-normalised).
        labels: (N,) integer identity of each row.
        margin: Margin in distance units (ignored when ``soft``).
        soft: Use the soft-margin variant log(1 + exp(d_ap - d_an)).

    Returns:
        (loss tensor, stats). The loss is 0 (with a graph) when no anchor has both a positive and a negative.
    """
    dist = pairwise_distances(emb)
    pos_mask, neg_mask = _masks(labels)
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    if not valid.any():
        zero = emb.sum() * 0.0
        return zero, TripletStats(0.0, 0.0, 0.0, 0.0)
    hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).max(dim=1).values
    hardest_neg = dist.masked_fill(~neg_mask, float("inf")).min(dim=1).values
    diff = (hardest_pos - hardest_neg)[valid]
    per_anchor = F.softplus(diff) if soft else F.relu(diff + margin)
    loss = per_anchor.mean()
    stats = TripletStats(float(loss.detach()), float((per_anchor > 0).float().mean()),
                         float(hardest_pos[valid].mean().detach()), float(hardest_neg[valid].mean().detach()))
    return loss, stats


def semi_hard_triplet_loss(emb: torch.Tensor, labels: torch.Tensor,
                           margin: float = 0.2) -> tuple[torch.Tensor, TripletStats]:
    """Semi-hard triplet loss (Schroff et al. 2015, FaceNet), over every anchor-positive pair in the batch.

    For each pair (a, p), the negative is the closest one *farther* than p (d(a, n) > d(a, p)), i.e. the hardest
    negative that does not yet violate the ordering; when no negative is farther than p, the farthest negative is
    used instead (TensorFlow Addons' convention). loss = mean over pairs of max(0, margin + d(a, p) - d(a, n)).

    Returns:
        (loss tensor, stats), as ``batch_hard_triplet_loss``.
    """
    dist = pairwise_distances(emb)
    pos_mask, neg_mask = _masks(labels)
    a_idx, p_idx = pos_mask.nonzero(as_tuple=True)
    has_neg = neg_mask[a_idx].any(dim=1)
    a_idx, p_idx = a_idx[has_neg], p_idx[has_neg]
    if len(a_idx) == 0:
        zero = emb.sum() * 0.0
        return zero, TripletStats(0.0, 0.0, 0.0, 0.0)
    d_ap = dist[a_idx, p_idx]  # (T,)
    d_an = dist[a_idx]  # (T, N)
    negs = neg_mask[a_idx]
    farther = negs & (d_an > d_ap[:, None])
    semi = d_an.masked_fill(~farther, float("inf")).min(dim=1).values
    fallback = d_an.masked_fill(~negs, float("-inf")).max(dim=1).values
    chosen = torch.where(farther.any(dim=1), semi, fallback)
    per_pair = F.relu(d_ap - chosen + margin)
    loss = per_pair.mean()
    stats = TripletStats(float(loss.detach()), float((per_pair > 0).float().mean()), float(d_ap.mean().detach()),
                         float(chosen.mean().detach()))
    return loss, stats


def triplet_loss(emb: torch.Tensor, labels: torch.Tensor, mining: str = "batch-hard",
                 margin: float = 0.2) -> tuple[torch.Tensor, TripletStats]:
    """Dispatch on ``mining``: "batch-hard" or "semi-hard".

    Raises:
        ValueError: For any other strategy name.
    """
    if mining == "batch-hard":
        return batch_hard_triplet_loss(emb, labels, margin)
    if mining == "semi-hard":
        return semi_hard_triplet_loss(emb, labels, margin)
    raise ValueError(f"unknown mining strategy {mining!r}; use one of {', '.join(MINING_STRATEGIES)}")


def hierarchical_classification_loss(logits: Mapping[str, torch.Tensor], targets: torch.Tensor,
                                     levels: Sequence[str], weights: Sequence[float] | None = None) -> torch.Tensor:
    """Weighted sum of cross-entropies, one per taxonomy level (coarse to fine).

    Args:
        logits: {level name: (N, n_classes) logits}.
        targets: (N, L) class index per level, in the order of ``levels``; -1 = unknown (ignored).
        levels: Level names, e.g. ("master_category", "sub_category", "article_type").
        weights: Weight of each level (default 1 each).

    Returns:
        Scalar loss; a level whose targets are all unknown contributes 0.
    """
    weights = list(weights) if weights is not None else [1.0] * len(levels)
    total = targets.new_zeros((), dtype=torch.float32)
    for j, (name, w) in enumerate(zip(levels, weights, strict=True)):
        t = targets[:, j]
        if w == 0 or not (t >= 0).any():
            continue
        total = total + w * F.cross_entropy(logits[name].float(), t, ignore_index=-1)
    return total
