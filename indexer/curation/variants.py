"""Variants: one product shape in other colourways (the same T-shirt in red, blue and black).

The served embedding's appearance part (the vector without the taxonomy classifier's components) reads shape,
cut and print far more than colour (engine/colour.py: a linear probe reads the colour group from ImageNet features at
about 54%), so "high similarity with the colour component removed" is the appearance cosine. Variants must also
share their article_type. Groups are grown greedily around the most connected items (leader clustering), so a
group never chains across the catalog: every member is within the threshold of its group's leader.

Measured against a title ground truth (bench/curation.py variants, indexer/curation/variant_truth.py), the groups
of the served model are look-alikes far more than colourways (docs/curation.md "How good the variant groups are").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.curation.duplicates import candidate_pairs
from indexer.curation.label_audit import appearance_part


@dataclass
class VariantGroup:
    leader: int
    ids: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "variant", "size": len(self.ids), "leader": self.leader, "ids": self.ids}


def leader_groups(n: int, pairs: np.ndarray, scores: np.ndarray) -> list[list[int]]:
    """Greedy leader clustering of rows joined by ``pairs``: the row with the most links leads a group of its
    unassigned neighbours; repeat. Groups of size >= 2, leader first."""
    neighbours: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    for (a, b), s in zip(np.asarray(pairs).reshape(-1, 2), scores, strict=True):
        neighbours[int(a)].append((float(s), int(b)))
        neighbours[int(b)].append((float(s), int(a)))
    order = sorted(range(n), key=lambda i: (-len(neighbours[i]), i))
    taken = np.zeros(n, bool)
    groups = []
    for leader in order:
        if taken[leader] or not neighbours[leader]:
            continue
        members = [j for _, j in sorted(neighbours[leader], reverse=True) if not taken[j]]
        if not members:
            continue
        taken[leader] = True
        taken[members] = True
        groups.append([leader, *members])
    return groups


def variant_candidates(vectors: np.ndarray, types: Sequence[str | None], min_cosine: float, n_classes: int = 0,
                       candidates: int = 10, exclude: set[tuple[int, int]] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(row pairs (P, 2) with i < j, appearance cosines (P,)): each item's ``candidates`` nearest neighbours by
    appearance with cosine >= ``min_cosine``, of its own article_type and not in ``exclude``. The neighbours do not
    depend on ``min_cosine``, so the pairs at a higher threshold are these pairs with cosine >= it."""
    appearance = appearance_part(vectors, n_classes)
    pairs, scores = candidate_pairs(appearance, candidates, min_cosine)
    keep = np.array([bool(types[a]) and types[a] == types[b] and (exclude is None or (int(a), int(b)) not in exclude)
                     for a, b in pairs], bool) if len(pairs) else np.zeros(0, bool)
    return pairs[keep], scores[keep]


def find_variants(ids: Sequence[int], vectors: np.ndarray, types: Sequence[str | None], threshold: float,
                  n_classes: int = 0, candidates: int = 10, exclude: set[tuple[int, int]] | None = None
                  ) -> list[VariantGroup]:
    """Variant groups: items of one article_type whose appearance cosine reaches ``threshold``.

    Args:
        ids: Item id per row.
        vectors: (N, dim) unit vectors of the current generation.
        types: article_type per row (items without one are never grouped).
        threshold: Appearance cosine (curation.variant_threshold).
        n_classes: Components of the taxonomy classifier at the end of the vectors (dropped).
        candidates: Nearest neighbours per item considered.
        exclude: Row pairs (i < j) not to join (e.g. the duplicates already grouped).
    """
    pairs, scores = variant_candidates(vectors, types, threshold, n_classes, candidates, exclude)
    groups = leader_groups(len(ids), pairs, scores)
    return [VariantGroup(int(ids[g[0]]), [int(ids[r]) for r in g]) for g in groups]
