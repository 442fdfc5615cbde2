"""Hostile uploads and parameters: 400 with a human message (413 for oversize bodies), never a 5xx or traceback."""

from __future__ import annotations

import base64
import dataclasses
import io
import json

import pytest

from tests.web.conftest import make_test_app
from tests.web.hostile_corpus import corpus
from tests.web.openapi_check import assert_error, assert_matches

pytestmark = pytest.mark.reliability("hostile")

CORPUS = corpus()


def _check(openapi_doc, resp, expect: str):
    assert resp.status_code < 500, resp.data[:400]
    text = resp.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    if expect == "ok" or (expect == "either" and resp.status_code == 200):
        return assert_matches(openapi_doc, "/api/search", "post", resp)
    message = assert_error(openapi_doc, resp, 400)
    assert len(message) > 10 and message[0].isalpha()
    return message


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize(("name", "data", "expect"), CORPUS, ids=[c[0] for c in CORPUS])
def test_hostile_upload_multipart(client, openapi_doc, name, data, expect):
    resp = client.post("/api/search", data={"image": (io.BytesIO(data), name), "k": "3"})
    _check(openapi_doc, resp, expect)


@pytest.mark.parametrize(("name", "data", "expect"), [c for c in CORPUS if c[2] != "ok"][:12],
                         ids=[c[0] for c in CORPUS if c[2] != "ok"][:12])
def test_hostile_upload_base64(client, openapi_doc, name, data, expect):
    resp = client.post("/api/search", json={"image": base64.b64encode(data).decode(), "k": 3})
    _check(openapi_doc, resp, expect)


def test_messages_say_what_is_wrong(client):
    def message(data, name="x.jpg"):
        return client.post("/api/search", data={"image": (io.BytesIO(data), name)}).get_json()["error"]["message"]

    by_name = {name: data for name, data, _ in CORPUS}
    assert "empty" in message(b"")
    assert "too large" in message(by_name["bomb-png-100000x100000.png"])
    assert "too large" in message(by_name["bomb-png-real-7000x7000.png"])
    assert "JPEG, PNG, WEBP, GIF" in message(by_name["bmp.bmp"])
    assert "corrupt or truncated" in message(by_name["truncated.jpg"])


def test_exif_rotation_is_applied(client, openapi_doc):
    data = dict((n, d) for n, d, _ in CORPUS)["exif-rotated.jpg"]
    body = _check(openapi_doc, client.post("/api/search", data={"image": (io.BytesIO(data), "r.jpg"), "k": "1"}), "ok")
    assert (body["query"]["width"], body["query"]["height"]) == (90, 40)


def _jpeg(web_catalog) -> bytes:
    return next((web_catalog[1].parent / "images").iterdir()).read_bytes()


PARAMETER_CASES = [
    # (id, form fields besides the image, message fragment)
    ("k=0", {"k": "0"}, "k must be between 1 and 200"),
    ("k=-1", {"k": "-1"}, "k must be between 1 and 200"),
    ("k=10^9", {"k": "1000000000"}, "k must be between 1 and 200"),
    ("k=10^30", {"k": "1" + "0" * 30}, "k must be"),
    ("k=abc", {"k": "abc"}, "k must be a whole number"),
    ("k=1.5", {"k": "1.5"}, "k must be a whole number"),
    ("k=1e3", {"k": "1e3"}, "k must be a whole number"),
    ("offset=-1", {"offset": "-1"}, "offset must be between"),
    ("offset+k too deep", {"offset": "990", "k": "20"}, "offset + k"),
    ("threshold=2", {"threshold": "2"}, "between -1 and 1"),
    ("threshold=nan", {"threshold": "nan"}, "finite"),
    ("threshold=inf", {"threshold": "inf"}, "finite"),
    ("threshold=text", {"threshold": "high"}, "threshold must be a number"),
    ("unknown filter column", {"filters": '{"shoe_size": ["42"]}'}, "unknown filter 'shoe_size'"),
    ("filter SQL-ish column", {"filters": '{"gender; DROP TABLE catalog_items": ["x"]}'}, "unknown filter"),
    ("filters not JSON", {"filters": "{gender: Men"}, "filters must be a JSON object"),
    ("filters a list", {"filters": '["gender", "Men"]'}, "filters must be a JSON object"),
    ("filter empty value", {"filters": '{"gender": [""]}'}, "empty value"),
    ("filter value object", {"filters": '{"gender": [{"$ne": 1}]}'}, "values must be strings"),
    ("filter pair without colon", {"filter": "genderMen"}, "column:value"),
    ("crop inverted", {"crop": "0.8,0.8,0.2,0.2"}, "x0 < x1"),
    ("crop outside", {"crop": "0,0,2,2"}, "between 0 and 1"),
    ("crop negative", {"crop": "-0.1,0,0.5,0.5"}, "between 0 and 1"),
    ("crop three numbers", {"crop": "0,0,1"}, "four numbers"),
    ("crop text", {"crop": "a,b,c,d"}, "crop must be a number"),
    ("crop nan", {"crop": "nan,0,1,1"}, "finite"),
    ("crop tiny", {"crop": "0.5,0.5,0.501,0.6"}, "too small"),
    ("localize bogus", {"localize": "maybe"}, "localize must be one of"),
    ("unknown field", {"colour": "red"}, "unknown parameter(s) 'colour'"),
    ("image_url field", {"image_url": "http://127.0.0.1:9/x.jpg"}, "never fetches URLs"),
]


