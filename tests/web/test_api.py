"""The JSON API against a small indexed catalog: every response checked against the OpenAPI document."""

from __future__ import annotations

import base64
import io
import json
from collections import Counter

import pytest
from openapi_spec_validator import validate as validate_spec
from PIL import Image

from tests.web.openapi_check import assert_error, assert_matches


def image_bytes(row: dict, csv_dir) -> bytes:
    return (csv_dir / row["image"]).read_bytes()


@pytest.fixture(scope="module")
def csv_dir(web_catalog):
    return web_catalog[1].parent


def test_openapi_document_is_valid_openapi_3_1(openapi_doc):
    validate_spec(openapi_doc)
    assert openapi_doc["openapi"].startswith("3.1")
    assert {"/api/search", "/api/items/{item_id}", "/api/items/{item_id}/similar", "/healthz"} <= set(
        openapi_doc["paths"])


def test_healthz_matches_document(client, openapi_doc):
    body = assert_matches(openapi_doc, "/healthz", "get", client.get("/healthz"))
    assert body["ok"] and body["count"] == 80


def test_search_multipart_finds_own_item_first(client, openapi_doc, catalog_rows, csv_dir):
    row = catalog_rows[3]
    resp = client.post("/api/search", data={"image": (io.BytesIO(image_bytes(row, csv_dir)), "q.jpg"), "k": "5"})
    body = assert_matches(openapi_doc, "/api/search", "post", resp)
    assert resp.headers["Cache-Control"] == "no-store"
    assert len(body["results"]) == 5 and body["has_more"]
    top = body["results"][0]
    assert top["external_id"] == row["id"] and top["score"] > 0.99
    assert top["title"] == row["title"] and top["article_type"] == row["article_type"]
    assert top["thumb_url"] == f"/items/{top['id']}/thumb" and top["item_url"] == f"/items/{top['id']}"
    # A catalog photo is a product shot: searched whole, not localised.
    assert body["query"]["localized"] is False and [r["source"] for r in body["regions"]] == ["whole"]
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_search_json_base64_equals_multipart(client, openapi_doc, catalog_rows, csv_dir):
    data = image_bytes(catalog_rows[7], csv_dir)
    multipart = client.post("/api/search", data={"image": (io.BytesIO(data), "q.jpg"), "k": "6"}).get_json()
    for encoded in (base64.b64encode(data).decode(), "data:image/jpeg;base64," + base64.b64encode(data).decode(),
                    base64.urlsafe_b64encode(data).decode().rstrip("=")):
        resp = client.post("/api/search", json={"image": encoded, "k": 6})
        body = assert_matches(openapi_doc, "/api/search", "post", resp)
        assert [r["id"] for r in body["results"]] == [r["id"] for r in multipart["results"]]


def test_filters_are_applied_inside_the_search(client, openapi_doc, catalog_rows, csv_dir):
    """A selective filter returns every matching item (up to k), not a post-filtered top-k."""
    counts = Counter(r["article_type"] for r in catalog_rows)
    rare, n_rare = min(((a, n) for a, n in counts.items() if n >= 2), key=lambda t: t[1])
    # Query with an item of another type so the rare type is not among its nearest neighbours by chance.
    query = next(r for r in catalog_rows if r["article_type"] != rare)
    resp = client.post("/api/search", data={"image": (io.BytesIO(image_bytes(query, csv_dir)), "q.jpg"), "k": "50",
                                            "filters": json.dumps({"article_type": [rare]})})
    body = assert_matches(openapi_doc, "/api/search", "post", resp)
    assert len(body["results"]) == n_rare
    assert {r["article_type"] for r in body["results"]} == {rare}
    assert body["query"]["filters"] == {"article_type": [rare]}
    # The same through repeated column:value pairs, and OR within a column.
    other = next(a for a in counts if a != rare)
    resp = client.post("/api/search", data={"image": (io.BytesIO(image_bytes(query, csv_dir)), "q.jpg"), "k": "80",
                                            "filter": [f"article_type:{rare}", f"article_type:{other}"]})
    body = assert_matches(openapi_doc, "/api/search", "post", resp)
    assert len(body["results"]) == n_rare + counts[other]


def test_threshold_offset_and_load_more(client, openapi_doc, catalog_rows, csv_dir):
    data = image_bytes(catalog_rows[0], csv_dir)

    def search(**params):
        resp = client.post("/api/search", data={"image": (io.BytesIO(data), "q.jpg"), **params})
        return assert_matches(openapi_doc, "/api/search", "post", resp)

    first = search(k="10")
    page1, page2 = search(k="5"), search(k="5", offset="5")
    assert [r["id"] for r in page1["results"] + page2["results"]] == [r["id"] for r in first["results"]]
    cut = first["results"][4]["score"] - 1e-5  # scores are rounded to 6 decimals
    above = search(k="10", threshold=str(cut))
    assert [r["id"] for r in above["results"]] == [r["id"] for r in first["results"][:5]]
    assert all(r["score"] >= cut for r in above["results"]) and first["results"][5]["score"] < cut
    last = search(k="10", offset="75")
    assert len(last["results"]) == 5 and not last["has_more"]


