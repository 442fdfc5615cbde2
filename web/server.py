"""Production serving with waitress: load the model and index before the first request, then serve."""

from __future__ import annotations

import logging

from indexer.settings import Settings

log = logging.getLogger(__name__)
# Bodies past this many times the upload limit are cut off by waitress itself (plain-text 413) before the app
# reads them; bodies between the limit and this are read and answered with the JSON 413 envelope.
HARD_BODY_LIMIT_FACTOR = 4


def warm_up(app) -> str | None:  # noqa: ANN001 - flask.Flask
    """Load the model, the current index generation and the localiser; returns the generation served."""
    from web.outfits.routes import warm_up_outfits
    from web.runtime import runtime

    rt = runtime(app)
    name = rt.search.refresh()
    rt.query.warm_up()
    warm_up_outfits(app)
    return name


def serve(settings: Settings, host: str | None = None, port: int | None = None, threads: int = 8) -> None:
    """Serve the app with waitress on host:port (default web.host:web.port) until interrupted."""
    from waitress import serve as waitress_serve

    from web import create_app

    if settings.web.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.web.torch_threads)
    app = create_app(settings)
    generation = warm_up(app)
    h, p = host or settings.web.host, port or settings.web.port
    app.config["LOOKALIKE_BIND_HOST"] = h  # the analyst pages are open without a token only on loopback
    print(f"serving index {generation} on http://{h}:{p}", flush=True)
    waitress_serve(app, host=h, port=p, threads=threads, ident="lookalike",
                   channel_timeout=settings.web.request_timeout_s,  # a stalled client is dropped after this
                   max_request_body_size=HARD_BODY_LIMIT_FACTOR * settings.web.max_upload_mb * 1024 * 1024 + 65536)
