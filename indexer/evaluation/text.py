"""`manage.py evaluate text`: search by words on the public fashion protocol (Marqo's KAGL benchmark), test products.

- Title -> image: each distinct title of a test product is a query; relevant = every gallery item with the identical
  title; gallery = the whole indexed catalog; recall@1, recall@10 (share of the relevant items found), MRR@10.
  Also reported with the titles that occur among train products left out (the tower saw those words).
- Label -> product: the bare label ("Tshirts", "Navy Blue") as the query, precision@1 / @10 of test products carrying
  it, for article_type, sub_category, master_category and base_colour (gallery = the test products).
- Composed: the photo of test product A + "in <colour>" (a colour that A's article type and gender come in, other
  than A's); share of the top 10 (A excluded, whole catalog) with that colour and A's article type (and A's gender).
  The modifier weight is chosen on val products, then reported on test products.

Every query is scored as the served path scores it (indexer/search/query.py): the text tower's vector (composed with
the photo), with the article-type boost and colour bonus of the catalog labels its words name
(indexer/search/label_terms.py). Search here is exact over the served generation's vectors, so numbers do not depend
on the ANN index. The run's details also hold the same queries ranked by the words' vector alone (``vector_only``).

May import: engine/, indexer.search, indexer.store, indexer.vectors, indexer.settings.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.text_metrics import label_precision, title_retrieval, top_k_exact
from indexer.search.composed import CompositionWeights, compose_vector
from indexer.search.label_terms import NO_TERMS, LabelReader, colour_features, colour_weight_rows

LABEL_COLUMNS = ("article_type", "sub_category", "master_category", "base_colour")
MODIFIER_WEIGHTS = (0.0, 0.2, 0.4, 0.6, 0.8)


@dataclass
class Gallery:
    """The served vectors with their items' text (row order of ``vectors``)."""

    ids: np.ndarray
    vectors: np.ndarray
    external_ids: list[str]
    titles: list[str]
    labels: dict[str, list[str | None]]
    gender: list[str | None]


@dataclass
class WordRanker:
    """Ranks word queries over gallery rows as the served path does; without a reader, by the words' vector alone."""

    encode: Callable[[list[str]], np.ndarray]
    reader: LabelReader | None = None
    features: np.ndarray | None = None  # the colour features (label_terms.colour_features) of every gallery row

    def rank(self, texts: Sequence[str], vectors: np.ndarray, k: int, rows: Sequence[int] | None = None,
             photos: np.ndarray | None = None, weights: CompositionWeights | None = None) -> np.ndarray:
        """(len(texts), k) best rows of ``vectors`` (the gallery rows ``rows``; None: all) per text, composed with
        the photo of the same position when ``photos`` is given."""
        encoded = self.encode(list(texts))
        terms = [self.reader.terms(t, photo=photos is not None) if self.reader is not None else NO_TERMS
                 for t in texts]
        queries = encoded if photos is None else np.stack(
            [compose_vector(text=e, photo=p, weights=weights or CompositionWeights())
             for e, p in zip(encoded, photos, strict=True)])
        queries = np.stack([t.boost(q) for t, q in zip(terms, queries, strict=True)]).astype(np.float32)
        features = self.features if rows is None or self.features is None else self.features[list(rows)]
        if features is None or all(t.colour_weights is None for t in terms):
            return top_k_exact(queries, vectors, k)
        return top_k_exact(queries, vectors, k, bonus_weights=colour_weight_rows(terms, features.shape[1]),
                           bonus_features=features)


@dataclass
class TextEvaluation:
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


def load_gallery(store, ids: np.ndarray, vectors: np.ndarray) -> Gallery:  # noqa: ANN001 - Store
    """Hydrate the served generation's rows with titles and taxonomy from SQL (rows SQL lacks are dropped)."""
    items: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 5000):
        items.update(store.get_items([int(i) for i in ids[start:start + 5000]]))
    keep = [n for n, i in enumerate(ids) if int(i) in items]
    rows = [items[int(ids[n])] for n in keep]
    return Gallery(ids[keep], vectors[keep], [str(r["external_id"]) for r in rows], [r["title"] for r in rows],
                   {c: [r.get(c) for r in rows] for c in LABEL_COLUMNS}, [r.get("gender") for r in rows])


