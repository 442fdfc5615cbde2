"""Complete the look: GET /api/items/<id>/outfit, POST /api/outfit, and the outfit panel's template helper.

A thin client of indexer.outfits.service.OutfitService, built once per process next to the search service.
Described in web/outfits/openapi.py (merged into /api/openapi.json).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request

from engine.outfits.model import OutfitModelError
from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.outfits.service import OutfitResult, OutfitService
from indexer.outfits.slots import SlotRulesError
from indexer.outfits.wiring import create_outfit_service
from indexer.search.service import Hit
from indexer.store.catalog_store import FilterError
from indexer.vectors.generations import GenerationError
from web.api.params import decode_base64_image, parse_crop, parse_filters, parse_int, parse_item_id
from web.api.serializers import hit_json
from web.errors import ApiError
from web.runtime import runtime

log = logging.getLogger(__name__)
bp = Blueprint("outfits", __name__, url_prefix="/api")

OUTFIT_FIELDS = ("image", "crop", "slot", "per_slot", "filters", "filter")
ITEM_OUTFIT_FIELDS = ("per_slot", "filters", "filter")
MAX_PER_SLOT = 24
# How slots are named to shoppers; other slot names are shown capitalised with spaces.
SLOT_LABELS = {"topwear": "Top", "bottomwear": "Bottom", "one_piece": "One-piece", "footwear": "Shoes",
               "bag": "Bag", "accessory": "Accessory"}
_EXTENSION = "lookalike_outfits"
_lock = threading.Lock()


def outfit_service(app: Flask) -> OutfitService:
    """The process's OutfitService, built on first use (loads the outfit model; checks it fits the served model).

    Raises:
        OutfitModelError: No usable outfit model.
        SlotRulesError: Bad outfit.slots / outfit.templates.
    """
    service = app.extensions.get(_EXTENSION)
    if service is None:
        with _lock:
            service = app.extensions.get(_EXTENSION)
            if service is None:
                rt = runtime(app)
                service = create_outfit_service(rt.settings, rt.search, embed=rt.query.embed)
                app.extensions[_EXTENSION] = service
    return service


def _run(fn, *args, **kwargs):
    """Call into the library, turning its known errors into API errors."""
    try:
        return fn(*args, **kwargs)
    except (FilterError, ImageDecodeError, SlotRulesError) as exc:
        raise ApiError(400, str(exc)) from None
    except OutfitModelError as exc:
        raise ApiError(503, f"outfits are not available: {exc}", "outfits_unavailable") from None
    except GenerationError as exc:
        raise ApiError(503, f"the search index is not available: {exc}", "index_unavailable") from None


def slot_label(slot: str) -> str:
    return SLOT_LABELS.get(slot, slot.replace("_", " ").capitalize())


def outfit_hit_json(hit: Hit, slot: str) -> dict[str, Any]:
    out = hit_json(hit)
    out["slot"] = slot
    return out


def outfit_json(result: OutfitResult, service: OutfitService, query: dict[str, Any]) -> dict[str, Any]:
    """The API body for an outfit (the OutfitResponse schema)."""
    slots = [{"slot": s.slot, "label": slot_label(s.slot), "candidates": s.candidates,
              "items": [outfit_hit_json(h, s.slot) for h in s.hits]} for s in result.slots]
    return {
        "query": {**query, "slot": result.query_slot, "slot_source": result.slot_source,
                  "slot_confidence": None if result.slot_confidence is None else round(result.slot_confidence, 4)},
        "outfit": [s["items"][0] for s in slots if s["items"]],
        "slots": slots,
        "note": result.note,
        "model": {"proxy": service.proxy_trained,
                  "trained_on": str(service.meta.get("trained_on", "unknown")),
                  "fingerprint": str(service.meta.get("fingerprint", ""))},
        "generation": result.generation,
    }


def _reject_unknown(keys: Any, known: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in keys if k not in known)
    if unknown:
        raise ApiError(400, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")


def _per_slot(value: Any) -> int | None:
    return None if value in (None, "") else parse_int("per_slot", value, 1, MAX_PER_SLOT)


def _filter_pairs(value: Any) -> list[str] | None:
    if value is None:
        return None
    return value if isinstance(value, list) else [value]


@bp.get("/items/<int:item_id>/outfit")
def item_outfit(item_id: int):
    """The complete look around a catalog item."""
    rt = runtime(current_app)
    _reject_unknown(request.args, ITEM_OUTFIT_FIELDS)
    per_slot = _per_slot(request.args.get("per_slot"))
    filters = parse_filters(request.args.get("filters"), request.args.getlist("filter"))
    items = rt.store.get_items([parse_item_id(item_id)])
    if item_id not in items:
        raise ApiError(404, f"no item {item_id}")
    service = _run(outfit_service, current_app)
    result = _run(service.for_item, item_id, filters, per_slot)
    if result is None:
        raise ApiError(404, f"item {item_id} has no embedding from the current model yet")
    body = outfit_json(result, service, {"item": item_id, "filters": filters or {}, "crop": None,
                                         "per_slot": per_slot or rt.settings.outfit.per_slot})
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _outfit_params() -> tuple[bytes, dict[str, Any]]:
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        _reject_unknown(set(request.form) | set(request.args) | set(request.files), OUTFIT_FIELDS)
        upload = request.files.get("image")
        if upload is None or len(request.files) > 1:
            raise ApiError(400, "no photo: send exactly one multipart file field named image")
        params: dict[str, Any] = {k: v for src in (request.args, request.form) for k, v in src.items()}
        pairs = request.args.getlist("filter") + request.form.getlist("filter")
        params["filter"] = pairs or None
        return upload.read(), params
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            body = json.loads(request.get_data(cache=True))
        except (ValueError, RecursionError):
            raise ApiError(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, 'the JSON body must be an object such as {"image": "<base64>"}')
        _reject_unknown(body, OUTFIT_FIELDS)
        if "image" not in body:
            raise ApiError(400, "no photo: put its bytes, base64-encoded, in the image field")
        return decode_base64_image(body["image"]), body
    raise ApiError(400, f"unsupported content type {mimetype or '(none)'}: send multipart/form-data with an image "
                        "file, or application/json with a base64 image")


@bp.post("/outfit")
def photo_outfit():
    """The complete look around a photo (or the crop box of it); the slot comes from the classifier unless given."""
    rt = runtime(current_app)
    data, params = _outfit_params()
    if not data:
        raise ApiError(400, "the photo is empty (0 bytes)")
    per_slot = _per_slot(params.get("per_slot"))
    filters = parse_filters(params.get("filters"), _filter_pairs(params.get("filter")))
    crop = parse_crop(params.get("crop"))
    slot = params.get("slot") or None
    if slot is not None and not isinstance(slot, str):
        raise ApiError(400, "slot must be a slot name such as footwear")
    try:
        image = decode_image(data, rt.settings.web.max_image_pixels, rt.settings.web.decode_min_side)
    except ImageDecodeError as exc:
        raise ApiError(400, f"could not read the photo: {exc}") from None
    service = _run(outfit_service, current_app)
    result = _run(service.for_image, image, crop, slot, filters, per_slot)
    body = outfit_json(result, service, {"item": None, "filters": filters or {}, "crop": list(crop) if crop else None,
                                         "per_slot": per_slot or rt.settings.outfit.per_slot})
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def complete_the_look(item_id: int) -> dict[str, Any]:
    """Template helper for the item page's "Complete the look" panel: {"outfit", "slots", "error", "proxy"}.

    Never raises: a page without outfits is better than a broken page.
    """
    unavailable = {"outfit": [], "slots": [], "error": "Outfits are not available right now.", "proxy": False}
    try:
        service = outfit_service(current_app)
        result = service.for_item(item_id)
    except (OutfitModelError, GenerationError, SlotRulesError) as exc:
        # The reason (with server paths and the command that fixes it) is for the operator, not the shopper.
        log.warning("outfit panel unavailable: %s", exc)
        return unavailable
    except Exception:  # noqa: BLE001 - never break the item page over the outfit panel
        current_app.logger.exception("outfit panel failed for item %s", item_id)
        return unavailable
    if result is None:
        return {"outfit": [], "slots": [], "error": None, "note": None, "proxy": service.proxy_trained}
    slots = [{"slot": s.slot, "label": slot_label(s.slot), "items": [outfit_hit_json(h, s.slot) for h in s.hits]}
             for s in result.slots]
    return {"outfit": [s["items"][0] for s in slots if s["items"]], "slots": slots, "error": None,
            "note": result.note, "query_slot": result.query_slot, "proxy": service.proxy_trained}


def warm_up_outfits(app: Flask) -> None:
    """Load the outfit model and build its catalog state before the first request (server start); a missing or
    mismatched model is logged, not fatal: the outfit endpoints then answer 503 saying how to fix it."""
    try:
        n = outfit_service(app).warm_up()
    except (OutfitModelError, SlotRulesError, GenerationError) as exc:
        log.warning("outfits unavailable: %s", exc)
        return
    log.info("outfits ready: %d catalog items in outfit slots", n)


def register_outfits(app: Flask) -> None:
    """Register the outfit API and the template helper on the app."""
    app.register_blueprint(bp)
    app.add_template_global(complete_the_look, "complete_the_look")
