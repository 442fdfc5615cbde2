"""Polyvore Outfits adapter on fixture files written in the dataset's real formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.outfits.polyvore import (
    FitbQuestion,
    OutfitDataError,
    OutfitDataset,
    find_items_file,
    load_dataset,
    question_kind,
    read_compatibility,
    read_fitb,
    read_items,
    read_outfits,
    write_dataset,
)

ITEMS = {
    "154249722": {"url_name": "white tee", "description": "", "catalog_names": [], "categories": ["Tops"],
                  "title": "White tee", "related": [], "category_id": "11", "semantic_category": "tops"},
    "188425631": {"title": "Blue jeans", "category_id": "27", "semantic_category": "bottoms"},
    "183214727": {"title": "Sneakers", "category_id": "41", "semantic_category": "shoes"},
    "100987654": {"title": "Black boots", "category_id": "41", "semantic_category": "shoes"},
    "177123456": {"title": "Red heels", "category_id": "41", "semantic_category": "shoes"},
    "166111222": {"title": "Grey skirt", "category_id": "27", "semantic_category": "bottoms"},
    "155000111": {"title": "Tote", "category_id": "35", "semantic_category": "bags"},
}
OUTFITS = [
    {"items": [{"item_id": "154249722", "index": 1}, {"item_id": "188425631", "index": 2},
               {"item_id": "183214727", "index": 3}], "set_id": "210750761"},
    {"items": [{"item_id": "166111222", "index": 2}, {"item_id": "100987654", "index": 1},
               {"item_id": "155000111", "index": 3}], "set_id": "187775059"},
    {"items": [{"item_id": "177123456", "index": 1}, {"item_id": "154249722", "index": 2}], "set_id": "220707148"},
]
COMPATIBILITY = "1 210750761_1 210750761_2 210750761_3\n0 220707148_2 187775059_2 220707148_1\n\n"
FITB = [{"question": ["210750761_1", "210750761_2"],
         "answers": ["187775059_1", "210750761_3", "220707148_1"], "blank_position": 3}]


def write_fixture(root: Path) -> Path:
    (root / "disjoint").mkdir(parents=True)
    (root / "polyvore_item_metadata.json").write_text(json.dumps(ITEMS))
    (root / "disjoint" / "test.json").write_text(json.dumps(OUTFITS))
    (root / "disjoint" / "compatibility_test.txt").write_text(COMPATIBILITY)
    (root / "disjoint" / "fill_in_blank_test.json").write_text(json.dumps(FITB))
    return root / "disjoint" / "test.json"


def test_reads_the_real_formats(tmp_path):
    outfits_path = write_fixture(tmp_path)
    assert read_items(tmp_path / "polyvore_item_metadata.json")["154249722"]["semantic_category"] == "tops"
    outfits = read_outfits(outfits_path)
    assert outfits["187775059"] == ["100987654", "166111222", "155000111"]  # ordered by index
    compat = read_compatibility(outfits_path.parent / "compatibility_test.txt", outfits_path)
    assert compat == [(1, ["154249722", "188425631", "183214727"]), (0, ["154249722", "166111222", "177123456"])]
    (q,) = read_fitb(outfits_path.parent / "fill_in_blank_test.json", outfits_path)
    assert q == FitbQuestion("210750761", ("154249722", "188425631"), ("100987654", "183214727", "177123456"), 1, 3)
    assert find_items_file(outfits_path) == tmp_path / "polyvore_item_metadata.json"
    ds = load_dataset(outfits_path, [outfits_path.parent / "compatibility_test.txt",
                                     outfits_path.parent / "fill_in_blank_test.json"])
    assert len(ds.compatibility) == 2 and len(ds.fitb) == 1 and not ds.proxy


@pytest.mark.parametrize(("name", "content", "message"), [
    ("compatibility_test.txt", "1 210750761_1 999_1\n", "not SETID_INDEX"),
    ("compatibility_test.txt", "yes 210750761_1 210750761_2\n", "label 0 or 1"),
    ("fill_in_blank_test.json", json.dumps([{"question": ["210750761_1"], "answers": ["210750761_2",
                                                                                      "210750761_3"]}]),
     "exactly one answer"),
    ("fill_in_blank_test.json", "{not json", "not valid JSON"),
    ("fill_in_blank_test.json", json.dumps([{"answers": []}]), "needs 'question'"),
])
def test_bad_question_files_name_the_problem(tmp_path, name, content, message):
    outfits_path = write_fixture(tmp_path)
    (outfits_path.parent / name).write_text(content)
    with pytest.raises(OutfitDataError, match=message):
        load_dataset(outfits_path, [outfits_path.parent / name])


def test_bad_items_and_outfits(tmp_path):
    bad = tmp_path / "items.json"
    bad.write_text(json.dumps({"1": {"title": "no category"}}))
    with pytest.raises(OutfitDataError, match="semantic_category"):
        read_items(bad)
    dup = tmp_path / "outfits.json"
    dup.write_text(json.dumps(OUTFITS + OUTFITS[:1]))
    with pytest.raises(OutfitDataError, match="duplicate set_id"):
        read_outfits(dup)
    with pytest.raises(OutfitDataError, match="use .txt"):
        question_kind("questions.csv")
    with pytest.raises(OutfitDataError, match="no polyvore_item_metadata.json"):
        find_items_file(tmp_path / "deep" / "x" / "test.json")


def test_write_then_read_round_trip(tmp_path):
    outfits_path = write_fixture(tmp_path / "src")
    ds = load_dataset(outfits_path, [outfits_path.parent / "compatibility_test.txt",
                                     outfits_path.parent / "fill_in_blank_test.json"])
    ds.manifest = {"proxy": True, "description": "fixture"}
    paths = write_dataset(tmp_path / "out", "test", ds)
    again = load_dataset(paths["outfits"], [paths["compatibility"], paths["fitb"]])
    assert again.items == ds.items and again.outfits == ds.outfits
    assert again.compatibility == ds.compatibility and again.fitb == ds.fitb and again.proxy
    lonely = OutfitDataset(items=ds.items, outfits=ds.outfits, compatibility=[(0, ["nope"])])
    with pytest.raises(OutfitDataError, match="in no outfit"):
        write_dataset(tmp_path / "bad", "test", lonely)
