"""P x K batch sampling for metric learning: P products per batch, K views of each."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class PKSampler:
    """Batches of (product row, view number) pairs: P distinct products, K views each.

    Every product appears once per epoch (the last batch may hold fewer than P products). Views are drawn without
    replacement when a product has at least K of them, else with replacement. With ``keep_view0`` the first view
    (the clean shop image) is always among a product's K views, so every batch contains the street-to-shop pairs
    that retrieval needs.

    Args:
        n_products: Number of products (rows 0..n-1).
        n_views: Views available per product.
        p: Products per batch.
        k: Views per product (>= 2 so that each anchor has a positive).
        seed: With the epoch number, fixes the order: ``epoch_batches(e)`` is the same in every process.
        keep_view0: Always include view 0.
    """

    def __init__(self, n_products: int, n_views: int, p: int, k: int, seed: int = 0, keep_view0: bool = True) -> None:
        if n_products < 2 or n_views < 1 or p < 2 or k < 2:
            raise ValueError(f"PKSampler needs n_products >= 2, n_views >= 1, p >= 2, k >= 2 (got {n_products}, "
                             f"{n_views}, {p}, {k})")
        self.n_products, self.n_views, self.p, self.k = n_products, n_views, p, k
        self.seed = seed
        self.keep_view0 = keep_view0

    def __len__(self) -> int:
        return -(-self.n_products // self.p)

    def _views(self, rng: np.random.Generator) -> np.ndarray:
        if self.keep_view0 and self.n_views > 1:
            others = np.arange(1, self.n_views)
            rest = rng.choice(others, self.k - 1, replace=len(others) < self.k - 1)
            return np.concatenate([[0], rest])
        return rng.choice(self.n_views, self.k, replace=self.n_views < self.k)

    def epoch_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (product rows, view numbers), each of length P' * K, grouped by product, for one epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.n_products)
        for start in range(0, self.n_products, self.p):
            products = order[start:start + self.p]
            if len(products) < 2:  # a lone product has no negatives; it is seen again next epoch
                continue
            views = np.stack([self._views(rng) for _ in products])
            yield np.repeat(products, self.k), views.reshape(-1)