def test_crop_searches_only_the_box(client, openapi_doc, catalog_rows, csv_dir):
    """Two products side by side: cropping either half finds that product first."""
    left_row, right_row = catalog_rows[10], catalog_rows[20]
    left = Image.open(csv_dir / left_row["image"]).convert("RGB")
    right = Image.open(csv_dir / right_row["image"]).convert("RGB").resize(left.size)
    pair = Image.new("RGB", (left.width * 2, left.height), "white")
    pair.paste(left, (0, 0))
    pair.paste(right, (left.width, 0))
    buf = io.BytesIO()
    pair.save(buf, "PNG")
    for crop, row in (("0,0,0.5,1", left_row), ([0.5, 0, 1, 1], right_row)):
        resp = client.post("/api/search", json={"image": base64.b64encode(buf.getvalue()).decode(), "k": 3,
                                                "crop": crop})
        body = assert_matches(openapi_doc, "/api/search", "post", resp)
        assert body["results"][0]["external_id"] == row["id"]
        assert [r["source"] for r in body["regions"]] == ["user"] and body["query"]["crop"] is not None


def test_street_photo_is_localised(client, openapi_doc, catalog_rows, csv_dir):
    import numpy as np

    from indexer.datasets.synthetic import SyntheticConfig, synthesize_street_photo

    product = Image.open(csv_dir / catalog_rows[5]["image"])
    photo = synthesize_street_photo(product, np.random.default_rng(3),
                                    cfg=SyntheticConfig(size=240, min_product_height=0.3, max_product_height=0.45))
    buf = io.BytesIO()
    photo.save(buf, "JPEG")
    resp = client.post("/api/search", data={"image": (io.BytesIO(buf.getvalue()), "street.jpg"), "k": "8"})
    body = assert_matches(openapi_doc, "/api/search", "post", resp)
    assert body["query"]["localized"] is True
    sources = [r["source"] for r in body["regions"]]
    assert sources[0] == "whole" and "grid" in sources and len(sources) >= 6
    assert sum(r["hits"] for r in body["regions"]) == len(body["results"]) == 8
    assert all(0 <= r["region"] < len(sources) for r in body["results"])
    off = client.post("/api/search", data={"image": (io.BytesIO(buf.getvalue()), "s.jpg"), "k": "8",
                                           "localize": "off"}).get_json()
    assert [r["source"] for r in off["regions"]] == ["whole"]


def test_item_and_similar(client, openapi_doc, catalog_rows):
    body = assert_matches(openapi_doc, "/api/items/{item_id}", "get", client.get("/api/items/1"))
    assert body["id"] == 1 and body["external_id"] == catalog_rows[0]["id"]
    resp = client.get("/api/items/1/similar?k=4")
    sim = assert_matches(openapi_doc, "/api/items/{item_id}/similar", "get", resp)
    assert len(sim["results"]) == 4 and 1 not in [r["id"] for r in sim["results"]]
    gender = catalog_rows[0]["gender"] or "Men"
    resp = client.get(f"/api/items/1/similar?k=50&filter=gender:{gender}")
    sim = assert_matches(openapi_doc, "/api/items/{item_id}/similar", "get", resp)
    expected = sum(1 for r in catalog_rows[1:] if r["gender"] == gender)
    assert len(sim["results"]) == min(50, expected) and {r["gender"] for r in sim["results"]} == {gender}
    page = client.get("/api/items/1/similar?k=2&offset=2").get_json()
    assert [r["id"] for r in page["results"]] == [r["id"] for r in client.get(
        "/api/items/1/similar?k=4").get_json()["results"][2:]]


def test_filters_endpoint(client, openapi_doc, catalog_rows):
    body = assert_matches(openapi_doc, "/api/filters", "get", client.get("/api/filters"))
    assert "article_type" in body["columns"]
    assert set(body["values"]["article_type"]) == {r["article_type"] for r in catalog_rows if r["article_type"]}


@pytest.mark.parametrize(("method", "url", "status"), [
    ("get", "/api/items/999999", 404),
    ("get", "/api/items/99999999999999999999999999", 404),
    ("get", "/api/items/-1", 404),
    ("get", "/api/items/abc", 404),
    ("get", "/api/items/999999/similar", 404),
    ("get", "/api/nothing-here", 404),
    ("get", "/api/", 404),
    ("get", "/api/search", 405),
    ("put", "/api/search", 405),
    ("delete", "/api/items/1", 405),
    ("post", "/api/items/1/similar", 405),
])
def test_errors_use_the_envelope(client, openapi_doc, method, url, status):
    resp = getattr(client, method)(url)
    message = assert_error(openapi_doc, resp, status)
    assert message[0].isalpha()
    if status == 405:
        assert resp.headers["Allow"]


def test_unexpected_exception_is_a_500_envelope_without_details(app, openapi_doc, monkeypatch):
    from web.runtime import runtime

    def boom(*_a, **_k):
        raise RuntimeError("secret internal detail /srv/x.py")

    monkeypatch.setattr(runtime(app).store, "get_items", boom)
    resp = app.test_client().get("/api/items/1")
    message = assert_error(openapi_doc, resp, 500)
    assert "secret" not in resp.get_data(as_text=True) and "logged" in message
    page = app.test_client().get("/items/1")
    assert page.status_code == 500 and b"secret" not in page.data and b"Traceback" not in page.data