def title_to_image(gallery: Gallery, split: dict[str, str], ranker: WordRanker) -> dict[str, float]:
    """Title -> image metrics over test titles, and without the titles that train products also carry."""
    test_titles = sorted({t for e, t in zip(gallery.external_ids, gallery.titles, strict=True)
                          if split.get(e) == "test" and t})
    train_titles = {t for e, t in zip(gallery.external_ids, gallery.titles, strict=True) if split.get(e) == "train"}
    ranked = ranker.rank(test_titles, gallery.vectors, 10)
    out = {f"title_{k}": round(v, 4) for k, v in title_retrieval(ranked, test_titles, gallery.titles).items()}
    unseen = [n for n, t in enumerate(test_titles) if t not in train_titles]
    if unseen:
        sub = title_retrieval(ranked[unseen], [test_titles[n] for n in unseen], gallery.titles)
        out.update({f"title_unseen_{k}": round(v, 4) for k, v in sub.items()})
    out.update({"title_queries": len(test_titles), "title_queries_in_train": len(test_titles) - len(unseen)})
    return out


def label_to_product(gallery: Gallery, split: dict[str, str], ranker: WordRanker, which: str = "test"
                     ) -> dict[str, float]:
    """precision@1 / @10 of bare-label queries over the products of one split."""
    rows = [n for n, e in enumerate(gallery.external_ids) if split.get(e) == which]
    vectors = gallery.vectors[rows]
    out: dict[str, float] = {}
    for column in LABEL_COLUMNS:
        labels = [gallery.labels[column][n] for n in rows]
        queries = sorted({x for x in labels if x})
        if not queries:
            continue
        ranked = ranker.rank(queries, vectors, 10, rows)
        for k, v in label_precision(ranked, queries, labels).items():
            out[f"{column}_{k}"] = round(v, 4)
    return out


def centroid_ceiling(gallery: Gallery, split: dict[str, str], columns: Sequence[str] = ("article_type", "base_colour")
                     ) -> dict[str, float]:
    """Diagnostic, not a text model: precision@1 of test products when each label's query is the mean served vector
    of its train products (minus the train mean). How well the locked image space separates the label by one
    direction; a text tower that learns label -> one vector is unlikely to beat it by much."""
    train = np.array([n for n, e in enumerate(gallery.external_ids) if split.get(e) == "train"])
    test = [n for n, e in enumerate(gallery.external_ids) if split.get(e) == "test"]
    mean = gallery.vectors[train].mean(axis=0)
    out = {}
    for column in columns:
        labels = np.asarray([x or "" for x in gallery.labels[column]], dtype=object)
        queries = sorted({labels[n] for n in test if labels[n]})
        dirs = []
        for label in queries:
            rows = train[labels[train] == label]
            d = gallery.vectors[rows].mean(axis=0) - mean if len(rows) else np.zeros_like(mean)
            dirs.append(d / max(float(np.linalg.norm(d)), 1e-12))
        ranked = top_k_exact(np.stack(dirs).astype(np.float32), gallery.vectors[test], 1)
        out[f"ceiling_{column}_precision@1"] = round(label_precision(ranked, queries, list(labels[test]), (1,))
                                                     ["precision@1"], 4)
    return out


def composed_cases(gallery: Gallery, split: dict[str, str], which: str, n: int, seed: int = 0
                   ) -> list[tuple[int, str]]:
    """(gallery row of product A, asked colour) pairs: a colour A's article type and gender come in (>= 10 catalog
    items) other than A's own, drawn with a seeded generator."""
    combos: Counter[tuple] = Counter(zip(gallery.labels["article_type"], gallery.gender,
                                         gallery.labels["base_colour"], strict=True))
    colours_of: dict[tuple, list[str]] = defaultdict(list)
    for (atype, gender, colour), count in sorted(combos.items(), key=lambda kv: str(kv[0])):
        if atype and colour and count >= 10:
            colours_of[(atype, gender)].append(colour)
    rows = [r for r, e in enumerate(gallery.external_ids) if split.get(e) == which]
    rng = np.random.default_rng(seed)
    cases: list[tuple[int, str]] = []
    for r in rng.permutation(rows):
        key = (gallery.labels["article_type"][r], gallery.gender[r])
        options = [c for c in colours_of.get(key, []) if c != gallery.labels["base_colour"][r]]
        if options:
            cases.append((int(r), options[int(rng.integers(len(options)))]))
        if len(cases) >= n:
            break
    return cases


