"""Catalog labels in a word query, turned into scoring: an article-type boost on the query vector and a colour bonus
per item.

When the words name an article type the served model classifies (engine/text_labels.py reads them), the query vector
gains ``article_type_boost`` on that class's dimension of the served vector's taxonomy-posterior block, so items the
model calls that type rank higher; the vector search answers it as any query. When the words name a base colour the
colour head knows (engine/models/colour_head.py), each item's score gains ``colour_weight`` times the log-probability
that the item has that colour (for a colour in the negative words: that it has not), read from the colour head's
posteriors of the served generation's items (computed once per generation); that score is exact over the generation
(``label_scores``), as ``manage.py evaluate text`` ranks.

    score(item) = cos(q', v_item) + colour_weight * (sum over named colours c of log((EPS + P(c | item)) / (1 + EPS))
                                                   + sum over colours c in the negative words of
                                                     log((EPS + 1 - P(c | item)) / (1 + EPS)))
    q' = normalise(q + sum over named article types t of (+/-) article_type_boost * e_t)

Both weights are scaled by share**3, where share is how much of the words the labels make up (letters of the named
labels' words over letters of the words, short function words such as "in", "for", "with" left out): "navy blue",
"in red" and "navy blue shirts" are all labels (share 1), while in a product title such as "Puma Men Motorsport Navy
Blue Shirts" the labels are half the words, and the title's other words (brand, line) should decide among the navy
shirts. With a photo, both weights are also scaled by ``with_photo``: the words modify the photo, whose own
similarity should still order the items of the asked colour. Chosen on val products: unscaled terms cost title ->
image recall@10 5 points there, scaled ones none.

The bonus is at most 0: an item surely of the asked colour keeps its cosine, one surely not drops by up to
colour_weight * log(1 / EPS), so the cosine still ranks the items of the asked colour among themselves (a linear bonus
let the posterior's noise reorder them: title -> image recall fell further on val products; docs/text-search.md).

May import: engine/.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.models.colour_head import ColourHead
from engine.text_labels import LabelVocabulary, label_key, label_vocabulary, words

# Words that say how, not what ("in red", "shirts for men"): not counted in the share of a query the labels make up.
FUNCTION_WORDS = frozenset({"a", "an", "and", "but", "for", "in", "it", "of", "on", "or", "s", "the", "this", "to",
                            "with"})


@dataclass(frozen=True)
class LabelTerms:
    """What a query's words ask of the items' posteriors: {article-type dimension of the served vector: weight} and
    (2 * colours,) weights of the items' colour features (``colour_features``; None: no colour named)."""

    article_types: dict[int, float]
    colour_weights: np.ndarray | None
    named: dict[str, list[str]]

    def boost(self, query: np.ndarray) -> np.ndarray:
        """The query vector with the article-type boost, unit length again (unchanged without one)."""
        if not self.article_types:
            return query
        q = np.array(query, np.float32, copy=True)
        for dim, weight in self.article_types.items():
            q[dim] += weight
        n = float(np.linalg.norm(q))
        return (q / n).astype(np.float32) if n > 0 else q


NO_TERMS = LabelTerms({}, None, {})
# Floor of the colour probabilities in the bonus's logarithm: bounds what a surely-other-coloured item loses.
EPS = 0.01


def colour_features(posteriors: np.ndarray) -> np.ndarray:
    """(items, 2 * colours): log((EPS + P) / (1 + EPS)), then log((EPS + 1 - P) / (1 + EPS)), per colour."""
    p = np.asarray(posteriors, np.float32)
    norm = np.log1p(EPS)
    return np.concatenate([np.log(EPS + p) - norm, np.log(EPS + 1 - p) - norm], axis=1).astype(np.float32)


