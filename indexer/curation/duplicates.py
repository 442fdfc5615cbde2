"""Duplicate items: exact groups (one image file shared by several items, by content sha256) and near-duplicate
groups (the same photograph re-encoded, resized, cropped or brightened: found by vector search, verified on pixels).

Near-duplicates are found in two steps. Candidates: each item's ``candidates`` nearest neighbours in the current
generation's vectors (inner product = cosine) with cosine >= ``min_cosine``. Verification: the pair's picture
similarity (indexer/curation/image_match.py) must reach ``threshold``; embeddings alone cannot separate re-encoded
copies from distinct products shot alike (docs/curation.md). Pairs join into groups by union-find.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from indexer.curation.image_match import pair_similarities

EXACT = "exact"
NEAR = "near"


@dataclass
class DuplicateGroup:
    """Items that show the same picture. ``kind`` is "exact" when every item shares one image file, else "near";
    ``score`` is the lowest verified picture similarity inside the group (1.0 for exact groups)."""

    kind: str
    ids: list[int]
    score: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": len(self.ids), "score": round(float(self.score), 4), "ids": self.ids}


@dataclass
class DuplicateReport:
    groups: list[DuplicateGroup]
    items: int
    candidate_pairs: int = 0
    verified_pairs: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def duplicate_items(self) -> int:
        """Items that have at least one duplicate."""
        return sum(len(g.ids) for g in self.groups)

    def summary(self) -> dict[str, Any]:
        exact = [g for g in self.groups if g.kind == EXACT]
        return {"items": self.items, "groups": len(self.groups), "exact_groups": len(exact),
                "near_groups": len(self.groups) - len(exact), "duplicate_items": self.duplicate_items,
                "duplicate_rate": round(self.duplicate_items / self.items, 6) if self.items else 0.0,
                "candidate_pairs": self.candidate_pairs, "verified_pairs": self.verified_pairs}


def union_find_groups(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components (of size >= 2) of the graph on ``n`` nodes with edges ``pairs`` (P, 2), each sorted,
    largest first."""
    parent = np.arange(n)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    for a, b in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        members[find(i)].append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: (-len(m), m[0]))


def exact_pairs(hashes: Sequence[str]) -> np.ndarray:
    """(P, 2) row pairs that share a content hash (a chain per hash: enough for grouping)."""
    first: dict[str, int] = {}
    out = []
    for i, h in enumerate(hashes):
        if h in first:
            out.append((first[h], i))
        else:
            first[h] = i
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def candidate_pairs(vectors: np.ndarray, k: int, min_cosine: float, batch: int = 2048,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(pairs (P, 2) with i < j, cosines (P,)) among each row's ``k`` nearest rows with cosine >= ``min_cosine``.

    Exact inner-product search (faiss IndexFlatIP) over unit vectors, in batches.
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if n < 2 or k <= 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    kk = min(k + 1, n)
    found: dict[tuple[int, int], float] = {}
    for start in tqdm(range(0, n, batch), desc="near-duplicate candidates", unit="batch", disable=not progress):
        scores, rows = index.search(x[start:start + batch], kk)
        for r in range(len(rows)):
            i = start + r
            for s, j in zip(scores[r], rows[r], strict=True):
                if j < 0 or j == i or s < min_cosine:
                    continue
                key = (i, int(j)) if i < j else (int(j), i)
                found[key] = max(found.get(key, -1.0), float(s))
    if not found:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    pairs = np.array(list(found), dtype=np.int64)
    return pairs, np.array(list(found.values()), dtype=np.float32)


def verify_pairs(pairs: np.ndarray, load_grid: Callable[[int], np.ndarray], progress: bool = False) -> np.ndarray:
    """Picture similarity of every candidate pair; ``load_grid(row)`` gives a row's picture grid
    (indexer/curation/image_match.picture_grid). Grids are loaded once each."""
    rows = np.unique(pairs) if len(pairs) else np.zeros(0, np.int64)
    where = {int(r): k for k, r in enumerate(rows)}
    grids = [load_grid(int(r)) for r in tqdm(rows, desc="decoding pictures", unit="img", disable=not progress)]
    local = np.vectorize(where.__getitem__, otypes=[np.int64])(pairs) if len(pairs) else pairs
    return pair_similarities(grids, local)


def find_duplicates(ids: Sequence[int], hashes: Sequence[str], vectors: np.ndarray,
                    load_grid: Callable[[int], np.ndarray], threshold: float, candidates: int = 10,
                    min_cosine: float = 0.5, progress: bool = False) -> DuplicateReport:
    """Exact and near-duplicate groups of a catalog.

    Args:
        ids: Item id per row.
        hashes: Image content sha256 per row.
        vectors: (N, dim) unit vectors of the current generation, row-aligned with ``ids``.
        load_grid: Row -> picture grid (``image_match.picture_grid`` of the item's decoded image).
        threshold: Picture similarity a candidate pair needs to count as the same picture (duplicates.threshold).
        candidates: Nearest neighbours per item that are verified.
        min_cosine: Vector cosine below which a neighbour is not verified at all.

    Returns:
        The groups, largest first; a group is "exact" when all its items share one hash.
    """
    n = len(ids)
    if len(hashes) != n or len(vectors) != n:
        raise ValueError(f"ids ({n}), hashes ({len(hashes)}) and vectors ({len(vectors)}) must be row-aligned")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the near-duplicate threshold must be in (0, 1], got {threshold}")
    pairs, _ = candidate_pairs(vectors, candidates, min_cosine, progress=progress)
    same_hash = np.array([hashes[a] == hashes[b] for a, b in pairs], bool) if len(pairs) else np.zeros(0, bool)
    # min_cosine gates verification: below it a pair is never the same picture, whatever its pixels say.
    to_check = pairs[~same_hash]
    scores = verify_pairs(to_check, load_grid, progress) if len(to_check) else np.zeros(0, np.float32)
    verified = to_check[scores >= threshold]
    pair_score = {(int(a), int(b)): float(s) for (a, b), s in zip(to_check, scores, strict=True) if s >= threshold}
    components = union_find_groups(n, np.concatenate([exact_pairs(hashes), verified]))
    component_of = {m: k for k, members in enumerate(components) for m in members}
    lowest: dict[int, float] = {}
    for (a, _b), s in pair_score.items():
        k = component_of[a]
        lowest[k] = min(lowest.get(k, 1.0), s)
    groups = []
    for k, members in enumerate(components):
        kind = EXACT if len({hashes[m] for m in members}) == 1 else NEAR
        groups.append(DuplicateGroup(kind, [int(ids[m]) for m in members], lowest.get(k, 1.0) if kind == NEAR else 1.0))
    return DuplicateReport(groups, n, len(pairs), len(verified),
                           {"threshold": threshold, "candidates": candidates, "min_cosine": min_cosine})
