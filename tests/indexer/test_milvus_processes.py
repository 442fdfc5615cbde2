"""Milvus across processes and behind a server's back: a collection indexed by one process is searched by another
(`manage.py search`, the web app), a collection released or a connection lost is recovered once, and a collection
that is gone makes /healthz and /api/search answer 503 with the reason, never a 500.

milvus-lite (a local *.db file) is held by one process at a time: the processes here take turns, as the design
says (docs/scaling.md); a second process while one holds it gets the one-line refusal naming the fix.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from indexer.settings import load_settings
from indexer.store.db import upgrade_database
from tests.conftest import index_in_process, run_manage, write_config, write_small_catalog
from tests.web.conftest import make_test_app

pytest.importorskip("pymilvus", reason="the scale extra is not installed (pip install -e '.[scale]')")
pytest.importorskip("milvus_lite", reason="the scale extra is not installed (pip install -e '.[scale]')")

from indexer.vectors.milvus_store import release_local_server  # noqa: E402 - needs the scale extra


def _milvus_config(folder: Path, n: int) -> tuple[Path, Path]:
    catalog = write_small_catalog(folder / "cat", n)
    config = write_config(folder, index={"store": "milvus"}, milvus={"uri": str(folder / "milvus.db")},
                          web={"image_roots": [str(folder / "cat")], "thumb_cache_dir": str(folder / "thumbs")})
    return config, catalog


def _first_image(catalog: Path) -> tuple[str, bytes]:
    """(catalog id, image bytes) of the catalog's first row."""
    import csv

    with catalog.open(newline="") as fh:
        row = next(csv.DictReader(fh))
    return row["id"], (catalog.parent / row["image"]).read_bytes()


def _search(client, data: bytes, k: int = 3):
    return client.post("/api/search", data={"image": (io.BytesIO(data), "q.jpg"), "k": str(k)})


@pytest.mark.slow
def test_indexed_in_one_process_searched_in_another_and_served(tmp_path, shared_data, small_embedder):
    config, catalog = _milvus_config(tmp_path, 16)
    settings = load_settings(config, env={})
    upgrade_database(settings.database_url)
    indexed = run_manage("index", str(catalog), "--json", config=config)
    assert indexed.returncode == 0, indexed.stderr[-2000:]
    assert json.loads(indexed.stdout)["generation"] == "milvus-000001"

    # A new process: the collection it finds is released there; searching loads it.
    query_id, data = _first_image(catalog)
    image = tmp_path / "query.jpg"
    image.write_bytes(data)
    found = run_manage("search", str(image), "-k", "3", "--json", config=config)
    assert found.returncode == 0, found.stderr[-2000:]
    assert "Traceback" not in found.stderr
    assert json.loads(found.stdout)["results"][0]["external_id"] == query_id

    # The web app in this process (a third one): healthy, and searches answer 200.
    app = make_test_app(settings, small_embedder)
    client = app.test_client()
    try:
        health = client.get("/healthz")
        assert health.status_code == 200, health.get_json()
        assert health.get_json()["generation"] == "milvus-000001" and health.get_json()["probe_ms"] >= 0
        resp = _search(client, data)
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["results"][0]["external_id"] == query_id
        item = resp.get_json()["results"][0]["id"]
        assert client.get(f"/api/items/{item}/similar?k=3").status_code == 200

        # While this process holds the milvus-lite file, another process is refused in one line with the fix.
        refused = run_manage("search", str(image), config=config)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "open in another process" in refused.stderr and "milvus-lite server" in refused.stderr
    finally:
        release_local_server(settings.milvus_uri)


@pytest.fixture
def served(tmp_path, shared_data, small_embedder):
    """(settings, app, test client, query image bytes, the vector store the app serves) over a 12-item catalog
    indexed into milvus-lite in this process."""
    config, catalog = _milvus_config(tmp_path, 12)
    index_in_process(config, catalog, small_embedder)
    settings = load_settings(config, env={})
    app = make_test_app(settings, small_embedder)
    client = app.test_client()
    _, data = _first_image(catalog)
    assert _search(client, data).status_code == 200
    rt = app.extensions["lookalike"]
    rt.search.PROBE_TTL_S = 0  # probe on every /healthz, so each step below is seen at once
    yield settings, app, client, data, rt.search.vector_store
    release_local_server(settings.milvus_uri)


def test_a_collection_released_behind_the_servers_back_is_loaded_again(served, caplog):
    _, _, client, data, vs = served
    vs.client.release_collection("lookalike_g000001")
    assert vs.client.get_load_state("lookalike_g000001")["state"].name != "Loaded"
    assert _search(client, data).status_code == 200
    assert "loading the collection and trying again" in caplog.text
    vs.client.release_collection("lookalike_g000001")
    assert client.get("/healthz").status_code == 200  # the probe loads it too


def test_a_lost_connection_is_made_again(served, caplog):
    settings, _, client, data, _ = served
    release_local_server(settings.milvus_uri)  # this process's milvus-lite server stops: the client's channel dies
    resp = _search(client, data)
    assert resp.status_code == 200, resp.get_json()
    assert "reconnecting and trying again" in caplog.text
    release_local_server(settings.milvus_uri)
    assert client.get("/healthz").status_code == 200


def test_healthz_and_search_say_503_with_the_reason_when_the_collection_is_gone(served):
    _, _, client, data, vs = served
    assert client.get("/healthz").get_json()["ok"] is True
    vs.client.drop_alias("lookalike")
    vs.client.drop_collection("lookalike_g000001")
    health = client.get("/healthz")
    assert health.status_code == 503
    assert not health.get_json()["ok"] and "lookalike_g000001" in health.get_json()["error"]
    resp = _search(client, data)
    assert resp.status_code == 503
    assert resp.get_json()["error"]["code"] == "index_unavailable"
    assert "lookalike_g000001" in resp.get_json()["error"]["message"]