def composed_share(gallery: Gallery, cases: Sequence[tuple[int, str]], ranker: WordRanker,
                   weights: CompositionWeights) -> dict[str, float]:
    """Share of the top 10 (A excluded) with the asked colour and A's article type (and A's gender); only the query
    count without cases (a catalog too small to have any)."""
    if not cases:
        return {"composed_queries": 0}
    ranked = ranker.rank([f"in {c}" for _, c in cases], gallery.vectors, 11,
                         photos=gallery.vectors[[r for r, _ in cases]], weights=weights)
    type_colour, with_gender, colour_only = [], [], []
    for (r, colour), row in zip(cases, ranked, strict=True):
        top = [g for g in row if g != r][:10]
        atype, gender = gallery.labels["article_type"][r], gallery.gender[r]
        ok = [gallery.labels["base_colour"][g] == colour and gallery.labels["article_type"][g] == atype for g in top]
        type_colour.append(np.mean(ok))
        with_gender.append(np.mean([o and gallery.gender[g] == gender for o, g in zip(ok, top, strict=True)]))
        colour_only.append(np.mean([gallery.labels["base_colour"][g] == colour for g in top]))
    return {"composed_colour_type@10": round(float(np.mean(type_colour)), 4),
            "composed_colour_type_gender@10": round(float(np.mean(with_gender)), 4),
            "composed_colour@10": round(float(np.mean(colour_only)), 4), "composed_queries": len(cases)}


def evaluate_text(gallery: Gallery, split: dict[str, str], ranker: WordRanker, weights: CompositionWeights,
                  n_composed: int = 1000, seed: int = 0) -> TextEvaluation:
    """Every metric of the module docstring; the modifier weight is picked on val products. With label terms (a
    ranker with a reader), the same queries ranked by the words' vector alone go into the details."""
    t0 = time.perf_counter()
    metrics: dict[str, float] = {}
    metrics.update(title_to_image(gallery, split, ranker))
    metrics.update(label_to_product(gallery, split, ranker, "test"))
    val_cases = composed_cases(gallery, split, "val", n_composed, seed)
    sweep = {}
    for w in MODIFIER_WEIGHTS:
        cand = CompositionWeights(**{**weights.__dict__, "modifier": w})
        sweep[w] = composed_share(gallery, val_cases, ranker, cand).get("composed_colour_type@10", 0.0)
    best = max(sweep, key=lambda w: (sweep[w], -abs(w - weights.modifier)))
    chosen = CompositionWeights(**{**weights.__dict__, "modifier": best})
    test_cases = composed_cases(gallery, split, "test", n_composed, seed)
    metrics.update(composed_share(gallery, test_cases, ranker, chosen))
    configured = composed_share(gallery, test_cases, ranker, weights).get("composed_colour_type@10")
    metrics["composed_modifier_weight"] = best
    details: dict[str, Any] = {
        "val_modifier_sweep": {str(k): v for k, v in sweep.items()}, **centroid_ceiling(gallery, split),
        "test_composed_colour_type@10_at_configured_weight": configured, "configured_modifier_weight": weights.modifier,
        "label_terms": {"article_type_boost": weights.article_type, "colour_weight": weights.colour,
                        "with_photo": weights.with_photo,
                        "colours": len(ranker.reader.colours) if ranker.reader else 0,
                        "article_types": len(ranker.reader.types) if ranker.reader else 0}}
    if ranker.reader is not None:
        plain = WordRanker(ranker.encode)
        vector_only = {**title_to_image(gallery, split, plain), **label_to_product(gallery, split, plain, "test")}
        plain_sweep = {w: composed_share(gallery, val_cases, plain, CompositionWeights(
            **{**weights.__dict__, "modifier": w})).get("composed_colour_type@10", 0.0) for w in MODIFIER_WEIGHTS}
        plain_best = max(plain_sweep, key=lambda w: (plain_sweep[w], -abs(w - weights.modifier)))
        vector_only.update(composed_share(gallery, test_cases, plain, CompositionWeights(
            **{**weights.__dict__, "modifier": plain_best})))
        vector_only["composed_modifier_weight"] = plain_best
        details["vector_only"] = vector_only
    details.update({"seconds": round(time.perf_counter() - t0, 1), "n_gallery": len(gallery.ids),
                    "split_counts": dict(Counter(split.get(e, "none") for e in gallery.external_ids))})
    return TextEvaluation(metrics, details)


