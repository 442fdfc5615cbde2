"""P x K sampler: batch structure, coverage, the shop view, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from engine.train.sampler import PKSampler


def test_batches_hold_p_products_times_k_views_and_cover_every_product_once() -> None:
    sampler = PKSampler(n_products=50, n_views=4, p=8, k=3, seed=0)
    seen = []
    for rows, views in sampler.epoch_batches(0):
        assert len(rows) == len(views) and len(rows) % 3 == 0
        products = rows.reshape(-1, 3)
        assert (products == products[:, :1]).all()  # grouped by product
        assert len(set(products[:, 0])) == len(products) <= 8  # distinct products
        per_product = views.reshape(-1, 3)
        assert (per_product[:, 0] == 0).all()  # the shop view is always there
        assert all(len(set(v)) == 3 for v in per_product)  # without replacement when enough views
        seen += products[:, 0].tolist()
    assert sorted(seen) == list(range(50))
    assert len(sampler) == 7


def test_same_seed_and_epoch_give_the_same_batches_and_epochs_differ() -> None:
    a = [r.tolist() for r, _ in PKSampler(30, 3, 4, 2, seed=5).epoch_batches(2)]
    b = [r.tolist() for r, _ in PKSampler(30, 3, 4, 2, seed=5).epoch_batches(2)]
    c = [r.tolist() for r, _ in PKSampler(30, 3, 4, 2, seed=5).epoch_batches(3)]
    assert a == b and a != c


def test_few_views_are_drawn_with_replacement_and_lonely_last_product_is_skipped() -> None:
    sampler = PKSampler(n_products=5, n_views=2, p=2, k=4, seed=0)
    batches = list(sampler.epoch_batches(0))
    assert len(batches) == 2  # 2 + 2 products; the fifth would have no negative in its batch
    for _, views in batches:
        assert set(np.unique(views)) <= {0, 1}


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        PKSampler(n_products=1, n_views=3, p=2, k=2)
    with pytest.raises(ValueError):
        PKSampler(n_products=10, n_views=3, p=2, k=1)
