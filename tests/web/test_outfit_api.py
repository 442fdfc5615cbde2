"""Outfit endpoints and the item page's "Complete the look" panel, validated against the OpenAPI document."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from indexer.outfits.catalog import item_taxonomy
from indexer.outfits.wiring import outfit_rules
from indexer.wiring import open_store
from tests.outfit_fixtures import outfit_catalog
from tests.web.conftest import make_test_app
from tests.web.openapi_check import assert_error, assert_matches


@pytest.fixture(scope="module")
def fixture(tmp_path_factory, shared_data, small_embedder):
    return outfit_catalog(tmp_path_factory, small_embedder)


@pytest.fixture(scope="module")
def outfit_app(fixture, small_embedder):
    return make_test_app(fixture.settings, small_embedder)


@pytest.fixture
def oclient(outfit_app):
    return outfit_app.test_client()


@pytest.fixture(scope="module")
def doc(outfit_app):
    return outfit_app.test_client().get("/api/openapi.json").get_json()


@pytest.fixture(scope="module")
def by_slot(fixture):
    rules = outfit_rules(fixture.settings)
    store = open_store(fixture.settings)
    try:
        tax = item_taxonomy(store)
        paths = {i: store.image_path(i) for i in tax}
    finally:
        store.close()
    out: dict[str | None, list[int]] = {}
    for i, t in sorted(tax.items()):
        out.setdefault(rules.slot_of(t), []).append(i)
    return out, paths


def test_item_outfit(oclient, doc, by_slot):
    slots, _ = by_slot
    top = slots["topwear"][0]
    body = assert_matches(doc, "/api/items/{item_id}/outfit", "get", oclient.get(f"/api/items/{top}/outfit"))
    assert body["query"]["slot"] == "topwear" and body["query"]["item"] == top
    assert [s["slot"] for s in body["slots"]] == ["bottomwear", "footwear", "bag", "accessory"]
    assert [s["label"] for s in body["slots"]] == ["Bottom", "Shoes", "Bag", "Accessory"]
    assert len(body["outfit"]) == 4 and body["model"]["proxy"] is True
    for s in body["slots"]:
        assert 1 <= len(s["items"]) <= 4 and all(i["id"] in slots[s["slot"]] for i in s["items"])
        assert all(i["item_url"] == f"/items/{i['id']}" for i in s["items"])
    body = assert_matches(doc, "/api/items/{item_id}/outfit", "get",
                          oclient.get(f"/api/items/{top}/outfit?per_slot=2&filter=gender:Women"))
    assert all(len(s["items"]) <= 2 for s in body["slots"]) and body["query"]["filters"] == {"gender": ["Women"]}
    assert all(i["gender"] == "Women" for s in body["slots"] for i in s["items"])


@pytest.mark.parametrize(("query", "status", "message"), [
    ("?per_slot=0", 400, "per_slot"),
    ("?per_slot=abc", 400, "per_slot"),
    ("?k=3", 400, "unknown parameter"),
    ("?filters=notjson", 400, "filters"),
    ("?filter=nosuchcolumn:x", 400, "unknown filter"),
])
def test_item_outfit_bad_parameters(oclient, doc, by_slot, query, status, message):
    top = by_slot[0]["topwear"][0]
    assert message in assert_error(doc, oclient.get(f"/api/items/{top}/outfit{query}"), status)


def test_unknown_item_is_404(oclient, doc):
    assert_error(doc, oclient.get("/api/items/999999999/outfit"), 404)
    assert_error(doc, oclient.get(f"/api/items/{2**70}/outfit"), 404)


def test_photo_outfit_multipart_and_json(oclient, doc, by_slot):
    slots, paths = by_slot
    shoe = slots["footwear"][0]
    data = Path(paths[shoe]).read_bytes()
    resp = oclient.post("/api/outfit", data={"image": (io.BytesIO(data), "shoe.jpg"), "slot": "footwear",
                                             "crop": "0,0,1,1", "per_slot": "3"},
                        content_type="multipart/form-data")
    body = assert_matches(doc, "/api/outfit", "post", resp)
    assert body["query"]["slot"] == "footwear" and body["query"]["slot_source"] == "client"
    assert body["query"]["crop"] == [0.0, 0.0, 1.0, 1.0] and body["query"]["item"] is None
    assert [s["slot"] for s in body["slots"]] == ["topwear", "bottomwear", "bag", "accessory"]
    resp = oclient.post("/api/outfit", json={"image": base64.b64encode(data).decode(),
                                             "filters": {"gender": ["Men", "Unisex"]}})
    body = assert_matches(doc, "/api/outfit", "post", resp)
    assert body["query"]["slot_source"] == "classifier" and 0 < body["query"]["slot_confidence"] <= 1
    assert all(i["gender"] in ("Men", "Unisex") for s in body["slots"] for i in s["items"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"json": {"image": ""}}, "empty"),
    ({"json": {"k": 3}}, "unknown parameter"),
    ({"json": {"per_slot": 2}}, "no photo"),
    ({"json": {"image": base64.b64encode(b"not an image").decode()}}, "could not read the photo"),
    ({"json": {"image": "https://example.com/a.jpg"}}, "never fetches"),
    ({"data": json.dumps({"image": "x"}), "content_type": "text/plain"}, "unsupported content type"),
])
def test_photo_outfit_bad_requests(oclient, doc, kwargs, message):
    assert message in assert_error(doc, oclient.post("/api/outfit", **kwargs), 400)


def test_photo_outfit_bad_slot_and_crop(oclient, doc, by_slot):
    slots, paths = by_slot
    data = base64.b64encode(Path(paths[slots["footwear"][0]]).read_bytes()).decode()
    assert "unknown slot" in assert_error(doc, oclient.post("/api/outfit", json={"image": data, "slot": "hat"}), 400)
    assert "crop" in assert_error(doc, oclient.post("/api/outfit", json={"image": data, "crop": [0.5, 0, 0.2, 1]}),
                                  400)


def test_item_page_shows_a_complete_outfit(oclient, by_slot):
    slots, _ = by_slot
    top = slots["topwear"][0]
    html = oclient.get(f"/items/{top}").get_data(as_text=True)
    assert "Complete the look" in html and "proxy outfits" in html
    look = html.split('aria-label="A complete outfit"', 1)[1].split("</ol>", 1)[0]
    assert [s for s in ("bottomwear", "footwear", "bag", "accessory") if f'data-slot="{s}"' in look] == \
        ["bottomwear", "footwear", "bag", "accessory"]
    assert look.count('class="outfit-piece"') == 4


def test_without_an_outfit_model_the_api_says_so_and_pages_still_work(fixture, small_embedder, tmp_path, by_slot):
    import dataclasses

    settings = dataclasses.replace(fixture.settings, outfit=dataclasses.replace(
        fixture.settings.outfit, checkpoint=str(tmp_path / "missing.pt")))
    app = make_test_app(settings, small_embedder)
    client = app.test_client()
    doc = client.get("/api/openapi.json").get_json()
    top = by_slot[0]["topwear"][0]
    message = assert_error(doc, client.get(f"/api/items/{top}/outfit"), 503)
    assert "train-outfits" in message
    page = client.get(f"/items/{top}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Outfits are not available" in html
    assert str(tmp_path) not in html, "server paths are for the log, not the shopper"


def test_warm_up_builds_the_outfit_state_or_logs_why_not(outfit_app, fixture, small_embedder, tmp_path, caplog):
    import dataclasses
    import logging

    from web.outfits.routes import outfit_service, warm_up_outfits

    with caplog.at_level(logging.INFO, logger="web.outfits.routes"):
        warm_up_outfits(outfit_app)
    assert "outfits ready" in caplog.text and outfit_service(outfit_app)._state is not None
    settings = dataclasses.replace(fixture.settings, outfit=dataclasses.replace(
        fixture.settings.outfit, checkpoint=str(tmp_path / "missing.pt")))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="web.outfits.routes"):
        warm_up_outfits(make_test_app(settings, small_embedder))
    assert "outfits unavailable" in caplog.text and "train-outfits" in caplog.text


def test_the_app_caches_catalog_colours_in_the_configured_folder(outfit_app, fixture):
    from web.outfits.routes import outfit_service

    service = outfit_service(outfit_app)
    assert service.cache_dir == fixture.settings.resolve_path(fixture.settings.outfit.cache_dir)
    service.warm_up()
    assert (service.cache_dir / f"colours-b{service.model.colour_bins}.npz").is_file()