def split_digest(split: dict[str, str]) -> str:
    """sha256 of the id,split assignment (the dataset identity of a stored text run)."""
    text = "\n".join(f"{k},{split[k]}" for k in sorted(split))
    return hashlib.sha256(text.encode()).hexdigest()


def record_text_run(store, evaluation: TextEvaluation, fingerprint: str, index_spec: str, dataset: str,  # noqa: ANN001
                    dataset_sha256: str, extra: dict[str, Any]) -> int:
    """Store the run (kind "text") for `evaluate runs` and /analytics; returns its id."""
    from indexer.store.tables import EvaluationRun

    run = EvaluationRun(kind="text", model_fingerprint=fingerprint, index_spec=index_spec,
                        dataset_sha256=dataset_sha256, dataset=dataset, metrics=evaluation.metrics,
                        details={**evaluation.details, **extra, "synthetic": False})
    with store.sessions() as s:
        s.add(run)
        s.commit()
        return int(run.id)


def run_text_evaluation(settings, splits_file: str | None = None, n_composed: int = 1000, seed: int = 0,  # noqa: ANN001
                        store_run: bool = True, command: str = "") -> TextEvaluation:
    """`manage.py evaluate text` on the served model, index and text tower; stored as a run unless told not to.

    Raises:
        TextTowerError: no text tower for the served image model.
    """
    from pathlib import Path

    from indexer.catalog.splits import assign_splits, read_splits
    from indexer.embedders import create_embedder_from_settings
    from indexer.search.composed import text_setup_from_settings
    from indexer.wiring import create_search_service, open_store

    store = open_store(settings)
    service = create_search_service(settings, store, create_embedder_from_settings(settings))
    gen, _ = service.served()
    fingerprint = service.embedder.fingerprint
    text_model, weights = text_setup_from_settings(settings)
    encoder = text_model.encoder(fingerprint)
    reader = text_model.label_reader(service.embedder, weights)
    reader = reader if len(reader.vocabulary) else None  # no article types nor colours to read: words alone
    gallery = load_gallery(store, np.asarray(gen.ids), np.asarray(gen.vectors, np.float32))
    features = None
    if reader is not None and reader.colour_head is not None:
        head = reader.colour_head
        descriptors = text_model.item_colours(store, gallery.ids, head.colour_bins) if head.colour_bins else None
        features = colour_features(head.posterior(gallery.vectors, descriptors))
    default = (settings.resolve_path(settings.model.checkpoint).parent / "splits.csv"
               if settings.model.checkpoint else None)
    path = Path(splits_file) if splits_file else default
    split = read_splits(path) if path and path.is_file() else {}
    split.update(assign_splits([e for e in gallery.external_ids if e not in split]))
    evaluation = evaluate_text(gallery, split, WordRanker(encoder.encode, reader, features), weights, n_composed,
                               seed)
    source = path.name if path else "seeded splits"
    dataset = f"text KAGL protocol, test products of {source} ({len(gallery.ids)} items)"
    if text_model.colour_error:
        evaluation.details["colour_head_error"] = text_model.colour_error
    evaluation.details.update({"text_model": {k: v for k, v in encoder.meta.items() if k != "command"},
                               "text_command": encoder.meta.get("command", ""), "runtime": encoder.runtime,
                               "generation": gen.manifest.name, "fingerprint": fingerprint, "dataset": dataset})
    if store_run:
        evaluation.details["run_id"] = record_text_run(store, evaluation, fingerprint, gen.manifest.spec, dataset,
                                                       split_digest(split), {"command": command})
    return evaluation
