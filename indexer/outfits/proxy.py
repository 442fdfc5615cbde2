"""PROXY outfits derived from catalog taxonomy (the catalog has no real outfits), and their questions.

How a proxy outfit is made (seeded, products of one split only):

1. An anchor item: a random product of the split whose slot starts a template (topwear or one_piece by default),
   with a known gender and a colour in the table below.
2. The outfit takes the anchor's gender (items of that gender or Unisex) and usage (Casual, Formal, Sports,
   Ethnic, ...), and a colour palette: one neutral group (dark, light, grey, earth) plus one accent family
   (reds, pinks/purples, blues, greens, yellows/oranges); the anchor's colour fixes one of the two, the other is
   drawn at random. Every item's colour must lie in the palette.
3. For every other slot of the anchor's template, a random product of the split satisfying gender, usage and
   palette; slots past the third are dropped at random (so outfits have 3 to 5 items, like Polyvore's), and a
   slot without any such product is skipped. Outfits with fewer than three items are discarded.

Questions follow the Polyvore Outfits protocol: a negative outfit replaces every item with a random item of the
same slot taken from other outfits of the split; a fill-in-the-blank question hides one item and offers it
among wrong answers of the same slot taken from other outfits.

These rules are exactly what "compatible" means here, so a model given the taxonomy could answer perfectly up to
chance collisions; ``rule_pair_scores`` is that oracle, reported beside learned scores as the proxy's ceiling.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.outfits.polyvore import FitbQuestion, OutfitDataset
from indexer.outfits.slots import SlotRules

NEUTRAL_GROUPS: dict[str, frozenset[str]] = {
    "dark": frozenset({"black", "charcoal", "navy blue"}),
    "light": frozenset({"white", "off white", "cream", "beige"}),
    "grey": frozenset({"grey", "grey melange", "silver", "steel"}),
    "earth": frozenset({"brown", "tan", "khaki", "coffee brown", "mushroom brown", "taupe", "nude", "skin", "gold",
                        "bronze", "copper"}),
}
ACCENT_FAMILIES: dict[str, frozenset[str]] = {
    "red": frozenset({"red", "maroon", "burgundy", "rose", "rust"}),
    "pink-purple": frozenset({"pink", "magenta", "purple", "lavender", "mauve", "peach"}),
    "blue": frozenset({"blue", "turquoise blue", "teal"}),
    "green": frozenset({"green", "olive", "sea green", "lime green", "fluorescent green"}),
    "yellow-orange": frozenset({"yellow", "mustard", "orange"}),
}
PROXY_DESCRIPTION = ("PROXY outfits derived from catalog taxonomy: one item per slot sharing gender (or Unisex) and "
                     "usage, colours within one neutral group + one accent family; not real outfits")
# Slots at template positions >= this are dropped with probability DROP_OPTIONAL.
REQUIRED_POSITIONS = 3
DROP_OPTIONAL = 0.35
MIN_ITEMS = 3
# Each split's outfits use seed + this offset, so `make-outfits` rebuilds exactly the held-out set of training.
SPLIT_SEED_OFFSET = {"train": 0, "val": 101, "test": 202}


def colour_group(colour: str | None) -> tuple[str, str] | None:
    """("neutral", group) or ("accent", family) for a catalog base colour; None when unknown (e.g. Multi)."""
    c = (colour or "").strip().lower()
    for name, members in NEUTRAL_GROUPS.items():
        if c in members:
            return ("neutral", name)
    for name, members in ACCENT_FAMILIES.items():
        if c in members:
            return ("accent", name)
    return None


def colours_compatible(a: str | None, b: str | None) -> bool:
    """Can two colours share a palette (one neutral group + one accent family)?"""
    ga, gb = colour_group(a), colour_group(b)
    if ga is None or gb is None:
        return False
    return ga == gb or ga[0] != gb[0]


def genders_compatible(a: str | None, b: str | None) -> bool:
    a, b = (a or "").lower(), (b or "").lower()
    if not a or not b:
        return False
    return a == b or "unisex" in (a, b)


@dataclass(frozen=True)
class Product:
    """What the proxy needs of a catalog product."""

    id: str
    slot: str
    gender: str
    usage: str
    colour: str


def products_from_rows(rows: Sequence[Mapping[str, Any]], rules: SlotRules) -> list[Product]:
    """Catalog rows (dicts with id and taxonomy columns) that have a slot, a gender, a usage and a known colour."""
    out = []
    for r in rows:
        slot = rules.slot_of(r)
        if slot and r.get("gender") and r.get("usage") and colour_group(r.get("base_colour")):
            out.append(Product(str(r["id"]), slot, str(r["gender"]), str(r["usage"]), str(r["base_colour"])))
    return out


def _key(slot: str, usage: str, gender: str, group: str) -> tuple[str, str, str, str]:
    return (slot, usage.lower(), gender.lower(), group)


def make_proxy_outfits(products: Sequence[Product], rules: SlotRules, n_outfits: int, seed: int,
                       prefix: str = "proxy") -> dict[str, list[str]]:
    """Build up to ``n_outfits`` proxy outfits (see the module docstring); {set_id: item ids}.

    Outfits identical to an earlier one are skipped; generation stops after 20 * n_outfits attempts.
    """
    rng = random.Random(seed)
    starters = {t[0] for t in rules.templates}
    anchors = [p for p in products if p.slot in starters and p.gender.lower() != "unisex"]
    # Candidates by (slot, usage, gender, colour group): a draw joins at most four small lists.
    index: dict[tuple[str, str, str, str], list[Product]] = defaultdict(list)
    for p in products:
        index[_key(p.slot, p.usage, p.gender, colour_group(p.colour)[1])].append(p)  # type: ignore[index]
    outfits: dict[str, list[str]] = {}
    seen: set[tuple[str, ...]] = set()
    attempts = 0
    while anchors and len(outfits) < n_outfits and attempts < 20 * n_outfits:
        attempts += 1
        anchor = rng.choice(anchors)
        kind, group = colour_group(anchor.colour)  # type: ignore[misc]
        if kind == "neutral":
            palette = (group, rng.choice(sorted(ACCENT_FAMILIES)))
        else:
            palette = (rng.choice(sorted(NEUTRAL_GROUPS)), group)
        chosen = [anchor.id]
        for pos, slot in enumerate(rules.template_for(anchor.slot)):
            if slot == anchor.slot:
                continue
            if pos >= REQUIRED_POSITIONS and rng.random() < DROP_OPTIONAL:
                continue
            cands = [p for gender in (anchor.gender, "unisex") for g in palette
                     for p in index.get(_key(slot, anchor.usage, gender, g), ())]
            if cands:
                chosen.append(rng.choice(cands).id)
        key = tuple(sorted(chosen))
        if len(chosen) < MIN_ITEMS or key in seen:
            continue
        seen.add(key)
        outfits[f"{prefix}{len(outfits) + 1:06d}"] = chosen
    return outfits


def make_questions(outfits: Mapping[str, Sequence[str]], item_slot: Mapping[str, str], seed: int,
                   n_answers: int = 4) -> tuple[list[tuple[int, list[str]]], list[FitbQuestion]]:
    """Compatibility questions (each outfit, and a negative of random same-slot items from other outfits) and
    one fill-in-the-blank question per outfit (blank at a random position, wrong answers of the blank's slot from
    other outfits), as in Polyvore Outfits.

    Returns:
        (compatibility [(label, items)], fitb questions).
    """
    rng = random.Random(seed)
    pool: dict[str, list[str]] = defaultdict(list)
    for items in outfits.values():
        for item in items:
            pool[item_slot[item]].append(item)
    pool = {slot: sorted(set(v)) for slot, v in pool.items()}

    def draw(slot: str, avoid: set[str], k: int) -> list[str] | None:
        cands = pool.get(slot, [])
        if len(cands) < len(avoid) + k and len(set(cands) - avoid) < k:
            return None
        out: list[str] = []
        while len(out) < k:
            c = rng.choice(cands)
            if c not in avoid and c not in out:
                out.append(c)
        return out

    compat: list[tuple[int, list[str]]] = []
    fitb: list[FitbQuestion] = []
    for set_id, items in outfits.items():
        members = set(items)
        negative = []
        for item in items:
            got = draw(item_slot[item], members | set(negative), 1)
            if got is None:
                break
            negative.append(got[0])
        compat.append((1, list(items)))
        if len(negative) == len(items):
            compat.append((0, negative))
        blank = rng.randrange(len(items))
        wrong = draw(item_slot[items[blank]], members, n_answers - 1)
        if wrong is None:
            continue
        answers = [items[blank], *wrong]
        rng.shuffle(answers)
        fitb.append(FitbQuestion(set_id, tuple(i for k, i in enumerate(items) if k != blank), tuple(answers),
                                 answers.index(items[blank]), blank + 1))
    return compat, fitb


def build_proxy_dataset(products: Sequence[Product], rules: SlotRules, split: str, n_outfits: int,
                        seed: int) -> OutfitDataset:
    """Proxy outfits of one split with their questions and Polyvore-style item metadata, labelled proxy.

    Products are sorted by id first, so the same products and seed give the same dataset whatever their order.
    """
    products = sorted(products, key=lambda p: p.id)
    outfits = make_proxy_outfits(products, rules, n_outfits, seed, prefix=f"proxy-{split}-")
    by_id = {p.id: p for p in products}
    used = sorted({i for items in outfits.values() for i in items})
    items = {i: {"semantic_category": by_id[i].slot, "gender": by_id[i].gender, "usage": by_id[i].usage,
                 "base_colour": by_id[i].colour} for i in used}
    compat, fitb = make_questions(outfits, {i: by_id[i].slot for i in used}, seed + 1)
    manifest = {"proxy": True, "description": PROXY_DESCRIPTION, "split": split, "seed": seed,
                "n_outfits": len(outfits), "n_compatibility": len(compat), "n_fitb": len(fitb),
                "slots": list(rules.slots), "templates": ["+".join(t) for t in rules.templates],
                "neutral_groups": {k: sorted(v) for k, v in NEUTRAL_GROUPS.items()},
                "accent_families": {k: sorted(v) for k, v in ACCENT_FAMILIES.items()}}
    return OutfitDataset(items=items, outfits=outfits, compatibility=compat, fitb=fitb, manifest=manifest)


def rule_pair_scores(meta: Mapping[str, Mapping[str, Any]], ids: Sequence[str]):
    """The proxy's own rules as a pair scorer over rows of ``ids``: 1 when two items could share a proxy outfit
    (gender, usage, colour palette), else 0. Used to report the proxy's ceiling, never to rank."""
    gender = [str(meta[i].get("gender") or "") for i in ids]
    usage = [str(meta[i].get("usage") or "").lower() for i in ids]
    colour = [meta[i].get("base_colour") for i in ids]

    def score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([float(genders_compatible(gender[i], gender[j]) and usage[i] == usage[j] and usage[i] != ""
                               and colours_compatible(colour[i], colour[j])) for i, j in zip(a, b, strict=True)])

    return score
