"""Shopper pages: the search page, a no-JavaScript search fallback, item pages, item pictures and thumbnails."""

from __future__ import annotations

import base64
import io
from typing import Any

from flask import Blueprint, abort, current_app, render_template, request

from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.search.query import QueryOptions
from indexer.store.catalog_store import FilterError
from indexer.store.tables import TAXONOMY_COLUMNS
from indexer.vectors.generations import GenerationError
from web.api.params import MAX_ITEM_ID, parse_filters, parse_threshold
from web.api.serializers import hit_json, item_json
from web.errors import ApiError
from web.pages.media import resolve_in_roots, send_image, send_thumbnail
from web.runtime import runtime

bp = Blueprint("pages", __name__)

COLUMN_LABELS = {"gender": "Gender", "master_category": "Category", "sub_category": "Sub-category",
                 "article_type": "Article type", "base_colour": "Colour", "usage": "Usage"}


def _facets() -> list[dict[str, Any]]:
    try:
        values = runtime(current_app).facets()
    except Exception:  # noqa: BLE001 - an empty filter menu beats a broken page
        current_app.logger.exception("could not read filter values")
        values = {}
    return [{"column": c, "label": COLUMN_LABELS.get(c, c), "values": values.get(c, [])} for c in TAXONOMY_COLUMNS]


def _served_catalog() -> dict[str, Any] | None:
    """Which catalog the search page serves (the one indexed last, and how many items there are in all)."""
    from indexer.settings import DEMO_CATALOG_CSV

    rt = runtime(current_app)
    try:
        sources = rt.store.catalog_sources()
        count = rt.store.count_items()
    except Exception:  # noqa: BLE001 - the page works without the line
        current_app.logger.exception("could not read the indexed catalogs")
        return None
    if not sources:
        return None
    latest = sources[0]["catalog"]
    demo = latest == str(DEMO_CATALOG_CSV)
    name = "the demo catalog" if demo else latest
    more = f" and {len(sources) - 1} other catalog(s)" if len(sources) > 1 else ""
    return {"label": f"{count:,} items from {name}{more}", "demo": demo, "path": latest}


def _page_context(**extra: Any) -> dict[str, Any]:
    web = runtime(current_app).settings.web
    return {"facets": _facets(), "default_k": web.default_k, "max_upload_mb": web.max_upload_mb,
            "served_catalog": _served_catalog(), **extra}


@bp.get("/")
def search_page():
    """The search page; the browser does the rest through the JSON API (web/static/search.js).

    With ?item=ID ("more like this") the similar items are rendered server-side too, so the page works
    without JavaScript.
    """
    rt = runtime(current_app)
    raw = request.args.get("item", "").strip()
    item, results, error = None, [], None
    if raw:
        items = rt.store.get_items([int(raw)]) if raw.isdigit() and int(raw) <= MAX_ITEM_ID else {}
        if not items:
            error = f"there is no item {raw!r} in the catalog"
        else:
            item = item_json(next(iter(items.values())))
            try:
                found = rt.query.similar_to_item(item["id"], QueryOptions(k=rt.settings.web.default_k))
                results = [hit_json(h) for h in (found[0] if found else [])]
            except GenerationError as exc:
                error = f"the search index is not available: {exc}"
    return render_template("search.html", **_page_context(item=item, results=results, error=error)), \
        (404 if raw and item is None else 200)


@bp.post("/search")
def search_form():
    """Search without JavaScript: a plain multipart form post renders the results server-side."""
    rt = runtime(current_app)
    web = rt.settings.web
    upload = request.files.get("image")
    error = None
    hits: list[dict[str, Any]] = []
    preview = None
    selected = {}
    try:
        pairs = [p for p in request.form.getlist("filter") if p.partition(":")[2]]
        filters = parse_filters(None, pairs)
        selected = {c: v[0] for c, v in (filters or {}).items()}
        threshold = parse_threshold(request.form.get("threshold"))
        if upload is None or not upload.filename:
            raise ApiError(400, "choose a photo first")
        image = decode_image(upload.read(), web.max_image_pixels, web.decode_min_side)
        result = rt.query.search(image, QueryOptions(k=web.default_k, filters=filters, threshold=threshold))
        hits = [hit_json(h, r) for h, r in zip(result.hits, result.region_of_hit, strict=True)]
        preview = _data_url_preview(image)
    except ApiError as exc:
        error = exc.message
    except (ImageDecodeError, FilterError) as exc:
        error = f"could not search with that photo: {exc}"
    except GenerationError as exc:
        error = f"the search index is not available: {exc}"
    status = 400 if error else 200
    return render_template("search.html", **_page_context(results=hits, error=error, preview=preview,
                                                           selected=selected)), status


@bp.get("/items/<int:item_id>")
def item_page(item_id: int):
    """An item's details and the items most similar to it."""
    rt = runtime(current_app)
    if item_id > MAX_ITEM_ID:
        abort(404)
    items = rt.store.get_items([item_id])
    if item_id not in items:
        abort(404)
    similar: list[dict[str, Any]] = []
    error = None
    try:
        found = rt.query.similar_to_item(item_id, QueryOptions(k=rt.settings.web.default_k))
        similar = [hit_json(h) for h in (found[0] if found else [])]
    except GenerationError as exc:
        error = f"similar items are not available: {exc}"
    item = item_json(items[item_id])
    details = [(COLUMN_LABELS[c], item[c]) for c in TAXONOMY_COLUMNS if item.get(c)]
    details += [(str(k).replace("_", " ").capitalize(), v) for k, v in sorted(item["attributes"].items())
                if v not in (None, "") and not str(k).startswith("image")]
    return render_template("item.html", item=item, details=details, results=similar, error=error)


def _image_path(item_id: int):
    rt = runtime(current_app)
    if item_id > MAX_ITEM_ID:
        abort(404)
    path = resolve_in_roots(rt.store.image_path(item_id), rt.image_roots())
    if path is None:
        abort(404)
    return rt, path


@bp.get("/items/<int:item_id>/image")
def item_image(item_id: int):
    """The item's picture, only from inside the image roots."""
    rt, path = _image_path(item_id)
    return send_image(path, rt.settings.web.cache_max_age_s)


@bp.get("/items/<int:item_id>/thumb")
def item_thumb(item_id: int):
    """The grid thumbnail (cached on disk)."""
    rt, path = _image_path(item_id)
    web = rt.settings.web
    resp = send_thumbnail(path, web.thumb_size, rt.settings.resolve_path(web.thumb_cache_dir), web.max_image_pixels,
                          web.cache_max_age_s)
    if resp is None:
        abort(404)
    return resp


def _data_url_preview(image, side: int = 480) -> str:
    small = image.copy()
    small.thumbnail((side, side))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
