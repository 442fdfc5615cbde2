"""PROXY outfits from the real catalog's taxonomy: every outfit obeys the documented rules; questions follow
the Polyvore Outfits protocol."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from engine.outfits.metrics import compatibility_auc, fitb_accuracy, fitb_scores, outfit_scores
from indexer.outfits.proxy import (
    build_proxy_dataset,
    colour_group,
    colours_compatible,
    genders_compatible,
    products_from_rows,
    rule_pair_scores,
)
from indexer.outfits.slots import parse_slot_rules
from indexer.settings import OutfitSettings
from tests.conftest import read_catalog_rows


@pytest.fixture(scope="module")
def rules():
    s = OutfitSettings()
    return parse_slot_rules(s.slots, s.templates)


@pytest.fixture(scope="module")
def products(rules):
    return products_from_rows(read_catalog_rows(12000, step=3), rules)


def test_colour_and_gender_rules():
    assert colour_group("Navy Blue") == ("neutral", "dark")
    assert colour_group("Mustard") == ("accent", "yellow-orange")
    assert colour_group("Multi") is None
    assert colours_compatible("Black", "Red") and colours_compatible("Red", "Maroon")
    assert not colours_compatible("Red", "Blue") and not colours_compatible("Black", "White")
    assert not colours_compatible("Multi", "Black")
    assert genders_compatible("Men", "Unisex") and not genders_compatible("Men", "Women")
    assert not genders_compatible("", "Men")


def test_every_proxy_outfit_obeys_the_rules(products, rules):
    ds = build_proxy_dataset(products, rules, "test", 400, seed=3)
    by_id = {p.id: p for p in products}
    assert ds.proxy and "PROXY" in ds.manifest["description"] and len(ds.outfits) == 400
    for items in ds.outfits.values():
        ps = [by_id[i] for i in items]
        assert 3 <= len(ps) <= 5
        slots = [p.slot for p in ps]
        assert len(set(slots)) == len(slots), "one item per slot"
        template = rules.template_for(slots[0])
        assert set(slots) <= set(template)
        anchor = ps[0]
        assert anchor.gender != "Unisex"
        assert all(genders_compatible(p.gender, anchor.gender) for p in ps)
        assert len({p.usage for p in ps}) == 1
        groups = {colour_group(p.colour) for p in ps}
        assert len({g for k, g in groups if k == "neutral"}) <= 1 and len({g for k, g in groups if k == "accent"}) <= 1
    assert Counter(len(v) for v in ds.outfits.values()).keys() >= {3, 4}


def test_questions_follow_the_polyvore_protocol(products, rules):
    ds = build_proxy_dataset(products, rules, "test", 300, seed=5)
    slot = {i: m["semantic_category"] for i, m in ds.items.items()}
    labels = [label for label, _ in ds.compatibility]
    assert labels.count(1) == 300 and 250 <= labels.count(0) <= 300
    positives = [items for label, items in ds.compatibility if label]
    negatives = [items for label, items in ds.compatibility if not label]
    for pos, neg in zip(positives, negatives, strict=False):
        assert [slot[i] for i in pos] == [slot[i] for i in neg]  # same slots, item by item
        assert not set(pos) & set(neg)
    assert len(ds.fitb) >= 280
    for q in ds.fitb:
        outfit = ds.outfits[q.set_id]
        assert len(q.answers) == 4 and q.answers[q.correct] == outfit[q.blank_position - 1]
        assert len({slot[a] for a in q.answers}) == 1
        assert not set(q.answers) - {q.answers[q.correct]} & set(outfit)


def test_proxy_is_seeded(products, rules):
    a = build_proxy_dataset(products, rules, "test", 50, seed=9)
    b = build_proxy_dataset(products, rules, "test", 50, seed=9)
    c = build_proxy_dataset(products, rules, "test", 50, seed=10)
    assert a.outfits == b.outfits and a.fitb == b.fitb and a.outfits != c.outfits


def test_rules_oracle_is_the_ceiling_and_not_perfect(products, rules):
    """The rules themselves answer nearly every compatibility question, but fill-in-the-blank keeps ambiguity:
    wrong answers that happen to satisfy the rules too (what the report calls the proxy's ceiling)."""
    ds = build_proxy_dataset(products, rules, "test", 400, seed=11)
    ids = sorted(ds.items)
    row = {i: k for k, i in enumerate(ids)}
    scorer = rule_pair_scores(ds.items, ids)
    auc = compatibility_auc(outfit_scores([[row[i] for i in o] for _, o in ds.compatibility], scorer),
                            np.array([label for label, _ in ds.compatibility]))
    fitb = fitb_accuracy(fitb_scores([[row[i] for i in q.items] for q in ds.fitb],
                                     [[row[i] for i in q.answers] for q in ds.fitb], scorer),
                         np.array([q.correct for q in ds.fitb]))
    assert auc > 0.97
    assert 0.6 < fitb < 0.97
