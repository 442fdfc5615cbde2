"""Catalog colour descriptors are cached by image sha256 and match a fresh computation."""

from __future__ import annotations

import numpy as np
import pytest

from engine.colour import colour_descriptor
from indexer.catalog.images import decode_image
from indexer.outfits.colours import catalog_colours, image_colours
from indexer.wiring import open_store
from tests.outfit_fixtures import outfit_catalog


@pytest.fixture(scope="module")
def store(tmp_path_factory, shared_data, small_embedder):
    fixture = outfit_catalog(tmp_path_factory, small_embedder)
    s = open_store(fixture.settings)
    yield s
    s.close()


def test_cache_round_trip_matches_fresh_descriptors(store, tmp_path):
    ids = store.sample_ids(12, seed=1)
    first = catalog_colours(store, ids, 4, tmp_path)
    assert (tmp_path / "colours-b4.npz").is_file()
    with open(store.image_path(ids[3]), "rb") as fh:
        fresh = colour_descriptor(decode_image(fh.read()), 4)
    assert np.allclose(first[3], fresh, atol=2e-3)  # the cache keeps float16
    (tmp_path / "colours-b4.npz").write_bytes(b"corrupt")  # an unreadable cache is rebuilt, not fatal
    again = catalog_colours(store, ids, 4, tmp_path)
    assert np.allclose(first, again, atol=2e-3)
    assert catalog_colours(store, ids[:2], 4, None).shape == (2, 64)


def test_missing_images_give_zeros(tmp_path):
    out = image_colours([tmp_path / "nope.jpg", None], 4)
    assert out.shape == (2, 64) and not out.any()
