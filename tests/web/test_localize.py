"""Street-photo localisation through the QueryEngine on the indexed test catalog (SYNTHETIC street photos)."""

from __future__ import annotations

import csv as csvmod

import numpy as np
from PIL import Image

from indexer.search.query import QueryEngine, QueryOptions


def _street_photos(web_catalog, n: int):
    from indexer.datasets.synthetic import SyntheticConfig, synthesize_street_photo

    settings, csv = web_catalog
    with csv.open(newline="") as fh:
        rows = list(csvmod.DictReader(fh))
    cfg = SyntheticConfig(size=240, min_product_height=0.3, max_product_height=0.45, p_occlusion=0.0)
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        row = rows[(i * 7) % len(rows)]
        product = Image.open(csv.parent / row["image"])
        out.append((row["id"], synthesize_street_photo(product, rng, cfg=cfg)))
    return out


def test_localisation_beats_whole_photo_on_synthetic_street_photos(app, web_catalog):
    """The product pasted small on a cluttered scene ranks higher with crops than with the whole photo alone."""
    from web.runtime import runtime

    engine: QueryEngine = runtime(app).query
    ranks = {"off": [], "auto": []}
    for external_id, photo in _street_photos(web_catalog, 12):
        for mode in ranks:
            result = engine.search(photo, QueryOptions(k=80, localize=mode))
            ids = [h.item["external_id"] for h in result.hits]
            ranks[mode].append(ids.index(external_id) + 1 if external_id in ids else 81)
            if mode == "auto":
                assert result.localized and len(result.regions) >= 6
    mrr = {m: float(np.mean([1 / r for r in v])) for m, v in ranks.items()}
    assert mrr["auto"] > mrr["off"] + 0.1, (mrr, ranks)


def test_detector_boxes_are_searched_as_regions(app, web_catalog):
    from engine.localize import Detection
    from web.runtime import runtime

    class BoxDetector:
        def detect(self, image):
            return [Detection((0.05, 0.1, 0.45, 0.7), "top", 0.9), Detection((0.5, 0.5, 0.98, 0.99), "bag", 0.4)]

    base = runtime(app).query
    engine = QueryEngine(base.service, BoxDetector())
    _, photo = _street_photos(web_catalog, 1)[0]
    result = engine.search(photo, QueryOptions(k=5, localize="crops"))
    detected = [r.region for r in result.regions if r.region.source == "detector"]
    assert [(r.label, r.confidence) for r in detected] == [("top", 0.9), ("bag", 0.4)]
    assert all(r.best_score is not None for r in result.regions)


def test_concurrent_queries_give_the_same_answers(app, web_catalog):
    """Forward passes share one model (and one feature probe): concurrent queries must not mix them up."""
    from concurrent.futures import ThreadPoolExecutor

    from web.runtime import runtime

    engine: QueryEngine = runtime(app).query
    photos = [p for _, p in _street_photos(web_catalog, 6)]

    def answer(photo):
        result = engine.search(photo, QueryOptions(k=5, localize="crops"))
        return [h.id for h in result.hits], [(r.region.source, r.region.box) for r in result.regions]

    sequential = [answer(p) for p in photos]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(answer, photos))
    assert concurrent == sequential


def test_product_shots_go_through_the_served_model_street_photos_through_the_query_embedder(app, web_catalog):
    """With a street encoder (QueryEngine's query_embedder), a photo that looks like a product shot is still embedded
    by the served model, which made the catalog's vectors; a street photo and its regions go through the encoder."""
    from engine.localize import looks_like_product_shot
    from web.runtime import runtime

    class Recording:
        def __init__(self, inner) -> None:
            self.inner, self.images = inner, 0

        def embed_tensors(self, batch):
            self.images += len(batch)
            return self.inner.embed_tensors(batch)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    base = runtime(app).query
    street_model = Recording(base.service.embedder)
    engine = QueryEngine(base.service, None, "auto", query_embedder=street_model)
    settings, csv = web_catalog
    with csv.open(newline="") as fh:
        row = next(csvmod.DictReader(fh))
    shot = Image.open(csv.parent / row["image"]).convert("RGB")
    assert looks_like_product_shot(shot)
    found = engine.search(shot, QueryOptions(k=5))
    assert street_model.images == 0 and found.hits[0].item["external_id"] == row["id"]
    assert found.product_shot and engine.embedder_for(found) is base.service.embedder  # "Why?" explains with it
    _, photo = _street_photos(web_catalog, 1)[0]
    result = engine.search(photo, QueryOptions(k=5))
    assert result.localized and street_model.images >= len(result.regions)
    assert not result.product_shot and engine.embedder_for(result) is street_model
