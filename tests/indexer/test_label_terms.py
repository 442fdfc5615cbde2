"""Label terms of word queries (indexer/search/label_terms.py): the article-type boost lands on the named class's
dimension of the posterior block, the colour bonus on the named colour, negative words subtract, and the scores the
served path ranks by equal the ones evaluation ranks by."""

from __future__ import annotations

import numpy as np

from engine.models.colour_head import ColourHead
from engine.text_metrics import top_k_exact
from indexer.search.label_terms import (
    NO_TERMS,
    LabelReader,
    colour_features,
    colour_weight_rows,
    label_scores,
    label_share,
)

TYPES = ["Shirts", "Tshirts", "Jeans"]
SPEC = {"level": "article_type", "classes": TYPES, "weight": 0.1}
DIM = 8 + len(TYPES)


def reader(boost: float = 2.0, colour: float = 0.5) -> LabelReader:
    return LabelReader(DIM, SPEC, ColourHead(DIM, ["Navy Blue", "Red"], hidden=4, layers=1), boost, colour)


def test_named_article_type_boosts_its_dimension_and_stays_unit() -> None:
    terms = reader().terms("navy blue t-shirts")
    assert terms.article_types == {8 + 1: 2.0}
    assert terms.colour_weights.tolist() == [0.5, 0.0, 0.0, 0.0]  # asked colours, then colours asked away
    assert terms.named == {"article_type": ["Tshirts"], "colour": ["Navy Blue"]}
    q = np.zeros(DIM, np.float32)
    q[0] = 1.0
    boosted = terms.boost(q)
    assert np.isclose(np.linalg.norm(boosted), 1.0) and boosted[9] > 0.8 and boosted[10] == 0


def test_negative_words_subtract_and_cancel() -> None:
    terms = reader().terms("jeans", negative_text="red")
    assert terms.article_types == {10: 2.0} and terms.colour_weights.tolist() == [0.0, 0.0, 0.0, 0.5]
    assert terms.named == {"article_type": ["Jeans"], "colour": ["not Red"]}
    assert reader().terms("red jeans", negative_text="red").colour_weights is None


def test_colour_bonus_is_a_log_probability_at_most_zero() -> None:
    f = colour_features(np.array([[1.0, 0.0], [0.5, 0.5]], np.float32))
    assert np.allclose(f[0], [0.0, np.log(0.01 / 1.01), np.log(0.01 / 1.01), 0.0], atol=1e-6)
    assert (f <= 0).all() and np.isclose(f[1, 0], np.log(0.51 / 1.01))


def test_no_labels_no_terms_and_zero_weights_turn_them_off() -> None:
    q = np.eye(DIM, dtype=np.float32)[0]
    assert reader().terms("something for a wedding").article_types == {}
    assert NO_TERMS.boost(q) is q
    off = reader(boost=0.0, colour=0.0).terms("navy blue shirts")
    assert off.article_types == {} and off.colour_weights is None
    # a served model without an article-type posterior: types are not labels it can boost
    assert LabelReader(DIM, None, None, 2.0, 0.5).terms("shirts").article_types == {}


def test_served_scores_rank_as_evaluation_does() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, DIM)).astype(np.float32)
    posteriors = rng.dirichlet([1, 1], 50).astype(np.float32)
    features = colour_features(posteriors)
    r = reader(colour=5.0)
    texts = ["red shirts", "navy blue", "jeans"]
    terms = [r.terms(t) for t in texts]
    queries = np.stack([t.boost(q) for t, q in zip(terms, rng.normal(size=(3, DIM)).astype(np.float32),
                                                  strict=True)])
    ranked = top_k_exact(queries, vectors, 5, bonus_weights=colour_weight_rows(terms, 4), bonus_features=features)
    for n, t in enumerate(terms):
        scores = label_scores(vectors, queries[n], features if t.colour_weights is not None else None,
                              t.colour_weights)
        assert ranked[n].tolist() == np.argsort(-scores)[:5].tolist()
    # the colour bonus changes the ranking: "red" favours items the head calls red
    plain = top_k_exact(queries[:1], vectors, 5)[0]
    assert posteriors[ranked[0], 1].mean() > posteriors[plain, 1].mean()


def test_labels_weigh_by_how_much_of_the_words_they_make_up() -> None:
    assert label_share("in navy blue", ["Navy Blue"]) == 1.0
    assert label_share("shirts for men", ["Shirts"]) == 5 / 8
    assert label_share("", []) == 0.0
    title = reader().terms("Puma Men Motorsport Navy Blue Shirts")
    share = (8 + 5) / len("pumamenmotorsportnavyblueshirt")
    assert np.isclose(title.article_types[8], 2.0 * share**3) and np.isclose(title.colour_weights[0], 0.5 * share**3)
    # words that modify a photo: the labels count with_photo times as much
    r = LabelReader(DIM, SPEC, ColourHead(DIM, ["Navy Blue", "Red"], hidden=4, layers=1), 2.0, 0.5, with_photo=0.25)
    assert r.terms("in red", photo=True).colour_weights[1] == 0.125 and r.terms("in red").colour_weights[1] == 0.5
