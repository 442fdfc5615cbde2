"""Flask app factory (flaskr's create_app): the app is a thin client of indexer/ and engine/.

Blueprints: pages (web/pages/), api (web/api/), outfits (web/outfits/), analytics (web/analytics/) and curation
(web/curation/: duplicates, label suspects, /api/explain); the
per-process singletons (store, model, index, query engine) live in web/runtime.py. web/ may import indexer/ and
engine/; nothing there imports web/.
"""

from __future__ import annotations

import logging
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
    from web.api.routes import bp as api_bp
    from web.errors import register_error_handlers
    from web.pages.routes import bp as pages_bp
    from web.runtime import Runtime, runtime

    app = Flask(__name__)
    if settings is None:
        settings = load_settings("config.toml")
    app.config.update(LOOKALIKE_SETTINGS=settings, MAX_CONTENT_LENGTH=settings.web.max_upload_mb * 1024 * 1024)
    app.json.sort_keys = False  # keep the documented field order (id first)
    if test_config:
        app.config.update(test_config)
    app.extensions["lookalike"] = Runtime(settings, embedder)
    register_error_handlers(app, settings.web.max_upload_mb)
    from web.limits import install_limits

    install_limits(app, settings.web)  # rate limit on the search endpoints, bound on concurrent embeddings
    app.register_blueprint(pages_bp)
    app.register_blueprint(api_bp)
    from web.outfits.routes import register_outfits

    register_outfits(app)
    from web.analytics.routes import bp as analytics_bp

    app.register_blueprint(analytics_bp)
    from web.curation.explain import bp as explain_bp
    from web.curation.routes import bp as curation_bp

    app.register_blueprint(curation_bp)
    app.register_blueprint(explain_bp)

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
