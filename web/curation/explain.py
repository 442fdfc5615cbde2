"""`/api/explain`: why a result matched its query. GET ?query=<search id>&item=<id>[&region=N] explains a result of
a photo search against the picture that search embedded (kept by search id: web/searched_photos.py); GET
?query=<item id>&item=<id> compares two catalog items (the query item of "more like this" and a result); POST
multipart (image=<a photo>, item=<id>) compares a sent photo with a result. All answer the cosine, a heatmap on each
picture and the attributes the model reads from each (engine/explain.py). A photo's side goes through the query
embedder (the model that embeds query photos in a search), a catalog item's through the served model. Open like the
search API; forward passes run on the query engine's model thread."""

from __future__ import annotations

import time
from functools import partial

from flask import Blueprint, current_app, jsonify, request

from engine.explain import METHODS, explain_pair
from engine.localize import looks_like_product_shot
from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.vectors.generations import GenerationError
from web.api.params import MAX_ITEM_ID
from web.errors import ApiError
from web.runtime import runtime
from web.searched_photos import SEARCH_TTL_S, SEARCHES_KEPT, looks_like_search_id

bp = Blueprint("explain", __name__, url_prefix="/api")

GET_FIELDS = ("query", "item", "method", "region")
POST_FIELDS = ("image", "item", "method")


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


def _answer(query_image, item_id: int, method: str, query_ref: dict, photo_query: bool):
    """The explanation; ``photo_query``: the query side is a shopper's photo (embedded by the query embedder)."""
    rt = runtime(current_app)
    item_image = _item_image(item_id)
    t0 = time.perf_counter()
    try:
        engine = rt.query
    except GenerationError as exc:
        raise ApiError(503, f"the search index is not available: {exc}", "index_unavailable") from None
    explain = partial(explain_pair, query_embedder=engine.query_embedder if photo_query else None)
    result = engine.on_model_thread(explain, rt.search.embedder, query_image, item_image, method)
    body = {"query_ref": query_ref, "item_id": item_id, **result,
            "timing_ms": round((time.perf_counter() - t0) * 1000, 2)}
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _searched_region(search_id: str, item_id: int, region: str | None):
    """(picture, query_ref, whether the query embedder embedded it) of the region of search ``search_id`` that
    answered ``item_id`` (or ``region``); a product shot was embedded by the served model."""
    photo = runtime(current_app).searched_photos.recall(search_id)
    if photo is None:
        raise ApiError(404, f"search {search_id} is unknown or expired: a search's photo is kept for "
                            f"{SEARCH_TTL_S / 60:g} minutes (the latest {SEARCHES_KEPT} searches of a server process); "
                            "search again", "search_expired")
    if region in (None, ""):
        index = photo.region_of_item.get(item_id, 0)  # not one of its results: the whole photo (or the crop box)
    elif not str(region).isdigit() or int(region) not in photo.regions:
        kept = ", ".join(str(i) for i in sorted(photo.regions))
        raise ApiError(400, f"region must be the index of a region of search {search_id} that answered results "
                            f"({kept}), got {str(region)[:40]!r}")
    else:
        index = int(region)
    kept_region = photo.regions[index]
    ref = {"search": search_id, "region": index, "box": [round(v, 6) for v in kept_region.box],
           "result": item_id in photo.region_of_item}
    return kept_region.picture, ref, not photo.product_shot


def _reject_unknown(names, known: tuple[str, ...]) -> None:  # noqa: ANN001 - request multidict keys
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ApiError(400, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")


@bp.get("/explain")
def explain_get():
    """Explain item ``item`` as a result for search ``query`` (a search id) or for catalog item ``query``."""
    _reject_unknown(request.args, GET_FIELDS)
    query = request.args.get("query")
    item_id = _item_id("item", request.args.get("item"))
    method = _method(request.args.get("method"))
    region = request.args.get("region")
    if query is not None and looks_like_search_id(query):
        picture, ref, street_photo = _searched_region(query, item_id, region)
        return _answer(picture, item_id, method, ref, photo_query=street_photo)
    if region not in (None, ""):
        raise ApiError(400, "region goes with a search id in query (s-...), not with an item id")
    if query not in (None, "") and not str(query).isdigit():
        raise ApiError(400, "query must be a search id (s-... from POST /api/search) or a catalog item id, got "
                            f"{str(query)[:40]!r}")
    query_id = _item_id("query", query)
    return _answer(_item_image(query_id), item_id, method, {"item": query_id}, photo_query=False)


@bp.post("/explain")
def explain_photo():
    """Explain item ``item`` as a result for the uploaded photo (multipart field ``image``)."""
    _reject_unknown(set(request.form) | set(request.args) | set(request.files), POST_FIELDS)
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
    # As in a search: a product shot goes through the served model, any other photo through the query embedder.
    return _answer(image, item_id, method, {"photo": True}, photo_query=not looks_like_product_shot(image))
