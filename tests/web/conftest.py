"""Web fixtures: one small indexed catalog per session (read-only), the app over it, a test client."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.conftest import write_config, write_small_catalog

WEB_CATALOG_SIZE = 80


def build_indexed_catalog(folder: Path, embedder, n: int = WEB_CATALOG_SIZE, **sections: dict):
    """Catalog CSV + migrated SQLite + index generation in folder; returns (settings, csv path)."""
    from indexer.catalog.source import open_catalog
    from indexer.settings import load_settings
    from indexer.store.db import upgrade_database
    from indexer.wiring import create_pipeline, open_store

    csv = write_small_catalog(folder / "cat", n)
    web = {"image_roots": [str(folder / "cat")], "thumb_cache_dir": str(folder / "thumbs")}
    web.update(sections.pop("web", {}))
    config = write_config(folder, web=web, **sections)
    settings = load_settings(config, env={})
    upgrade_database(settings.database_url)
    store = open_store(settings)
    try:
        report = create_pipeline(settings, store, embedder, progress=False).run(open_catalog(csv))
        assert report.published and not report.problems, report.problems
    finally:
        store.close()
    return settings, csv


@pytest.fixture(scope="session")
def web_catalog(tmp_path_factory, shared_data, small_embedder):
    """(settings, catalog csv) of an indexed catalog shared by the web tests; do not modify it."""
    return build_indexed_catalog(tmp_path_factory.mktemp("web"), small_embedder)


@pytest.fixture(scope="session")
def web_settings(web_catalog):
    return web_catalog[0]


class BufferedClient(FlaskClient):
    """A test client that reads and closes every response (file responses keep their file open otherwise)."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def make_test_app(settings, embedder):
    from web import create_app

    app = create_app(settings, {"TESTING": True}, embedder=embedder)
    app.test_client_class = BufferedClient
    return app


@pytest.fixture(scope="session")
def app(web_settings, small_embedder):
    return make_test_app(web_settings, small_embedder)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def catalog_rows(web_catalog):
    """The catalog's rows as dicts (CSV columns), in file order."""
    import csv

    with web_catalog[1].open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def openapi_doc(app):
    return app.test_client().get("/api/openapi.json").get_json()