class LabelReader:
    """Reads labels in words for one served model: its article-type classes (where the served vector carries their
    posterior) and the colour head's colours (None: no colour head)."""

    def __init__(self, dim: int, classifier_spec: dict | None, colour_head: ColourHead | None,
                 article_type_boost: float, colour_weight: float, with_photo: float = 1.0) -> None:
        self.types: list[str] = []
        self.type_offset = 0
        if classifier_spec and classifier_spec.get("level") == "article_type" and classifier_spec.get("weight", 0) > 0:
            self.types = list(classifier_spec["classes"])
            self.type_offset = dim - len(self.types)
        self.colour_head = colour_head
        self.colours = list(colour_head.colours) if colour_head is not None else []
        self.vocabulary: LabelVocabulary = label_vocabulary(self.types, self.colours)
        self.article_type_boost = article_type_boost
        self.colour_weight = colour_weight
        self.with_photo = with_photo

    def terms(self, text: str = "", negative_text: str = "", photo: bool = False) -> LabelTerms:
        """The label terms of positive and negative words (labels named in both cancel out); ``photo``: the words
        modify a photo."""
        types: dict[int, float] = {}
        colours = np.zeros(2 * len(self.colours), np.float32)  # asked colours, then colours asked away
        named: dict[str, list[str]] = {}
        for phrase, sign in ((text, 1.0), (negative_text, -1.0)):
            if not phrase:
                continue
            found = self.vocabulary.named(phrase)
            scale = label_share(phrase, [*found.of("article_type"), *found.of("colour")]) ** 3
            scale *= self.with_photo if photo else 1.0
            if self.article_type_boost:
                for name in found.of("article_type"):
                    dim = self.type_offset + self.types.index(name)
                    types[dim] = types.get(dim, 0.0) + sign * self.article_type_boost * scale
            if self.colour_weight:
                for name in found.of("colour"):
                    colours[self.colours.index(name) + (len(self.colours) if sign < 0 else 0)] = \
                        self.colour_weight * scale
            for kind in ("article_type", "colour"):
                named.setdefault(kind, []).extend(("not " if sign < 0 else "") + n for n in found.of(kind))
        types = {d: w for d, w in types.items() if w}
        both = (colours[:len(self.colours)] > 0) & (colours[len(self.colours):] > 0)
        colours[np.concatenate([both, both])] = 0.0
        named = {k: v for k, v in named.items() if v}
        if not types and not colours.any():
            return LabelTerms({}, None, named)
        return LabelTerms(types, colours if colours.any() else None, named)


def label_share(text: str, labels: Sequence[str]) -> float:
    """How much of ``text`` the named ``labels`` make up: letters of their words over letters of the text's words,
    function words left out, at most 1."""
    content = "".join(w for w in words(text) if w not in FUNCTION_WORDS)
    return min(1.0, sum(len(label_key(name)) for name in labels) / len(content)) if content else 0.0


def label_scores(vectors: np.ndarray, query: np.ndarray, features: np.ndarray | None = None,
                 colour_weights: np.ndarray | None = None) -> np.ndarray:
    """(items,) scores of one query: inner products, plus the colour bonus (``features``: ``colour_features`` of the
    same items) when it has one; the same sum as engine.text_metrics.top_k_exact with bonus weights, which evaluation
    ranks by."""
    scores = np.asarray(vectors, np.float32) @ np.asarray(query, np.float32)
    if features is not None and colour_weights is not None:
        scores += features @ colour_weights
    return scores


class ColourFeatures:
    """``colour_features`` of the colour head's posteriors of a served generation's items, computed on first use and
    kept while that generation is served (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[str, ColourHead, np.ndarray] | None = None

    def of(self, generation: str, head: ColourHead, posteriors: Callable[[], np.ndarray]) -> np.ndarray:
        """(items of the generation named ``generation``, 2 * colours) features; ``posteriors()`` gives the head's
        posteriors of its items when they are not cached."""
        with self._lock:
            cached = self._cached
            if cached is None or cached[0] != generation or cached[1] is not head:
                cached = self._cached = (generation, head, colour_features(posteriors()))
            return cached[2]


def colour_weight_rows(terms: Sequence[LabelTerms], width: int) -> np.ndarray:
    """(queries, 2 * colours) colour weights of several queries' terms (zeros where a query names no colour)."""
    out = np.zeros((len(terms), width), np.float32)
    for n, t in enumerate(terms):
        if t.colour_weights is not None:
            out[n] = t.colour_weights
    return out
