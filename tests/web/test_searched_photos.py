"""web/searched_photos.py: search ids, and the bounds of the memory of searched photos (count, age, bytes)."""

from __future__ import annotations

from PIL import Image

from web.searched_photos import SearchedPhotos, SearchedRegion, looks_like_search_id


def _region(side: int = 8) -> dict[int, SearchedRegion]:
    return {0: SearchedRegion((0.0, 0.0, 1.0, 1.0), Image.new("RGB", (side, side)))}


def test_ids_are_opaque_and_never_item_ids() -> None:
    memory = SearchedPhotos()
    ids = {memory.remember(_region(), {5: 0}) for _ in range(50)}
    assert len(ids) == 50 and all(looks_like_search_id(i) for i in ids)
    assert not looks_like_search_id("12") and not looks_like_search_id("s-12") and not looks_like_search_id("s-x" * 8)
    kept = memory.recall(next(iter(ids)))
    assert kept is not None and kept.region_of_item == {5: 0} and kept.nbytes == 3 * 8 * 8


def test_oldest_go_first_past_the_count() -> None:
    memory = SearchedPhotos(max_searches=3)
    ids = [memory.remember(_region(), {}) for _ in range(5)]
    assert [memory.recall(i) is not None for i in ids] == [False, False, True, True, True]
    assert len(memory) == 3


def test_searches_expire() -> None:
    now = [1000.0]
    memory = SearchedPhotos(ttl_s=60, clock=lambda: now[0])
    first = memory.remember(_region(), {})
    now[0] += 30
    second = memory.remember(_region(), {})
    now[0] += 31
    assert memory.recall(first) is None and memory.recall(second) is not None
    now[0] += 30
    assert memory.recall(second) is None and len(memory) == 0


def test_byte_bound() -> None:
    memory = SearchedPhotos(max_bytes=2 * 3 * 16 * 16)
    ids = [memory.remember(_region(16), {}) for _ in range(3)]
    assert [memory.recall(i) is not None for i in ids] == [False, True, True]


def test_a_garment_search_keeps_each_answering_region_as_the_model_saw_it() -> None:
    """Default answer from region 0 and a grid cell (2), a garment (3) with its own results; region 1 answered
    nothing. Kept: 0, 2, 3, each letterboxed by the query embedder; the garment's box padded as searched."""
    from engine.localize import WHOLE, Region, pad_box
    from engine.models.preprocess import Preprocessor
    from indexer.search.query import GarmentResult, QueryResult, RegionReport
    from indexer.search.service import Hit
    from web.searched_photos import remember_search

    class QueryEmbedder:
        preprocessor = Preprocessor(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))

    garment = (0.2, 0.3, 0.6, 0.9)
    regions = [Region(WHOLE, "whole"), Region((0.0, 0.0, 0.6, 0.6), "grid"), Region((0.4, 0.4, 1.0, 1.0), "grid"),
               Region(garment, "detector", "topwear", 0.9)]
    hits = [Hit(7, 0.9, {}), Hit(8, 0.8, {}), Hit(9, 0.7, {})]
    result = QueryResult(hits, [0, 2, 0], [RegionReport(r) for r in regions], True, False,
                         garments=[GarmentResult(3, [Hit(8, 0.85, {}), Hit(11, 0.6, {})], 1.0)], default_garment=0)
    memory = SearchedPhotos()
    photo = Image.new("RGB", (200, 100), (200, 30, 40))
    kept = memory.recall(remember_search(memory, photo, result, QueryEmbedder()))
    assert sorted(kept.regions) == [0, 2, 3]
    assert kept.region_of_item == {7: 0, 8: 2, 9: 0, 11: 3}
    assert kept.regions[3].box == tuple(pad_box(garment))
    assert all(r.picture.size == (32, 32) for r in kept.regions.values())
