"""Store and migrations against SQLite and PostgreSQL (the server `make test` starts)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from indexer.store.catalog_store import FilterError, Store
from indexer.store.db import StoreError, check_database, create_db_engine, downgrade_database, upgrade_database
from indexer.store.tables import Base, CatalogItem
from tests.pg import PG_URL, pg_available


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if not pg_available():
        pytest.skip("PostgreSQL not reachable at LOOKALIKE_TEST_PG_URL (make test starts it)")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    yield url
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def rows(n: int, start: int = 0):
    for i in range(start, start + n):
        yield {"external_id": f"x{i}", "existing_id": None, "image_path": f"/img/{i}.jpg",
               "content_sha256": f"{i:064d}",
               "title": f"Item {i}", "taxonomy": {"gender": "Men" if i % 3 == 0 else "Women", "usage": "Casual"},
               "price": None, "attributes": {"season": "Summer" if i % 2 else "Winter"}}


def test_migrations_up_down_and_check(db_url):
    upgrade_database(db_url)
    check_database(db_url)
    downgrade_database(db_url, "base")
    with pytest.raises(StoreError, match="manage.py db upgrade"):
        check_database(db_url)
    upgrade_database(db_url)
    check_database(db_url)


def test_check_fails_when_models_and_migrations_disagree(db_url, monkeypatch):
    upgrade_database(db_url)
    extra = sa.Column("colour_hex", sa.String(7))
    table = Base.metadata.tables["catalog_items"]
    monkeypatch.setattr(table, "_columns", table._columns)  # restored by monkeypatch below
    table.append_column(extra)
    try:
        with pytest.raises(StoreError, match="disagree"):
            check_database(db_url)
    finally:
        table._columns.remove(extra)
    check_database(db_url)


def test_write_state_filters_and_removal(db_url):
    upgrade_database(db_url)
    store = Store(create_db_engine(db_url))
    vecs = np.eye(6, 8, dtype=np.float32)
    with store.sessions.begin() as s:
        ids = store.write_embedded(s, list(rows(6)), vecs, "fp1")
    st = store.state("fp1")
    assert sorted(st.ids.tolist()) == sorted(ids) and st.high_water == 6 and st.not_embedded == 0
    got_ids, revs, got = store.load_vectors("fp1")
    assert np.allclose(got[np.argsort(got_ids)], vecs) and sorted(revs.tolist()) == list(range(1, 7))
    assert store.state("other-model").not_embedded == 6
    men = store.filter_ids({"gender": ["men"]})
    assert len(men) == 2
    assert len(store.filter_ids({"gender": ["Men"], "season": ["Summer"]})) == 1
    assert len(store.filter_ids({"gender": ["Men", "Women"]})) == 6
    with pytest.raises(FilterError, match="unknown filter"):
        store.filter_ids({"nosuch": ["x"]})
    marked, unknown = store.mark_removed(["x0", "x1", "zzz"])
    assert len(marked) == 2 and unknown == ["zzz"]
    assert len(store.state("fp1").ids) == 4 and store.get_items(marked) == {}
    assert store.purge_removed() == 2
    with store.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(CatalogItem)) == 4
    # Re-embedding an item replaces its vector under a new revision; nothing is duplicated.
    existing = store.existing_items()["x2"]
    row = next(rows(1, 2)) | {"existing_id": existing.id, "content_sha256": "f" * 64}
    with store.sessions.begin() as s:
        store.write_embedded(s, [row], np.ones((1, 8), np.float32), "fp1")
    st = store.state("fp1")
    assert len(st.ids) == 4 and st.high_water == 7
    store.close()
