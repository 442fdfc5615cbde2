"""A running app picks up a new index generation without restart, and never serves a broken one."""

from __future__ import annotations

import csv as csvmod
import io
import json

from tests.web.conftest import build_indexed_catalog, make_test_app
from tests.web.openapi_check import assert_matches


def test_new_generation_is_served_without_restart(tmp_path, small_embedder, openapi_doc):
    from indexer.catalog.source import open_catalog
    from indexer.wiring import create_pipeline, open_store
    from tests.conftest import SHARED_DATA, read_catalog_rows

    settings, csv = build_indexed_catalog(tmp_path, small_embedder, n=30)
    app = make_test_app(settings, small_embedder)
    client = app.test_client()
    before = assert_matches(openapi_doc, "/healthz", "get", client.get("/healthz"))
    assert before["count"] == 30

    # Add a product the running app has never seen, index it: a new generation is published.
    new_row = read_catalog_rows(400, step=7)[-1]
    data = (SHARED_DATA / new_row["image"]).read_bytes()
    (csv.parent / new_row["image"]).write_bytes(data)
    with csv.open("a", newline="") as fh:
        csvmod.DictWriter(fh, fieldnames=list(new_row)).writerow(new_row)
    store = open_store(settings)
    try:
        report = create_pipeline(settings, store, small_embedder, progress=False).run(open_catalog(csv))
    finally:
        store.close()
    assert report.published and report.new == 1

    after = client.get("/healthz").get_json()
    assert after["count"] == 31 and after["generation"] != before["generation"]
    resp = client.post("/api/search", data={"image": (io.BytesIO(data), "new.jpg"), "k": "1"})
    body = assert_matches(openapi_doc, "/api/search", "post", resp)
    assert body["results"][0]["external_id"] == new_row["id"] and body["generation"] == after["generation"]


def test_broken_generation_is_never_served(tmp_path, small_embedder):
    settings, csv = build_indexed_catalog(tmp_path, small_embedder, n=20)
    app = make_test_app(settings, small_embedder)
    client = app.test_client()
    good = client.get("/healthz").get_json()
    index_dir = settings.index_dir
    # A half-written generation made current (as a crash or a bad copy might leave it).
    broken = index_dir / "gen-999999"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({"name": "gen-999999", "count": 20}))
    (broken / "index.faiss").write_bytes(b"\x00" * 100)
    (index_dir / "CURRENT").write_text("gen-999999\n")
    status = client.get("/healthz").get_json()
    assert status["ok"] and status["generation"] == good["generation"] and "gen-999999" in status["warning"]
    data = next((csv.parent / "images").iterdir()).read_bytes()
    resp = client.post("/api/search", data={"image": (io.BytesIO(data), "q.jpg"), "k": "3"})
    assert resp.status_code == 200 and resp.get_json()["generation"] == good["generation"]
