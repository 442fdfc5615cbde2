"""Detected garments through the API (`POST /api/search` -> `garments`, `default_garment`): each garment searched on
its own, the default answer is the garment the shopper most likely means, no grid crop when garments are found, grid
crops when none are, a client's crop box and product shots as before. A scripted detector stands in for the trained
one (its boxes are where the test pasted the products); responses are checked against the OpenAPI document."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from engine.localize import Detection
from tests.web.conftest import make_test_app
from tests.web.openapi_check import assert_matches

# Where the scene below pastes its two products, relative to the 400 x 300 photo.
TOP_BOX = (0.3, 0.1, 0.75, 0.7)
SHOE_BOX = (0.02, 0.72, 0.27, 0.97)


class ScriptedDetector:
    def __init__(self, found):
        self.found = found
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        return list(self.found)


@pytest.fixture(scope="module")
def garment_app(web_settings, small_embedder):
    """An app of its own (its QueryEngine gets the scripted detector; the shared app keeps none)."""
    from web.runtime import runtime

    app = make_test_app(web_settings, small_embedder)
    detector = ScriptedDetector([Detection(TOP_BOX, "topwear", 0.9), Detection(SHOE_BOX, "footwear", 0.6)])
    runtime(app).query.detector = detector
    return app, detector


def _scene(catalog_rows, csv_dir) -> tuple[bytes, str, str]:
    """A 400 x 300 street-like photo: a busy background, product A large in the middle, product B small bottom-left."""
    a, b = catalog_rows[3], catalog_rows[11]
    photo = Image.new("RGB", (400, 300), (90, 110, 80))
    draw = ImageDraw.Draw(photo)
    for i in range(0, 400, 23):
        draw.line((i, 0, 400 - i, 300), fill=(40 + i % 100, 60, 120), width=3)
    for row, box in ((a, TOP_BOX), (b, SHOE_BOX)):
        x0, y0, x1, y1 = (round(box[0] * 400), round(box[1] * 300), round(box[2] * 400), round(box[3] * 300))
        with Image.open(csv_dir / row["image"]) as img:
            photo.paste(img.convert("RGB").resize((x1 - x0, y1 - y0)), (x0, y0))
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=92)
    return buf.getvalue(), a["id"], b["id"]


def _post(app, data: bytes, **fields):
    return app.test_client().post("/api/search", data={"image": (io.BytesIO(data), "scene.jpg"), **fields})


def test_every_garment_gets_its_results_and_the_default_is_the_central_one(garment_app, openapi_doc, catalog_rows,
                                                                           web_catalog):
    app, detector = garment_app
    data, top_id, shoe_id = _scene(catalog_rows, web_catalog[1].parent)
    body = assert_matches(openapi_doc, "/api/search", "post", _post(app, data, k="8"))
    garments = body["garments"]
    assert [(g["slot"], g["confidence"]) for g in garments] == [("topwear", 0.9), ("footwear", 0.6)]
    assert [g["box"] for g in garments] == [list(TOP_BOX), list(SHOE_BOX)]
    # Each garment's own search finds its own product first (its crop is the product, padded).
    assert garments[0]["results"][0]["external_id"] == top_id
    assert garments[1]["results"][0]["external_id"] == shoe_id
    assert all(len(g["results"]) == 8 for g in garments)
    # The large, central, confident top is the default answer: its results lead, from its own region.
    assert body["default_garment"] == 0 and garments[0]["focus"] > garments[1]["focus"]
    assert body["results"][0]["id"] == garments[0]["results"][0]["id"]
    assert body["results"][0]["region"] == garments[0]["region"]
    # No grid crop was searched, so no background cell can outrank a garment.
    assert [r["source"] for r in body["regions"]] == ["whole", "detector", "detector"]
    assert body["query"]["localized"] is True and "detect" in body["timing_ms"]


def test_grid_crops_when_nothing_is_detected_and_the_crop_box_wins(garment_app, openapi_doc, catalog_rows,
                                                                   web_catalog):
    app, detector = garment_app
    data, _, shoe_id = _scene(catalog_rows, web_catalog[1].parent)
    found = detector.found
    try:
        detector.found = []
        body = assert_matches(openapi_doc, "/api/search", "post", _post(app, data, k="5"))
        assert body["garments"] == [] and body["default_garment"] is None
        assert "grid" in {r["source"] for r in body["regions"]}
    finally:
        detector.found = found
    crop = ",".join(str(v) for v in SHOE_BOX)
    body = assert_matches(openapi_doc, "/api/search", "post", _post(app, data, k="5", crop=crop))
    assert body["garments"] == [] and [r["source"] for r in body["regions"]] == ["user"]
    assert body["results"][0]["external_id"] == shoe_id
    # localize=crops keeps today's grid + activation crops, with detector boxes as extra regions.
    body = assert_matches(openapi_doc, "/api/search", "post", _post(app, data, k="5", localize="crops"))
    assert body["garments"] == [] and {"grid", "detector"} <= {r["source"] for r in body["regions"]}


def test_product_shots_keep_their_fast_path(garment_app, openapi_doc, catalog_rows, web_catalog):
    app, detector = garment_app
    before = detector.calls
    row = catalog_rows[5]
    body = assert_matches(openapi_doc, "/api/search", "post",
                          _post(app, (web_catalog[1].parent / row["image"]).read_bytes(), k="3"))
    assert detector.calls == before  # never ran
    assert body["garments"] == [] and [r["source"] for r in body["regions"]] == ["whole"]
    assert body["results"][0]["external_id"] == row["id"]


def test_garment_answer_rule():
    """The default garment's results lead; the whole photo steps in only when clearly better; then best evidence."""
    from indexer.search.query import garment_answer
    from indexer.search.service import Hit

    def hits(*pairs):
        return [Hit(i, s, {}) for i, s in pairs]

    whole = hits((7, 0.80), (1, 0.70), (9, 0.97))
    top = hits((1, 0.90), (2, 0.85), (3, 0.60))
    shoe = hits((4, 0.97), (5, 0.50))
    ranked = garment_answer([whole, top, shoe], garment=1, head_n=3, margin=0.05)
    # 9 (whole 0.97) beats the garment's best by more than the margin; 7 (0.80) does not beat 2 (0.85) + margin.
    assert [(i, r) for i, _, r in ranked[:3]] == [(9, 0), (1, 1), (2, 1)]
    # Then everything else by best evidence: the shoe's 4 (0.97) first, though no garment ranks it above the head.
    assert [i for i, _, _ in ranked[3:]] == [4, 7, 3, 5]
    assert [round(s, 2) for _, s, _ in ranked] == [0.97, 0.9, 0.85, 0.97, 0.8, 0.6, 0.5]
    # Without a margin the whole photo is one more region of the head.
    assert [i for i, _, _ in garment_answer([whole, top, shoe], garment=1, head_n=2, margin=1.0)][:2] == [1, 2]
