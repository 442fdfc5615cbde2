"""JSON API: search by photo, items, similar items, filter values, and the OpenAPI document.

Described in web/api/openapi.py (served at /api/openapi.json); tests validate real responses against it.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from engine.models.text_tower import TextTowerError
from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.search.composed import EmptyQueryError, UnknownItemsError
from indexer.search.query import QueryOptions
from indexer.store.catalog_store import FilterError
from indexer.vectors.generations import GenerationError
from web.api.openapi import openapi_document
from web.api.params import parse_item_id, parse_search_request, parse_similar_args
from web.api.serializers import garment_json, hit_json, item_json
from web.errors import ApiError
from web.runtime import runtime
from web.searched_photos import remember_search

bp = Blueprint("api", __name__, url_prefix="/api")


def _query_json(options: QueryOptions) -> dict[str, Any]:
    out = {"k": options.k, "offset": options.offset, "filters": options.filters or {},
           "threshold": options.threshold, "crop": list(options.crop) if options.crop else None}
    if options.composed:
        out.update({"text": options.text, "negative_text": options.negative_text,
                    "positive_ids": list(options.positive_ids), "negative_ids": list(options.negative_ids)})
    if options.collapse != "none":
        out["collapse"] = options.collapse
    return out


def _run(fn, *args):
    """Call into the library, turning its known errors into API errors."""
    try:
        return fn(*args)
    except FilterError as exc:
        raise ApiError(400, str(exc)) from None
    except (ImageDecodeError, UnknownItemsError, EmptyQueryError) as exc:
        raise ApiError(400, str(exc)) from None
    except TextTowerError as exc:  # no text model for the served image model: text search is unavailable
        raise ApiError(503, f"search by words is not available: {exc}", "text_unavailable") from None
    except GenerationError as exc:  # also SearchUnavailableError: the vector store cannot answer (Milvus down, ...)
        raise ApiError(503, f"the search index is not available: {exc}", "index_unavailable") from None


@bp.post("/search")
def search():
    """Search by photo (multipart `image` or JSON base64 `image`)."""
    rt = runtime(current_app)
    web = rt.settings.web
    t0 = time.perf_counter()
    parsed = parse_search_request(request, web)
    image = None
    if parsed.image is not None:
        try:
            image = decode_image(parsed.image, web.max_image_pixels, web.decode_min_side)
        except ImageDecodeError as exc:
            raise ApiError(400, f"could not read the photo: {exc}") from None
    t1 = time.perf_counter()
    if image is None and not parsed.options.composed:
        raise ApiError(400, "no photo and no words, so nothing to search for: send a photo (image), words (text) "
                            "or thumbs-up items")
    if parsed.options.composed:  # words and / or thumbs up / down, with or without a photo
        result = _run(rt.query.search_composed, image, parsed.options)
    else:
        result = _run(rt.query.search, image, parsed.options)
    gen = _run(rt.search.served)[0].manifest.name
    # "Why?" explains a result against what this search embedded, by this id (GET /api/explain?query=<search id>).
    search_id = (remember_search(rt.searched_photos, image, result, rt.query.embedder_for(result))
                 if image is not None else None)
    # the uploaded size, before reduced decoding; None for a query without a photo
    width, height = image.info.get("original_size", image.size) if image is not None else (None, None)
    query = {**_query_json(parsed.options), "width": width, "height": height, "localized": result.localized}
    if parsed.options.composed:
        query["labels"] = result.named_labels
    body = {
        "query": query,
        "regions": [r.as_dict() for r in result.regions],
        "results": [hit_json(h, r) for h, r in zip(result.hits, result.region_of_hit, strict=True)],
        "garments": [garment_json(result, g) for g in result.garments],
        "default_garment": result.default_garment,
        "has_more": result.has_more,
        "search_id": search_id,
        "generation": gen,
        "timing_ms": {"decode": round((t1 - t0) * 1000, 2), **result.timings_ms,
                      "total": round((time.perf_counter() - t0) * 1000, 2)},
    }
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/items/<int:item_id>")
def get_item(item_id: int):
    rt = runtime(current_app)
    items = rt.store.get_items([parse_item_id(item_id)])
    if item_id not in items:
        raise ApiError(404, f"no item {item_id}")
    resp = jsonify(item_json(items[item_id]))
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@bp.get("/items/<int:item_id>/similar")
def similar(item_id: int):
    rt = runtime(current_app)
    options = parse_similar_args(request, rt.settings.web)
    items = rt.store.get_items([parse_item_id(item_id)])
    if item_id not in items:
        raise ApiError(404, f"no item {item_id}")
    found = _run(rt.query.similar_to_item, item_id, options)
    if found is None:
        raise ApiError(404, f"item {item_id} has no embedding from the current model yet")
    hits, has_more = found
    resp = jsonify({"item": item_json(items[item_id]), "query": _query_json(options),
                    "results": [hit_json(h) for h in hits], "has_more": has_more,
                    "generation": _run(rt.search.served)[0].manifest.name})
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/filters")
def filters():
    """Filterable columns and, for taxonomy columns, their values."""
    rt = runtime(current_app)
    facets = rt.facets()
    columns = rt.store.filterable_columns()
    return jsonify({"columns": columns, "values": facets})


@bp.get("/openapi.json")
def openapi():
    settings = runtime(current_app).settings
    resp = jsonify(openapi_document(settings.web, settings.outfit))
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp

