"""Curation over a real small indexed catalog (issue 18): the duplicates / audit commands (exit codes, stored runs),
applied label changes recorded and settling an outfit flag, collapse in the API, /api/explain validation against
the OpenAPI document, and the curation pages."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner

from tests.web.conftest import build_indexed_catalog, make_test_app
from tests.web.openapi_check import assert_error, assert_matches

N_ITEMS = 24


@pytest.fixture(scope="module")
def cur(tmp_path_factory, shared_data, small_embedder):
    """(settings, app, ids) of a catalog this module may change (its own database)."""
    settings, _ = build_indexed_catalog(tmp_path_factory.mktemp("curation"), small_embedder, n=N_ITEMS,
                                        curation={"cache_dir": str(tmp_path_factory.mktemp("cur-cache"))})
    from indexer.wiring import open_store

    store = open_store(settings)
    ids = sorted(store.get_items(list(range(1, 1000))))
    store.close()
    return settings, make_test_app(settings, small_embedder), ids


def _run(cmd, settings, *args):
    return CliRunner().invoke(cmd, ["--config", settings.source, *args])


def _audit(settings, *args):
    return CliRunner().invoke(__import__("indexer.curation.cli", fromlist=["audit"]).audit,
                              ["labels", "--config", settings.source, *args])


def test_duplicates_command_stores_a_run_and_exits_2_on_bad_input(cur) -> None:
    from indexer.curation.cli import duplicates_cmd
    from indexer.curation.records import DUPLICATES, VARIANTS, latest_run
    from indexer.wiring import open_store

    settings, _, _ = cur
    assert _run(duplicates_cmd, settings, "--json", "--csv").exit_code == 2
    assert _run(duplicates_cmd, settings, "--threshold", "1.5").exit_code == 2
    result = _run(duplicates_cmd, settings, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["summary"]["items"] == N_ITEMS
    store = open_store(settings)
    try:
        run = latest_run(store, DUPLICATES)
        assert run["id"] == body["run"] and run["summary"]["items"] == N_ITEMS
        assert latest_run(store, VARIANTS) is not None
    finally:
        store.close()
    csv_out = _run(duplicates_cmd, settings, "--csv")
    assert csv_out.exit_code == 0 and csv_out.output.splitlines()[0] == "group,kind,size,score,id"


def test_audit_command_and_apply_are_recorded(cur) -> None:
    from indexer.curation.records import AUDIT, distrusted_labels, label_changes, latest_run, record_run
    from indexer.wiring import open_store

    settings, _, ids = cur
    bad = _audit(settings, "--column", "price")
    assert bad.exit_code == 2 and bad.output.startswith("error: cannot audit"), bad.output
    assert _audit(settings, "--apply", "5=Tshirts").exit_code == 2          # no --column
    assert _audit(settings, "--column", "article_type", "--apply", "x").exit_code == 2
    assert _audit(settings, "--column", "article_type", "--apply", "999999=Tshirts").exit_code == 2
    result = _audit(settings, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["summary"]["items"] == N_ITEMS
    store = open_store(settings)
    try:
        item = store.get_items([ids[0]])[ids[0]]
        # An audit run flagging this item's article_type with high confidence: the outfit slots distrust it ...
        record_run(store, AUDIT, {"suspects": 1}, {"suspects": [
            {"id": ids[0], "column": "article_type", "current": item["article_type"], "suggested": "Belts",
             "confidence": 0.97, "current_probability": 0.0}]})
        assert distrusted_labels(store, ["article_type"], 0.9) == {ids[0]}
        assert distrusted_labels(store, ["article_type"], 0.99) == set()
        applied = _audit(settings, "--column", "article_type", "--apply", f"{ids[0]}=Belts", "--by", "merch")
        assert applied.exit_code == 0, applied.output
        change = label_changes(store)[0]
        assert (change["item_id"], change["column"], change["old_value"], change["new_value"], change["applied_by"]) \
            == (ids[0], "article_type", item["article_type"], "Belts", "merch")
        assert change["run_id"] == latest_run(store, AUDIT)["id"]
        assert store.get_items([ids[0]])[ids[0]]["article_type"] == "Belts"
        # ... until a merchandiser has settled it.
        assert distrusted_labels(store, ["article_type"], 0.9) == set()
    finally:
        store.close()


def test_collapse_in_the_api(cur, openapi_doc) -> None:
    from indexer.curation.records import DUPLICATES, record_run
    from indexer.wiring import open_store

    settings, app, ids = cur
    client = app.test_client()
    store = open_store(settings)
    try:
        plain = client.get(f"/api/items/{ids[0]}/similar?k=10").get_json()["results"]
        grouped = [h["id"] for h in plain[:3]]
        record_run(store, DUPLICATES, {}, {"groups": [{"kind": "near", "size": 3, "score": 0.99, "ids": grouped}]})
    finally:
        store.close()
    resp = client.get(f"/api/items/{ids[0]}/similar?k=10&collapse=duplicates")
    body = assert_matches(openapi_doc, "/api/items/{item_id}/similar", "get", resp)
    assert body["results"][0]["id"] == grouped[0] and body["results"][0]["more_ids"] == grouped[1:]
    assert grouped[1] not in [h["id"] for h in body["results"]]
    assert body["query"]["collapse"] == "duplicates"
    assert_error(openapi_doc, client.get(f"/api/items/{ids[0]}/similar?collapse=everything"), 400)


def test_collapse_in_word_and_thumbs_queries(cur, openapi_doc, small_embedder) -> None:
    """Runs after test_collapse_in_the_api, whose stored group it reads. k covers the whole catalog, so every member
    of the group is in the ranked list: collapsed, exactly one shows, carrying the others."""
    from indexer.curation.records import DUPLICATES, latest_run
    from indexer.wiring import open_store
    from tests.web.test_text_api import train_tiny_tower

    settings, app, _ = cur
    store = open_store(settings)
    try:
        grouped = latest_run(store, DUPLICATES)["details"]["groups"][0]["ids"]
        photo = _jpeg(store.image_path(grouped[0]))
    finally:
        store.close()
    titles = train_tiny_tower(settings, small_embedder, epochs=20)
    client = app.test_client()

    def post(kind: str, collapse: str | None):
        extra = {"collapse": collapse} if collapse else {}
        if kind == "words":
            return client.post("/api/search", json={"text": titles[grouped[0]], "k": N_ITEMS, **extra})
        if kind == "thumbs":
            return client.post("/api/search", json={"positive_ids": [grouped[1]], "k": N_ITEMS, **extra})
        return client.post("/api/search", data={"image": (io.BytesIO(photo), "q.jpg"), "text": "in red",
                                                "k": str(N_ITEMS), **extra}, content_type="multipart/form-data")

    for kind in ("words", "thumbs", "photo + words"):
        plain = post(kind, None).get_json()["results"]
        assert set(grouped) <= {h["id"] for h in plain}, kind
        body = assert_matches(openapi_doc, "/api/search", "post", post(kind, "duplicates"))
        assert body["query"]["collapse"] == "duplicates", kind
        shown = [h for h in body["results"] if h["id"] in grouped]
        assert len(shown) == 1, kind
        assert sorted([shown[0]["id"], *shown[0]["more_ids"]]) == sorted(grouped), kind
        assert len(body["results"]) == len(plain) - (len(grouped) - 1), kind


def _jpeg(item_path: str) -> bytes:
    with open(item_path, "rb") as fh:
        return fh.read()


def test_explain_api(cur, openapi_doc) -> None:
    settings, app, ids = cur
    client = app.test_client()
    resp = client.get(f"/api/explain?query={ids[0]}&item={ids[1]}")
    body = assert_matches(openapi_doc, "/api/explain", "get", resp)
    assert len(body["query"]["heatmap"]) == body["grid"] == 8 and max(map(max, body["item"]["heatmap"])) == 1.0
    grad = assert_matches(openapi_doc, "/api/explain", "get",
                          client.get(f"/api/explain?query={ids[0]}&item={ids[1]}&method=gradient"))
    assert grad["method"] == "gradient" and abs(grad["score"] - body["score"]) < 1e-3
    assert_error(openapi_doc, client.get(f"/api/explain?item={ids[1]}"), 400)
    assert_error(openapi_doc, client.get(f"/api/explain?query=abc&item={ids[1]}"), 400)
    assert_error(openapi_doc, client.get(f"/api/explain?query={ids[0]}&item={ids[1]}&method=magic"), 400)
    assert_error(openapi_doc, client.get(f"/api/explain?query={ids[0]}&item={ids[1]}&k=3"), 400)
    assert_error(openapi_doc, client.get(f"/api/explain?query={ids[0]}&item=987654"), 404)
    from indexer.wiring import open_store

    store = open_store(settings)
    photo = _jpeg(store.image_path(ids[2]))
    store.close()
    resp = client.post("/api/explain", data={"image": (io.BytesIO(photo), "q.jpg"), "item": str(ids[2])},
                       content_type="multipart/form-data")
    posted = assert_matches(openapi_doc, "/api/explain", "post", resp)
    assert posted["score"] > 0.99 and posted["agree"]["colour"] is True
    assert_error(openapi_doc, client.post("/api/explain", data={"item": str(ids[2])},
                                          content_type="multipart/form-data"), 400)
    assert_error(openapi_doc, client.post("/api/explain", data={"image": (io.BytesIO(b"not a jpeg"), "q.jpg"),
                                                                "item": str(ids[2])},
                                          content_type="multipart/form-data"), 400)


def test_explain_a_photo_search_by_its_id(cur, openapi_doc) -> None:
    """POST /api/search hands out a search id; GET /api/explain?query=<it> explains a result against the picture
    that search embedded (the same cosine as the result's score), without the photo being sent again."""
    settings, app, ids = cur
    client = app.test_client()
    from indexer.wiring import open_store

    store = open_store(settings)
    photo = _jpeg(store.image_path(ids[3]))
    store.close()
    resp = client.post("/api/search", data={"image": (io.BytesIO(photo), "q.jpg"), "k": "5"},
                       content_type="multipart/form-data")
    search = assert_matches(openapi_doc, "/api/search", "post", resp)
    search_id = search["search_id"]
    assert search_id.startswith("s-")
    for hit in search["results"][:2]:
        resp = client.get(f"/api/explain?query={search_id}&item={hit['id']}")
        body = assert_matches(openapi_doc, "/api/explain", "get", resp)
        assert abs(body["score"] - hit["score"]) < 1e-3, (body["score"], hit["score"])
        assert body["query_ref"] == {"search": search_id, "region": hit["region"], "box": [0.0, 0.0, 1.0, 1.0],
                                     "result": True}
    # A crop box: the explanation's query side is the crop, as in the search.
    crop = [0.1, 0.1, 0.9, 0.7]
    cropped = client.post("/api/search", data={"image": (io.BytesIO(photo), "q.jpg"), "k": "3",
                                               "crop": ",".join(map(str, crop))},
                          content_type="multipart/form-data").get_json()
    hit = cropped["results"][0]
    body = assert_matches(openapi_doc, "/api/explain", "get",
                          client.get(f"/api/explain?query={cropped['search_id']}&item={hit['id']}"))
    assert body["query_ref"]["box"] == crop and abs(body["score"] - hit["score"]) < 1e-3
    # An item the search did not return: explained against the searched photo, and said so.
    other = next(i for i in ids if i not in {h["id"] for h in search["results"]})
    resp = client.get(f"/api/explain?query={search_id}&item={other}")
    body = assert_matches(openapi_doc, "/api/explain", "get", resp)
    assert body["query_ref"]["result"] is False and body["query_ref"]["region"] == 0
    # Unknown / expired ids, regions it did not keep, region with an item id, and a query that is neither.
    expired = client.get(f"/api/explain?query=s-{'0' * 16}&item={ids[0]}")
    assert_error(openapi_doc, expired, 404)
    assert expired.get_json()["error"]["code"] == "search_expired" and "search again" in expired.get_json()["error"][
        "message"]
    assert_error(openapi_doc, client.get(f"/api/explain?query={search_id}&item={ids[0]}&region=7"), 400)
    assert_error(openapi_doc, client.get(f"/api/explain?query={search_id}&item={ids[0]}&region=x"), 400)
    assert_error(openapi_doc, client.get(f"/api/explain?query={ids[1]}&item={ids[0]}&region=0"), 400)
    assert_error(openapi_doc, client.get(f"/api/explain?query=s-12&item={ids[0]}"), 400)
    # A search without a photo has no picture to explain against.
    assert client.post("/api/search", json={"positive_ids": [ids[0]], "k": 3}).get_json()["search_id"] is None


def test_curation_pages_and_json(cur, openapi_doc) -> None:
    _, app, _ = cur
    client = app.test_client()
    for path in ("/curation/duplicates", "/curation/labels", "/curation/duplicates?sort=score&kind=near"):
        resp = client.get(path)
        assert resp.status_code == 200 and b"<h1>" in resp.data
    assert_matches(openapi_doc, "/api/curation/duplicates", "get", client.get("/api/curation/duplicates"))
    assert_matches(openapi_doc, "/api/curation/labels", "get", client.get("/api/curation/labels"))
    assert_error(openapi_doc, client.get("/api/curation/duplicates?sort=colour"), 400)
    assert_error(openapi_doc, client.get("/api/curation/labels?min_confidence=2"), 400)


def test_search_command_collapses(cur) -> None:
    """Runs after test_collapse_in_the_api, whose stored group it reads."""
    from indexer.curation.records import DUPLICATES, latest_run
    from indexer.search.cli import search_cmd
    from indexer.wiring import open_store

    settings, _, ids = cur
    store = open_store(settings)
    try:
        grouped = latest_run(store, DUPLICATES)["details"]["groups"][0]["ids"]
        path = store.image_path(ids[0])
    finally:
        store.close()
    plain = _run(search_cmd, settings, path, "-k", "8", "--json")
    assert plain.exit_code == 0, plain.output
    assert set(grouped) <= {h["id"] for h in json.loads(plain.output)["results"]}
    result = _run(search_cmd, settings, path, "-k", "8", "--json", "--collapse", "duplicates")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["results"]
    kept = next(h for h in hits if h["id"] in grouped)
    assert sorted([kept["id"], *kept["more_ids"]]) == sorted(grouped)
    assert len([h for h in hits if h["id"] in grouped]) == 1
    assert _run(search_cmd, settings, path, "--collapse", "everything").exit_code == 2


def test_search_command_collapses_word_queries(cur) -> None:
    """Runs after test_collapse_in_word_and_thumbs_queries (its text tower) and test_collapse_in_the_api (its
    group)."""
    from indexer.curation.records import DUPLICATES, latest_run
    from indexer.search.cli import search_cmd
    from indexer.wiring import open_store

    settings, _, _ = cur
    store = open_store(settings)
    try:
        grouped = latest_run(store, DUPLICATES)["details"]["groups"][0]["ids"]
        title = store.get_items([grouped[0]])[grouped[0]]["title"]
    finally:
        store.close()
    plain = _run(search_cmd, settings, "--text", title, "-k", str(N_ITEMS), "--json")
    assert plain.exit_code == 0, plain.output
    assert set(grouped) <= {h["id"] for h in json.loads(plain.output)["results"]}
    result = _run(search_cmd, settings, "--text", title, "-k", str(N_ITEMS), "--json", "--collapse", "duplicates")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["collapse"] == "duplicates"
    kept = [h for h in body["results"] if h["id"] in grouped]
    assert len(kept) == 1 and sorted([kept[0]["id"], *kept[0]["more_ids"]]) == sorted(grouped)
    text_out = _run(search_cmd, settings, "--text", title, "-k", "5", "--collapse", "duplicates")
    assert text_out.exit_code == 0 and "+2 more" in text_out.output, text_out.output
