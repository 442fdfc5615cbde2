"""`/api/explain`: why a result matched its query. GET ?query=<item id>&item=<id> compares two catalog items
(the query item of "more like this" and a result); POST multipart (image=<the shopper's photo>, item=<id>) compares
a photo with a result. Both answer the cosine, a heatmap on each picture and the attributes the model reads from
each (engine/explain.py). Open like the search API; forward passes run on the query engine's model thread."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from engine.explain import METHODS, explain_pair
from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.vectors.generations import GenerationError
from web.api.params import MAX_ITEM_ID
from web.errors import ApiError
from web.runtime import runtime

bp = Blueprint("explain", __name__, url_prefix="/api")

EXPLAIN_FIELDS = ("query", "item", "method", "image")


def _item_id(name: str, value: str | None) -> int:
    if value in (None, ""):
        raise ApiError(400, f"{name} is required: a catalog item id")
    if not str(value).isdigit() or not 1 <= int(value) <= MAX_ITEM_ID:
        raise ApiError(400, f"{name} must be a catalog item id (a positive integer), got {str(value)[:40]!r}")
    return int(value)


def _method(value: str | None) -> str:
    if value in (None, ""):
        return "occlusion"
    if value not in METHODS:
        raise ApiError(400, f"method must be one of {', '.join(METHODS)}, got {str(value)[:40]!r}")
    return str(value)


def _item_image(item_id: int):
    rt = runtime(current_app)
    path = rt.store.image_path(item_id) if rt.store.get_items([item_id]) else None
    if path is None:
        raise ApiError(404, f"no item {item_id}")
    try:
        with open(path, "rb") as fh:
            return decode_image(fh.read(), rt.settings.web.max_image_pixels)
    except (OSError, ImageDecodeError) as exc:
        raise ApiError(503, f"the picture of item {item_id} cannot be read now: {exc}", "image_unavailable") from None


def _answer(query_image, item_id: int, method: str, query_ref: dict):
    rt = runtime(current_app)
    item_image = _item_image(item_id)
    t0 = time.perf_counter()
    try:
        engine = rt.query
    except GenerationError as exc:
        raise ApiError(503, f"the search index is not available: {exc}", "index_unavailable") from None
    result = engine.on_model_thread(explain_pair, rt.search.embedder, query_image, item_image, method)
    body = {"query_ref": query_ref, "item_id": item_id, **result,
            "timing_ms": round((time.perf_counter() - t0) * 1000, 2)}
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _reject_unknown(names) -> None:  # noqa: ANN001 - request multidict keys
    unknown = sorted(set(names) - set(EXPLAIN_FIELDS))
    if unknown:
        raise ApiError(400, f"unknown parameter(s) {', '.join(unknown)}; known: query, item, method (POST: image)")


@bp.get("/explain")
def explain_items():
    """Explain item ``item`` as a result for catalog item ``query``."""
    _reject_unknown(request.args)
    query_id = _item_id("query", request.args.get("query"))
    item_id = _item_id("item", request.args.get("item"))
    method = _method(request.args.get("method"))
    return _answer(_item_image(query_id), item_id, method, {"item": query_id})


@bp.post("/explain")
def explain_photo():
    """Explain item ``item`` as a result for the uploaded photo (multipart field ``image``)."""
    _reject_unknown(set(request.form) | set(request.args) | set(request.files))
    upload = request.files.get("image")
    if upload is None:
        raise ApiError(400, "image is required: the photo the result answered (multipart field image)")
    fields = {**request.args.to_dict(), **request.form.to_dict()}
    item_id = _item_id("item", fields.get("item"))
    method = _method(fields.get("method"))
    try:
        image = decode_image(upload.read(), runtime(current_app).settings.web.max_image_pixels)
    except ImageDecodeError as exc:
        raise ApiError(400, f"could not read the photo: {exc}") from None
    return _answer(image, item_id, method, {"photo": True})
