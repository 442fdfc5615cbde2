"""Complete the look over a small indexed catalog with a tiny trained outfit model (tests/outfit_fixtures.py)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from engine.outfits.model import OutfitModelError
from indexer.catalog.images import decode_image
from indexer.outfits.catalog import item_taxonomy
from indexer.outfits.wiring import create_outfit_service
from indexer.store.catalog_store import FilterError
from indexer.wiring import create_search_service, open_store
from tests.outfit_fixtures import outfit_catalog


@pytest.fixture(scope="module")
def fixture(tmp_path_factory, shared_data, small_embedder):
    return outfit_catalog(tmp_path_factory, small_embedder)


@pytest.fixture(scope="module")
def service(fixture, small_embedder):
    store = open_store(fixture.settings)
    yield create_outfit_service(fixture.settings, create_search_service(fixture.settings, store, small_embedder))
    store.close()


@pytest.fixture(scope="module")
def taxonomy(service):
    return item_taxonomy(service.search.store)


def test_outfit_for_an_item_has_every_complementary_slot_filled_from_that_slot(service, taxonomy):
    rules = service.rules
    tops = [i for i, t in sorted(taxonomy.items()) if rules.slot_of(t) == "topwear"]
    result = service.for_item(tops[0])
    assert result.query_slot == "topwear" and result.slot_source == "taxonomy"
    assert [s.slot for s in result.slots] == ["bottomwear", "footwear", "bag", "accessory"]
    for s in result.slots:
        assert 1 <= len(s.hits) <= service.settings.per_slot
        assert len({h.id for h in s.hits}) == len(s.hits)
        for h in s.hits:
            assert rules.slot_of(taxonomy[h.id]) == s.slot
            assert h.id != tops[0] and -1.0 <= h.score <= 1.0
    assert [h.id for h in result.outfit] == [s.hits[0].id for s in result.slots]
    assert result.as_dict()["outfit"][0]["id"] == result.slots[0].hits[0].id


def test_filters_apply_inside_the_search(service, taxonomy):
    rules = service.rules
    shoes = [i for i, t in taxonomy.items() if rules.slot_of(t) == "footwear"]
    # A selective filter: the rarest footwear colour. All its items come back, nothing else.
    colours: dict[str, list[int]] = {}
    for i in shoes:
        colours.setdefault(taxonomy[i]["base_colour"], []).append(i)
    colour, ids = min(colours.items(), key=lambda kv: len(kv[1]))
    top = next(i for i, t in sorted(taxonomy.items()) if rules.slot_of(t) == "topwear")
    result = service.for_item(top, {"base_colour": [colour]}, per_slot=10)
    footwear = next(s for s in result.slots if s.slot == "footwear")
    assert footwear.candidates == len(ids)
    assert len(footwear.hits) == min(10, len(ids)) and {h.id for h in footwear.hits} <= set(ids)
    assert all(h.item["base_colour"] == colour for s in result.slots for h in s.hits)
    women = service.for_item(top, {"gender": ["Women"]})
    assert any(s.hits for s in women.slots)
    assert all(h.item["gender"] == "Women" for s in women.slots for h in s.hits)
    with pytest.raises(FilterError):
        service.for_item(top, {"no_such_column": ["x"]})


def _max_pair_similarity(service, hits):
    state = service._current()
    vecs = np.stack([state.vectors[state.row_of[h.id]] for h in hits])
    sims = vecs @ vecs.T
    return max(sims[i, j] for i, j in itertools.combinations(range(len(hits)), 2))


def test_variety_mmr_spreads_picks_without_changing_the_best(service, taxonomy):
    rules = service.rules
    tops = [i for i, t in sorted(taxonomy.items()) if rules.slot_of(t) == "topwear"][:8]
    original = service.settings
    plain = dataclasses.replace(original, mmr_lambda=1.0)
    varied = dataclasses.replace(original, mmr_lambda=0.5)
    change, total = 0.0, 0
    try:
        for top in tops:
            service.settings = plain
            a = service.for_item(top, per_slot=4)
            service.settings = varied
            b = service.for_item(top, per_slot=4)
            for sa, sb in zip(a.slots, b.slots, strict=True):
                assert sa.hits[0].id == sb.hits[0].id  # the most compatible item always leads
                if len(sa.hits) == 4 and len(sb.hits) == 4:
                    change += _max_pair_similarity(service, sb.hits) - _max_pair_similarity(service, sa.hits)
                    total += 1
    finally:
        service.settings = original
    assert total and change / total < -0.005, "MMR picks should look less alike than plain top-k"


def test_photo_outfit_uses_the_classifier_or_the_given_slot(service, taxonomy):
    rules = service.rules
    shoe = next(i for i, t in sorted(taxonomy.items()) if rules.slot_of(t) == "footwear")
    with open(service.search.store.image_path(shoe), "rb") as fh:
        image = decode_image(fh.read())
    told = service.for_image(image, slot="footwear")
    assert told.slot_source == "client"
    assert [s.slot for s in told.slots] == ["topwear", "bottomwear", "bag", "accessory"]
    guessed = service.for_image(image, crop=(0.0, 0.0, 1.0, 1.0))
    assert guessed.slot_source == "classifier" and guessed.query_slot in rules.slots
    assert 0 < guessed.slot_confidence <= 1 and guessed.slots


def test_items_outside_outfits_and_unknown_items(service, taxonomy):
    rules = service.rules
    other = [i for i, t in taxonomy.items() if rules.slot_of(t) is None]
    assert other, "the small catalog should hold some non-outfit items (innerwear, perfume, ...)"
    result = service.for_item(other[0])
    assert result.query_slot is None and result.slots == [] and "not part of an outfit" in result.note
    assert service.for_item(10**9) is None


def test_a_model_for_another_embedder_is_refused(fixture):
    class OtherEmbedder:
        fingerprint, dim = "0" * 32, 1280

    class FakeSearch:
        embedder = OtherEmbedder()

    with pytest.raises(OutfitModelError, match="train-outfits"):
        create_outfit_service(fixture.settings, FakeSearch())  # type: ignore[arg-type]


def test_match_gender_keeps_the_query_gender_or_unisex(service, taxonomy):
    rules = service.rules
    dresses = [i for i, t in sorted(taxonomy.items()) if rules.slot_of(t) in ("topwear", "one_piece")
               and t["gender"] == "Women"]
    original = service.settings
    try:
        for flag in (True, False):
            service.settings = dataclasses.replace(original, match_gender=flag)
            genders = {h.item["gender"] for q in dresses[:5] for s in service.for_item(q, per_slot=6).slots
                       for h in s.hits}
            if flag:
                assert genders <= {"Women", "Unisex"}
            else:
                assert genders - {"Women", "Unisex"}, "without the rule the tiny model suggests other genders too"
    finally:
        service.settings = original