@pytest.mark.parametrize(("fields", "fragment"), [c[1:] for c in PARAMETER_CASES], ids=[c[0] for c in PARAMETER_CASES])
def test_hostile_parameters(client, openapi_doc, web_catalog, fields, fragment):
    resp = client.post("/api/search", data={"image": (io.BytesIO(_jpeg(web_catalog)), "q.jpg"), **fields})
    assert fragment in assert_error(openapi_doc, resp, 400)


BODY_CASES = [
    ("wrong content type", {"data": b"\xff\xd8\xff", "content_type": "image/jpeg"}, "unsupported content type"),
    ("text/plain", {"data": "hello", "content_type": "text/plain"}, "unsupported content type"),
    ("no content type", {"data": b"abc"}, "no content type"),
    ("form-urlencoded", {"data": {"image": "abc"}}, "unsupported content type"),
    ("json malformed", {"data": '{"image": ', "content_type": "application/json"}, "not valid JSON"),
    ("json list", {"json": ["image"]}, "must be an object"),
    ("json no image", {"json": {"k": 3}}, "no photo"),
    ("json image number", {"json": {"image": 12345}}, "base64 string"),
    ("json bad base64", {"json": {"image": "@@@not base64@@@"}}, "not valid base64"),
    ("json empty base64", {"json": {"image": ""}}, "empty"),
    ("json http url", {"json": {"image": "http://127.0.0.1:9/photo.jpg"}}, "never fetches URLs"),
    ("json file url", {"json": {"image": "file:///etc/passwd"}}, "never fetches URLs"),
    ("json protocol-relative url", {"json": {"image": "//example.com/a.jpg"}}, "never fetches URLs"),
    ("json non-base64 data url", {"json": {"image": "data:text/html,<script>alert(1)</script>"}}, "base64 data: URLs"),
    ("json url key", {"json": {"url": "http://example.com/a.jpg"}}, "never fetches URLs"),
    ("json k string", {"json": {"image": "AAAA", "k": "ten"}}, "k must be a whole number"),
    ("json k bool", {"json": {"image": "AAAA", "k": True}}, "k must be a whole number"),
    ("json crop list of 5", {"json": {"image": "AAAA", "crop": [0, 0, 1, 1, 1]}}, "four numbers"),
    ("json crop object", {"json": {"image": "AAAA", "crop": {"x0": 0}}}, "four numbers"),
    ("json filters string", {"json": {"image": "AAAA", "filters": "gender=Men"}}, "JSON object"),
    ("multipart without image", {"data": {"k": "3"}, "content_type": "multipart/form-data"}, "no photo"),
    ("multipart image as text", {"data": {"image": "not a file"}, "content_type": "multipart/form-data"},
     "file part"),
    ("multipart two files", {"data": {"image": [(io.BytesIO(b"a"), "a.jpg"), (io.BytesIO(b"b"), "b.jpg")]}},
     "exactly one file"),
    ("multipart empty file", {"data": {"image": (io.BytesIO(b""), "empty.jpg")}}, "empty"),
]


@pytest.mark.parametrize(("kwargs", "fragment"), [c[1:] for c in BODY_CASES], ids=[c[0] for c in BODY_CASES])
def test_hostile_bodies(client, openapi_doc, kwargs, fragment):
    resp = client.post("/api/search", **kwargs)
    assert fragment in assert_error(openapi_doc, resp, 400)


SIMILAR_CASES = [
    ("k=0", "k=0", "k must be between"),
    ("k=10^9", "k=1000000000", "k must be between"),
    ("unknown filter", "filter=shoe_size:42", "unknown filter"),
    ("bad filters json", "filters=%7Bnope", "JSON object"),
    ("threshold nan", "threshold=nan", "finite"),
    ("unknown parameter", "url=http://x/", "never fetches URLs"),
]


@pytest.mark.parametrize(("query", "fragment"), [c[1:] for c in SIMILAR_CASES], ids=[c[0] for c in SIMILAR_CASES])
def test_hostile_similar_parameters(client, openapi_doc, query, fragment):
    resp = client.get(f"/api/items/1/similar?{query}")
    assert fragment in assert_error(openapi_doc, resp, 400)


@pytest.fixture(scope="module")
def small_limit_app(web_settings, small_embedder):
    settings = dataclasses.replace(web_settings, web=dataclasses.replace(web_settings.web, max_upload_mb=1))
    return make_test_app(settings, small_embedder)


def test_oversize_bodies_get_413(small_limit_app, openapi_doc):
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    client = small_limit_app.test_client()
    big = b"\xff\xd8\xff" + b"\x00" * (1024 * 1024 + 10)
    # Encoded in memory (the test client would spool a big multipart body to a temp file it never closes).
    boundary, multipart = encode_multipart({"image": FileStorage(io.BytesIO(big), "big.jpg")})
    multipart_type = f"multipart/form-data; boundary={boundary}"
    resp = client.post("/api/search", data=multipart, content_type=multipart_type)
    assert "limit is 1 MB" in assert_error(openapi_doc, resp, 413)
    resp = client.post("/api/search", json={"image": base64.b64encode(big).decode()})
    assert_error(openapi_doc, resp, 413)
    # No Content-Length (chunked): the limit holds while reading.
    body = json.dumps({"image": base64.b64encode(big).decode()}).encode()
    resp = client.post("/api/search", input_stream=io.BytesIO(body), content_type="application/json",
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert_error(openapi_doc, resp, 413)
    # Pages answer 413 too (as HTML).
    resp = client.post("/search", data=multipart, content_type=multipart_type)
    assert resp.status_code == 413 and b"1 MB" in resp.data
    resp = client.post("/api/search", input_stream=io.BytesIO(multipart), content_type=multipart_type,
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert_error(openapi_doc, resp, 413)
