"""Flask app factory. The app is a thin client of indexer/ and engine/."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify

from indexer.settings import Settings, load_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Create the app.

    Args:
        settings: Lookalike settings; loaded from ./config.toml (or LOOKALIKE_CONFIG via manage.py) if None.
        test_config: Flask config overrides for tests.
    """
    app = Flask(__name__)
    if settings is None:
        settings = load_settings("config.toml")
    app.config.update(LOOKALIKE_SETTINGS=settings, MAX_CONTENT_LENGTH=settings.web.max_upload_mb * 1024 * 1024)
    if test_config:
        app.config.update(test_config)
    app.extensions["lookalike"] = _Runtime(settings)

    @app.get("/healthz")
    def healthz():
        status = app.extensions["lookalike"].status()
        return jsonify(status), (200 if status.get("ok") else 503)

    return app


class _Runtime:
    """Per-process singletons: store, embedder (loaded once) and search service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._search = None
        self._store = None

    @property
    def store(self):
        if self._store is None:
            from indexer.service import open_store

            self._store = open_store(self.settings)
        return self._store

    @property
    def search(self):
        if self._search is None:
            from indexer.service import create_embedder_from_settings, create_search_service

            embedder = create_embedder_from_settings(self.settings)
            self._search = create_search_service(self.settings, self.store, embedder)
        return self._search

    def status(self) -> dict[str, Any]:
        try:
            return self.search.status()
        except Exception as exc:  # noqa: BLE001 - health must answer, whatever broke
            log.exception("health check failed")
            return {"ok": False, "error": str(exc)}
