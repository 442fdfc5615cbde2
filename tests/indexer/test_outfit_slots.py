"""Outfit slots from taxonomy rules (config.toml [outfit] slots / templates)."""

from __future__ import annotations

import pytest

from indexer.outfits.slots import SlotRulesError, parse_category_map, parse_slot_rules
from indexer.settings import OutfitSettings, load_settings
from tests.conftest import REPO, read_catalog_rows


def default_rules():
    s = OutfitSettings()
    return parse_slot_rules(s.slots, s.templates)


def test_repo_config_slots_match_the_defaults():
    settings = load_settings(REPO / "config.toml", env={})
    assert settings.outfit.slots == OutfitSettings().slots
    assert settings.outfit.templates == OutfitSettings().templates
    rules = parse_slot_rules(settings.outfit.slots, settings.outfit.templates)
    assert rules.slots == ("topwear", "bottomwear", "one_piece", "footwear", "bag", "accessory")


@pytest.mark.parametrize(("item", "slot"), [
    ({"master_category": "Apparel", "sub_category": "Topwear", "article_type": "Tshirts"}, "topwear"),
    ({"master_category": "Apparel", "sub_category": "topwear", "article_type": "Dupatta"}, None),
    ({"master_category": "Apparel", "sub_category": "Bottomwear", "article_type": "Jeans"}, "bottomwear"),
    ({"master_category": "Apparel", "sub_category": "Dress", "article_type": "Dresses"}, "one_piece"),
    ({"master_category": "Footwear", "sub_category": "Flip Flops", "article_type": "Flip Flops"}, "footwear"),
    ({"master_category": "Accessories", "sub_category": "Bags", "article_type": "Handbags"}, "bag"),
    ({"master_category": "Accessories", "sub_category": "Watches", "article_type": "Watches"}, "accessory"),
    ({"master_category": "Apparel", "sub_category": "Innerwear", "article_type": "Briefs"}, None),
    ({"master_category": None, "sub_category": None, "article_type": None}, None),
])
def test_slot_of(item, slot):
    assert default_rules().slot_of(item) == slot


def test_complementary_slots_come_from_the_first_template_holding_the_slot():
    rules = default_rules()
    assert rules.complementary("topwear") == ("bottomwear", "footwear", "bag", "accessory")
    assert rules.complementary("one_piece") == ("footwear", "bag", "accessory")
    assert rules.complementary("footwear") == ("topwear", "bottomwear", "bag", "accessory")


def test_real_catalog_rows_get_slots():
    rules = default_rules()
    rows = read_catalog_rows(2000, step=20)
    slots = [rules.slot_of(r) for r in rows]
    assert {s for s in slots if s} == set(rules.slots)
    assert slots.count(None) < len(rows) * 0.3


@pytest.mark.parametrize(("slots", "templates", "message"), [
    (["topwear sub_category=Topwear"], ["topwear+topwear"], "expected 'SLOT"),
    (["topwear: sub_category"], ["a+b"], "bad condition"),
    (["top: sub_category=Topwear", "shoe: master_category=Footwear"], ["top+hat"], "unknown slot"),
    (["top: sub_category=Topwear", "shoe: master_category=Footwear"], ["top"], "two or more"),
    ([], ["a+b"], "empty"),
])
def test_bad_rules_are_refused_with_the_entry_quoted(slots, templates, message):
    with pytest.raises(SlotRulesError, match=message):
        parse_slot_rules(slots, templates)


def test_polyvore_category_map():
    rules = default_rules()
    assert parse_category_map(["Tops=topwear", "shoes=footwear"], rules) == {"tops": "topwear", "shoes": "footwear"}
    with pytest.raises(SlotRulesError):
        parse_category_map(["tops=hat"], rules)


def test_env_override_of_a_float_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[outfit]\nmmr_lambda = 0.5\n")
    assert load_settings(path, env={}).outfit.mmr_lambda == 0.5
    assert load_settings(path, env={"LOOKALIKE_OUTFIT__MMR_LAMBDA": "0.25"}).outfit.mmr_lambda == 0.25
    from indexer.settings import SettingsError

    with pytest.raises(SettingsError, match="expected a number"):
        load_settings(path, env={"LOOKALIKE_OUTFIT__MMR_LAMBDA": "lots"})


def test_bool_key_from_toml_and_env(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[outfit]\nmatch_gender = false\n")
    assert load_settings(path, env={}).outfit.match_gender is False
    assert load_settings(path, env={"LOOKALIKE_OUTFIT__MATCH_GENDER": "true"}).outfit.match_gender is True
    from indexer.settings import SettingsError

    with pytest.raises(SettingsError, match="true or false"):
        load_settings(path, env={"LOOKALIKE_OUTFIT__MATCH_GENDER": "maybe"})
