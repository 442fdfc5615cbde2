"""An image-independent ground truth for colour variants, read from catalog titles, and precision / recall of variant
groups against it (bench/curation.py variants).

Merchants name the colourways of one product alike: "Puma Women Charcoal Jamaica Lifestyle Handbag" and "Puma Women
Grey Jamaica Lifestyle Handbag". A title's *key* is its words without colour words (every base_colour value's words,
plus a few shade words) and gender words; its *brand* is its first word. Two items of one article_type are:

- a **variant pair** (positive) when brand, key and gender are the same, their base_colour differs, and the key
  names a model: a word other than the brand that few titles of the catalog use (at most ``max_model_titles``) and
  at most half of its brand's titles (not a word of a longer brand name: "SDL by Sweet Dreams"): "Jamaica", "Sahar",
  "LCESCBRA"; and at most MAX_COLOURWAYS items share the key. So generic titles ("Vero Moda Women Black Tunic" /
  "... Red Tunic", maybe two different tunics) never count as one product;
- **not variants** (negative) when their brands differ, or when both keys name a model and the keys differ;
- **undecided** otherwise (same key and same colour: duplicates, shades or multi-packs; generic titles).

Its limits: colourways titled differently are "not variants" when both titles name a model (so a grouping that
finds them loses measured precision) and undecided otherwise; different products sharing a specific title count as
variants. Nothing here looks at a picture.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

GENDER_WORDS = frozenset({"men", "women", "boys", "girls", "unisex", "kids", "mens", "womens", "s"})
SHADE_WORDS = frozenset({"dark", "light", "navy", "multicolour", "multicolor", "multicoloured", "colour", "color"})
MAX_MODEL_TITLES = 30
# A key shared by more items than this is read as a generic title ("SDL by Sweet Dreams Women <colour> Night suits",
# 26 items), not one product in that many colourways: its pairs are undecided.
MAX_COLOURWAYS = 6


def title_words(title: str) -> list[str]:
    """Lower-case words (letters and digits) of a title."""
    return re.findall(r"[a-z0-9]+", (title or "").lower())


@dataclass(frozen=True)
class TitleKey:
    """What the truth reads from one item: brand, title key (no colour or gender words), whether the key names a
    model (and at most MAX_COLOURWAYS items of its type, brand and gender share it), article_type, base_colour and
    gender."""

    brand: str
    key: str
    names_model: bool
    article_type: str
    colour: str
    gender: str = ""


def title_keys(rows: Sequence[dict[str, Any]], max_model_titles: int = MAX_MODEL_TITLES) -> list[TitleKey]:
    """A TitleKey per catalog row (``title``, ``article_type``, ``base_colour``)."""
    colour_words = set(SHADE_WORDS)
    for r in rows:
        colour_words.update(title_words(r.get("base_colour") or ""))
    words = [title_words(r.get("title") or "") for r in rows]
    titles_with = Counter(w for ws in words for w in set(ws))
    brand_titles = Counter(ws[0] for ws in words if ws)
    brand_titles_with = Counter((ws[0], w) for ws in words if ws for w in set(ws))
    keys = []
    for r, ws in zip(rows, words, strict=True):
        kept = [w for w in ws if w not in colour_words and w not in GENDER_WORDS]
        brand = ws[0] if ws else ""

        # A model word: rare in the catalog, and not part of a longer brand name (in most of the brand's titles).
        model = any(w != brand and titles_with[w] <= max_model_titles and not (w.isdigit() and len(w) < 3)
                    and brand_titles_with[(brand, w)] * 2 <= brand_titles[brand] for w in kept)
        keys.append(TitleKey(brand, " ".join(kept), model, r.get("article_type") or "", r.get("base_colour") or "",
                             r.get("gender") or ""))
    sizes = Counter(_bucket(k) for k in keys)
    return [replace(k, names_model=False) if k.names_model and sizes[_bucket(k)] > MAX_COLOURWAYS else k
            for k in keys]


def _bucket(k: TitleKey) -> tuple[str, str, str, str]:
    return (k.article_type, k.brand, k.key, k.gender)


def pair_label(a: TitleKey, b: TitleKey) -> bool | None:
    """True: colour variants of one product; False: different products; None: the titles cannot tell."""
    if not a.article_type or a.article_type != b.article_type:
        return None
    if a.brand != b.brand:
        return False
    if a.key == b.key:
        same_product = a.names_model and a.gender == b.gender and a.colour and b.colour and a.colour != b.colour
        return True if same_product else None
    return False if a.names_model and b.names_model else None


def positive_pairs(keys: Sequence[TitleKey], rows: Iterable[int] | None = None) -> set[tuple[int, int]]:
    """Every variant pair (i < j) of the truth among ``rows`` (default: all)."""
    buckets: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    for i in range(len(keys)) if rows is None else rows:
        k = keys[i]
        if k.names_model and k.article_type and k.colour:
            buckets[_bucket(k)].append(int(i))
    out = set()
    for members in buckets.values():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                a, b = sorted((members[x], members[y]))
                if keys[a].colour != keys[b].colour:
                    out.add((a, b))
    return out


@dataclass(frozen=True)
class VariantScore:
    """Pairs of variant groups judged by the truth: ``grouped_pairs`` all pairs grouped together, ``decided`` those
    the truth decides, ``correct`` the variant pairs among them, ``positives`` every variant pair of the truth."""

    grouped_pairs: int
    decided: int
    correct: int
    positives: int

    @property
    def precision(self) -> float:
        return self.correct / max(self.decided, 1)

    @property
    def recall(self) -> float:
        return self.correct / max(self.positives, 1)


def score_groups(groups: Iterable[Sequence[int]], keys: Sequence[TitleKey], rows: Iterable[int] | None = None
                 ) -> VariantScore:
    """Pair precision and recall of groups of rows against the title truth, counting only pairs whose two rows are
    in ``rows`` (default: all)."""
    inside = None if rows is None else {int(r) for r in rows}
    grouped = decided = correct = 0
    for g in groups:
        members = [int(r) for r in g if inside is None or int(r) in inside]
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                grouped += 1
                label = pair_label(keys[members[x]], keys[members[y]])
                if label is not None:
                    decided += 1
                    correct += label
    return VariantScore(grouped, decided, correct, len(positive_pairs(keys, inside)))
