"""Outfit slots do not trust a label the label audit flags with high confidence (issue 18, docs/curation.md
"Outfit slots"): the slot classifier decides instead, until a merchandiser changes the label."""

from __future__ import annotations

import pytest

from indexer.curation.records import AUDIT, apply_label, record_run
from indexer.outfits.catalog import item_taxonomy
from indexer.outfits.wiring import create_outfit_service
from indexer.wiring import create_search_service, open_store
from tests.outfit_fixtures import outfit_catalog


@pytest.fixture(scope="module")
def fixture(tmp_path_factory, shared_data, small_embedder):
    return outfit_catalog(tmp_path_factory, small_embedder)


def test_a_flagged_slot_label_goes_to_the_classifier_until_settled(fixture, small_embedder) -> None:
    store = open_store(fixture.settings)
    try:
        def service():
            return create_outfit_service(fixture.settings, create_search_service(fixture.settings, store,
                                                                                 small_embedder))

        taxonomy = item_taxonomy(store)
        rules = service().rules
        tops = [i for i, t in sorted(taxonomy.items()) if rules.slot_of(t) == "topwear"]
        top, other = tops[0], tops[1]
        assert service().for_item(top).slot_source == "taxonomy"
        suspect = {"column": "sub_category", "current": "Topwear", "suggested": "Belts", "current_probability": 0.0}
        record_run(store, AUDIT, {}, {"suspects": [{**suspect, "id": top, "confidence": 0.95},
                                                   {**suspect, "id": other, "confidence": 0.5}]})
        flagged = service()
        assert flagged.for_item(top).slot_source == "classifier"
        assert flagged.for_item(other).slot_source == "taxonomy"       # below outfit_distrust_confidence
        apply_label(store, top, "sub_category", "Topwear", "merch")    # the merchandiser settles it
        assert service().for_item(top).slot_source == "taxonomy"
    finally:
        store.close()
