"""The same indexing, search and consistency tests against both vector stores: FAISS and Milvus (milvus-lite).

Each test indexes a small real catalog through the library (the path `manage.py index` takes), searches it
through SearchService (the path of the web app and `manage.py search`), and checks SQL against the store.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.catalog.images import decode_image
from indexer.catalog.source import open_catalog
from indexer.settings import load_settings
from indexer.store.db import upgrade_database
from indexer.vectors.factory import create_vector_store
from indexer.wiring import create_pipeline, create_search_service, open_store, remove_items
from tests.conftest import SHARED_DATA, write_config, write_small_catalog

STORES = ["faiss", "milvus"]
N = 16


def _milvus_or_skip(kind: str) -> None:
    if kind == "milvus":
        pytest.importorskip("pymilvus", reason="the scale extra is not installed (pip install -e '.[scale]')")
        pytest.importorskip("milvus_lite", reason="the scale extra is not installed (pip install -e '.[scale]')")


@pytest.fixture(params=STORES)
def kind(request) -> str:
    _milvus_or_skip(request.param)
    return request.param


def make_env(tmp_path: Path, kind: str, **milvus):
    """Settings for one store, a migrated SQLite store, its vector store, and a 16-item catalog with a season
    attribute (so attribute filters are exercised too)."""
    config = write_config(tmp_path, index={"store": kind},
                          milvus={"uri": str(tmp_path / "milvus.db"), "batch_size": 5, **milvus})
    settings = load_settings(config, env={})
    upgrade_database(settings.database_url)
    catalog = write_small_catalog(tmp_path / "cat", N)
    with catalog.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, r in enumerate(rows):
        r["season"] = "Summer" if i % 4 == 0 else "Winter"
    write_rows(catalog, rows)
    return settings, open_store(settings), create_vector_store(settings), catalog, rows


def close_env(settings, store, vector_store) -> None:
    vector_store.close()
    store.close()
    if settings.index.store == "milvus":
        from indexer.vectors.milvus_store import release_local_server

        release_local_server(settings.milvus_uri)


def write_rows(catalog: Path, rows: list[dict]) -> None:
    with catalog.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def env(tmp_path: Path, kind: str, shared_data: Path):
    settings, store, vector_store, catalog, rows = make_env(tmp_path, kind)
    yield settings, store, vector_store, catalog, rows
    close_env(settings, store, vector_store)


def run_index(settings, store, vector_store, embedder, catalog: Path, rebuild: bool = False):
    pipeline = create_pipeline(settings, store, embedder, progress=False, vector_store=vector_store)
    return pipeline.run(open_catalog(catalog), rebuild=rebuild)


def image_of(catalog: Path, row: dict):
    return decode_image((catalog.parent / row["image"]).read_bytes())


def test_index_search_filters_and_rerun(env, small_embedder):
    settings, store, vs, catalog, rows = env
    first = run_index(settings, store, vs, small_embedder, catalog)
    assert first.published and first.new == N and first.generation_count == N
    service = create_search_service(settings, store, small_embedder, vector_store=vs)
    backends = {"faiss": ("faiss", "torch"), "milvus": ("milvus",)}[settings.index.store]
    assert service.status()["backend"].startswith(backends)
    for row in rows[::5]:
        hits = service.search_image(image_of(catalog, row), 5)
        assert hits[0].item["external_id"] == row["id"] and hits[0].score > 0.99
    # Filters are applied inside the search: every matching item comes back, and only those.
    query = image_of(catalog, rows[3])
    for filters in ({"article_type": [rows[3]["article_type"]]}, {"season": ["summer"]},
                    {"gender": ["men", "WOMEN"], "season": ["Winter"]}):
        expected = set(store.filter_ids(filters).tolist())
        hits = service.search_image(query, N, filters)
        assert {h.id for h in hits} == expected and expected
    similar = service.similar_to_item(hits[0].id, 4)
    assert similar and hits[0].id not in {h.id for h in similar}
    report = vs.check(store, small_embedder.fingerprint)
    assert report.ok, report.problems
    assert report.index_count == report.sql_count == N
    again = run_index(settings, store, vs, small_embedder, catalog)
    assert (again.new, again.unchanged, again.published) == (0, N, False)
    assert again.generation == first.generation == vs.current_name(store)


def test_remove_and_changed_image_and_metadata(env, small_embedder):
    settings, store, vs, catalog, rows = env
    run_index(settings, store, vs, small_embedder, catalog)
    service = create_search_service(settings, store, small_embedder, vector_store=vs)
    gone = [rows[1]["id"], rows[2]["id"]]
    result = remove_items(settings, store, small_embedder, gone)
    assert result["removed"] == 2 and result["count"] == N - 2
    for row in (rows[1], rows[2]):
        assert row["id"] not in {h.item["external_id"] for h in service.search_image(image_of(catalog, row), N)}
    report = vs.check(store, small_embedder.fingerprint)
    assert report.ok and report.index_count == N - 2, report.problems
    # The store itself no longer holds them (not just hidden by SQL at hydration time).
    removed_sql_ids = {h.id for h in service.search_image(image_of(catalog, rows[1]), N)}
    _, searcher = service.served()
    _, raw_ids = searcher.search(small_embedder.embed_images([image_of(catalog, rows[1])]), N)
    assert set(raw_ids[0][raw_ids[0] >= 0].tolist()) == removed_sql_ids
    # A changed picture is re-embedded and upserted; a changed gender is searchable by its new value.
    new_picture = SHARED_DATA / "images" / "1164.jpg"
    shutil.copyfile(new_picture, catalog.parent / rows[5]["image"])
    rows[7]["gender"] = "Girls" if rows[7]["gender"] != "Girls" else "Boys"
    write_rows(catalog, rows)
    report = run_index(settings, store, vs, small_embedder, catalog)
    assert (report.new, report.changed, report.metadata_updated) == (2, 1, 1) and report.published
    hits = service.search_image(decode_image(new_picture.read_bytes()), 1)
    assert hits[0].item["external_id"] == rows[5]["id"] and hits[0].score > 0.99
    hits = service.search_image(image_of(catalog, rows[7]), N, {"gender": [rows[7]["gender"]]})
    assert rows[7]["id"] in {h.item["external_id"] for h in hits}
    assert {h.id for h in hits} == set(store.filter_ids({"gender": [rows[7]["gender"]]}).tolist())
    assert vs.check(store, small_embedder.fingerprint).ok


def test_check_fails_when_sql_and_store_disagree_and_index_repairs(env, small_embedder):
    settings, store, vs, catalog, rows = env
    run_index(settings, store, vs, small_embedder, catalog)
    fp = small_embedder.fingerprint
    # SQL moves on without the store: one item tombstoned, one new item embedded, one retitled.
    store.mark_removed([rows[0]["id"]])
    with store.sessions.begin() as s:
        vec = np.random.default_rng(0).standard_normal(small_embedder.dim).astype(np.float32)
        [new_id] = store.write_embedded(s, [{"external_id": "extra-1", "existing_id": None, "image_path": "/x.jpg",
                                             "content_sha256": "0" * 64, "title": "Extra", "taxonomy": {},
                                             "price": None, "attributes": {}}], vec[None] / np.linalg.norm(vec), fp)
    report = vs.check(store, fp)
    assert not report.ok
    assert report.missing_from_index == [new_id]
    assert len(report.extra_in_index) == 1 and report.extra_in_index[0] not in store.get_items(report.extra_in_index)
    assert any("not in the index" in p for p in report.problems)
    pipeline = create_pipeline(settings, store, small_embedder, progress=False, vector_store=vs)
    assert pipeline.publish()
    repaired = vs.check(store, fp)
    assert repaired.ok and repaired.index_count == N, repaired.problems


def test_manage_check_exit_codes(env, small_embedder):
    from click.testing import CliRunner

    import manage

    settings, store, vs, catalog, rows = env
    run_index(settings, store, vs, small_embedder, catalog)
    ok = CliRunner().invoke(manage.cli, ["check", "--config", settings.source])
    assert ok.exit_code == 0 and "consistent" in ok.output, ok.output
    store.mark_removed([rows[4]["id"]])
    bad = CliRunner().invoke(manage.cli, ["check", "--config", settings.source, "--json"])
    assert bad.exit_code == 1 and '"n_extra_in_index": 1' in bad.output, bad.output
