"""Flask app factory. The app is a thin client of indexer/ and engine/: blueprints `pages` and `api`."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from indexer.settings import Settings, load_settings

log = logging.getLogger(__name__)

# Pages and API responses may only load what this server serves: no CDN, no third-party anything.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                           "form-action 'self'")


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None, *,
               embedder: Any = None) -> Flask:
    """Create the app.

    Args:
        settings: Lookalike settings; loaded from ./config.toml (or LOOKALIKE_CONFIG via manage.py) if None.
        test_config: Flask config overrides for tests.
        embedder: An already built Embedder to use instead of building the configured one (tests share one);
            it must have the configured model's fingerprint or the index is refused.
    """
    from web.api import bp as api_bp
    from web.errors import register_error_handlers
    from web.pages import bp as pages_bp

    app = Flask(__name__)
    if settings is None:
        settings = load_settings("config.toml")
    app.config.update(LOOKALIKE_SETTINGS=settings, MAX_CONTENT_LENGTH=settings.web.max_upload_mb * 1024 * 1024)
    app.json.sort_keys = False  # keep the documented field order (id first)
    if test_config:
        app.config.update(test_config)
    app.extensions["lookalike"] = Runtime(settings, embedder)
    register_error_handlers(app, settings.web.max_upload_mb)
    app.register_blueprint(pages_bp)
    app.register_blueprint(api_bp)
    from web.outfit_api import register_outfits

    register_outfits(app)
    from web.analytics import bp as analytics_bp

    app.register_blueprint(analytics_bp)

    @app.get("/healthz")
    def healthz():
        status = runtime(app).status()
        resp = jsonify(status)
        resp.headers["Cache-Control"] = "no-store"
        return resp, (200 if status.get("ok") else 503)

    @app.before_request
    def limit_unsized_bodies():
        # A chunked body has no Content-Length for Werkzeug to check up front, and its limited stream stops
        # silently at the limit; read it here so that an oversize one is a 413, not a truncated body.
        limit = app.config.get("MAX_CONTENT_LENGTH")
        if limit and request.content_length is None and request.environ.get("wsgi.input_terminated"):
            if len(request.get_data(cache=True)) >= limit:
                raise RequestEntityTooLarge()

    @app.after_request
    def security_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        if resp.mimetype == "text/html":
            resp.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return resp

    return app


def runtime(app: Flask) -> Runtime:
    """The app's per-process singletons."""
    return app.extensions["lookalike"]


class Runtime:
    """Per-process singletons: store, embedder and search service (model + index loaded once), query engine.

    Built lazily on first use, under a lock, so concurrent first requests of a threaded server build one.
    """

    FACETS_TTL_S = 60.0

    def __init__(self, settings: Settings, embedder: Any = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._lock = threading.RLock()
        self._store = None
        self._search = None
        self._query = None
        self._facets: tuple[float, dict[str, list[str]]] | None = None

    @property
    def store(self):
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from indexer.service import open_store

                    self._store = open_store(self.settings)
        return self._store

    @property
    def search(self):
        """The SearchService (loads the model and the current index generation on first use)."""
        if self._search is None:
            with self._lock:
                if self._search is None:
                    from indexer.service import create_embedder_from_settings, create_search_service

                    embedder = self._embedder or create_embedder_from_settings(self.settings)
                    self._search = create_search_service(self.settings, self.store, embedder)
        return self._search

    @property
    def query(self):
        """The QueryEngine (localisation + merging) over the search service."""
        if self._query is None:
            with self._lock:
                if self._query is None:
                    from engine.localize import load_detector
                    from indexer.query import QueryEngine

                    detector = load_detector(self.settings.web.detector)
                    self._query = QueryEngine(self.search, detector, self.settings.web.localize)
        return self._query

    def facets(self) -> dict[str, list[str]]:
        """Taxonomy column -> distinct values of active items (for filter menus), cached for a minute."""
        from indexer.models import TAXONOMY_COLUMNS

        now = time.monotonic()
        cached = self._facets
        if cached is not None and now - cached[0] < self.FACETS_TTL_S:
            return cached[1]
        values = {c: self.store.distinct_values(c) for c in TAXONOMY_COLUMNS}
        self._facets = (now, values)
        return values

    def status(self) -> dict[str, Any]:
        try:
            return self.search.status()
        except Exception as exc:  # noqa: BLE001 - health must answer, whatever broke
            log.exception("health check failed")
            return {"ok": False, "error": str(exc)}
