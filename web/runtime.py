"""The web app's per-process singletons (store, embedder, search service, query engine), built lazily on first use."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask

from indexer.settings import Settings
from web.searched_photos import SearchedPhotos

log = logging.getLogger(__name__)


def runtime(app: Flask) -> Runtime:
    """The app's per-process singletons."""
    return app.extensions["lookalike"]


class Runtime:
    """Per-process singletons: store, embedder and search service (model + index loaded once), query engine.

    Built lazily on first use, under a lock, so concurrent first requests of a threaded server build one.
    """

    FACETS_TTL_S = 60.0
    # Indexed catalogs' roots are re-read this often, so a catalog indexed while the server runs is served soon.
    ROOTS_TTL_S = 10.0

    def __init__(self, settings: Settings, embedder: Any = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._lock = threading.RLock()
        self._store = None
        self._search = None
        self._query = None
        self._facets: tuple[float, dict[str, list[str]]] | None = None
        self._roots: tuple[float, tuple[Any, ...]] | None = None
        # Photo searches' pictures by search id, for "Why?" (web/searched_photos.py).
        self.searched_photos = SearchedPhotos()

    @property
    def store(self):
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from indexer.wiring import open_store

                    self._store = open_store(self.settings)
        return self._store

    @property
    def search(self):
        """The SearchService (loads the model and the current index generation on first use)."""
        if self._search is None:
            with self._lock:
                if self._search is None:
                    from indexer.embedders import create_embedder_from_settings
                    from indexer.wiring import create_search_service

                    embedder = self._embedder or create_embedder_from_settings(self.settings)
                    self._search = create_search_service(self.settings, self.store, embedder)
        return self._search

    @property
    def query(self):
        """The QueryEngine (localisation + merging) over the search service."""
        if self._query is None:
            with self._lock:
                if self._query is None:
                    from indexer.embedders import detector_from_settings, query_embedder_from_settings
                    from indexer.search.composed import text_setup_from_settings
                    from indexer.search.query import QueryEngine

                    detector, why_not = detector_from_settings(self.settings, self.search.embedder)
                    if detector is None and self.settings.web.detector:
                        log.warning("no garment detector, street photos use grid crops: %s", why_not)
                    query_embedder, why_served = query_embedder_from_settings(self.settings, self.search.embedder)
                    if self.settings.model.street_encoder and query_embedder is self.search.embedder:
                        log.warning("query photos use the served model, not the street encoder: %s", why_served)
                    text_model, weights = text_setup_from_settings(self.settings)
                    self._query = QueryEngine(self.search, detector, self.settings.web.localize, text_model, weights,
                                              query_embedder)
        return self._query

    def facets(self) -> dict[str, list[str]]:
        """Taxonomy column -> distinct values of active items (for filter menus), cached for a minute."""
        from indexer.store.tables import TAXONOMY_COLUMNS

        now = time.monotonic()
        cached = self._facets
        if cached is not None and now - cached[0] < self.FACETS_TTL_S:
            return cached[1]
        values = {c: self.store.distinct_values(c) for c in TAXONOMY_COLUMNS}
        self._facets = (now, values)
        return values

    def image_roots(self) -> tuple[Any, ...]:
        """Folders item pictures may be served from: configured roots + every indexed catalog's (cached briefly)."""
        from indexer.wiring import servable_image_roots

        now = time.monotonic()
        cached = self._roots
        if cached is not None and now - cached[0] < self.ROOTS_TTL_S:
            return cached[1]
        roots = servable_image_roots(self.settings, self.store)
        self._roots = (now, roots)
        return roots

    def status(self) -> dict[str, Any]:
        """What /healthz answers: whether a search can be answered now (SearchService.status(): the served index
        answered a probe search), or {"ok": False, "error": one line saying why not}."""
        try:
            return self.search.status()
        except Exception as exc:  # noqa: BLE001 - health must answer, whatever broke
            log.exception("health check failed")
            return {"ok": False, "error": (str(exc).splitlines() or [type(exc).__name__])[0]}
