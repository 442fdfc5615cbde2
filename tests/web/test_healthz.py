"""/healthz means "a search can be answered now": it answers a probe search through the served index (cached for
SearchService.PROBE_TTL_S), and says 503 with the reason when the search cannot work, where it used to say ok."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from tests.web.conftest import build_indexed_catalog, make_test_app
from tests.web.openapi_check import assert_matches


@pytest.fixture
def served(tmp_path, shared_data, small_embedder):
    """(settings, app, test client, query image bytes) over a 12-item FAISS catalog of its own (tests break it)."""
    settings, csv = build_indexed_catalog(tmp_path, small_embedder, n=12)
    app = make_test_app(settings, small_embedder)
    data = next((csv.parent / "images").iterdir()).read_bytes()
    return settings, app, app.test_client(), data


def _search(client, data: bytes):
    return client.post("/api/search", data={"image": (io.BytesIO(data), "q.jpg"), "k": "3"})


def test_healthz_runs_a_probe_search_and_caches_it(served, monkeypatch):
    _, app, client, _ = served
    openapi_doc = client.get("/api/openapi.json").get_json()
    body = assert_matches(openapi_doc, "/healthz", "get", client.get("/healthz"))
    assert body["ok"] and body["count"] == 12 and body["probe_ms"] >= 0
    service = app.extensions["lookalike"].search
    _, searcher = service.served()
    calls = []
    real = searcher.search
    monkeypatch.setattr(searcher, "search", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert calls == []  # polled within PROBE_TTL_S: the cached probe answers
    service.PROBE_TTL_S = 0
    assert client.get("/healthz").status_code == 200
    assert len(calls) == 1 and calls[0][1] == 1  # one k=1 search


def test_healthz_says_503_with_the_reason_when_the_served_index_cannot_search(served, monkeypatch):
    _, app, client, data = served
    openapi_doc = client.get("/api/openapi.json").get_json()
    assert client.get("/healthz").status_code == 200
    service = app.extensions["lookalike"].search
    service.PROBE_TTL_S = 0
    _, searcher = service.served()

    def broken(*_args, **_kwargs):
        raise RuntimeError("Error in faiss::Index::search: index corrupted\nmore lines")

    monkeypatch.setattr(searcher, "search", broken)
    resp = client.get("/healthz")
    body = assert_matches(openapi_doc, "/healthz", "get", resp)
    assert resp.status_code == 503 and not body["ok"]
    assert body["error"] == "a probe search failed: RuntimeError: Error in faiss::Index::search: index corrupted"

    # An index that finds nothing although it holds vectors cannot answer either.
    monkeypatch.setattr(searcher, "search", lambda q, k, *a, **kw: (np.full((1, k), -np.inf, np.float32),
                                                                     np.full((1, k), -1, np.int64)))
    resp = client.get("/healthz")
    assert resp.status_code == 503 and "found nothing in an index of 12 vectors" in resp.get_json()["error"]

    monkeypatch.undo()
    assert client.get("/healthz").status_code == 200 and _search(client, data).status_code == 200


def test_a_deleted_generation_is_503_with_the_fix_for_a_new_server(served, small_embedder):
    settings, _, client, data = served
    assert client.get("/healthz").status_code == 200
    current = (settings.index_dir / "CURRENT").read_text().strip()
    shutil.rmtree(settings.index_dir / current)
    # The running server keeps answering from the generation it loaded (it is in memory), so it is healthy...
    assert client.get("/healthz").status_code == 200 and _search(client, data).status_code == 200
    # ...but a server started now cannot search, and says so, and why.
    fresh = make_test_app(settings, small_embedder).test_client()
    health = fresh.get("/healthz")
    assert health.status_code == 503 and current in health.get_json()["error"]
    resp = _search(fresh, data)
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "index_unavailable"
