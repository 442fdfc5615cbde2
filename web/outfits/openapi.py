"""OpenAPI paths and schemas of the outfit endpoints (web/outfits/routes.py), merged into /api/openapi.json."""

from __future__ import annotations

from typing import Any

from indexer.settings import OutfitSettings, WebSettings


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def outfit_schemas(schemas: dict[str, Any]) -> dict[str, Any]:
    """OutfitItem, OutfitSlot and OutfitResponse, built on the document's Hit schema."""
    hit = schemas["Hit"]
    item = {"type": "object", "additionalProperties": False, "required": [*hit["required"], "slot"],
            "properties": {**{k: v for k, v in hit["properties"].items() if k != "region"},
                           "score": {"type": "number", "minimum": -1, "maximum": 1,
                                     "description": "Compatibility with the query: cosine in the learned subspace "
                                                    "of the (query slot, this slot) pair; higher goes better."},
                           "slot": {"type": "string", "description": "The outfit slot this item fills."}}}
    item["required"] = [r for r in item["required"] if r != "region"]
    slot = {"type": "object", "additionalProperties": False, "required": ["slot", "label", "candidates", "items"],
            "properties": {"slot": {"type": "string"}, "label": {"type": "string", "description": "For shoppers."},
                           "candidates": {"type": "integer", "minimum": 0,
                                          "description": "Catalog items of this slot that pass the filters."},
                           "items": {"type": "array", "items": _ref("OutfitItem"),
                                     "description": "Best first, varied (maximal marginal relevance)."}}}
    query = {"type": "object", "additionalProperties": False,
             "required": ["item", "filters", "crop", "per_slot", "slot", "slot_source", "slot_confidence"],
             "properties": {
                 "item": {"type": ["integer", "null"], "description": "The query item, or null for a photo."},
                 "filters": {"type": "object",
                             "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                 "crop": {"oneOf": [{"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
                                    {"type": "null"}]},
                 "per_slot": {"type": "integer", "minimum": 1},
                 "slot": {"type": ["string", "null"], "description": "The query's slot; null: not an outfit item."},
                 "slot_source": {"enum": ["taxonomy", "classifier", "client"]},
                 "slot_confidence": {"type": ["number", "null"],
                                     "description": "The slot classifier's probability (photos, untagged items)."}}}
    response = {
        "type": "object", "additionalProperties": False,
        "required": ["query", "outfit", "slots", "note", "model", "generation"],
        "properties": {
            "query": query,
            "outfit": {"type": "array", "items": _ref("OutfitItem"),
                       "description": "The complete outfit: the first item of every complementary slot."},
            "slots": {"type": "array", "items": _ref("OutfitSlot"),
                      "description": "Every complementary slot of the query's outfit template, in template order."},
            "note": {"type": ["string", "null"]},
            "model": {"type": "object", "additionalProperties": False, "required": ["proxy", "trained_on",
                                                                                       "fingerprint"],
                      "properties": {"proxy": {"type": "boolean",
                                               "description": "True: learned from PROXY outfits derived from "
                                                              "catalog taxonomy, not from real outfits."},
                                     "trained_on": {"type": "string"}, "fingerprint": {"type": "string"}}},
            "generation": {"type": "string"},
        },
    }
    return {"OutfitItem": item, "OutfitSlot": slot, "OutfitResponse": response}


def outfit_paths(web: WebSettings, outfit: OutfitSettings, errors: dict[str, Any],
                 filter_params: dict[str, Any]) -> dict[str, Any]:
    """The two outfit operations."""
    per_slot = {"type": "integer", "minimum": 1, "maximum": 24, "default": outfit.per_slot,
                "description": "Items per complementary slot."}
    item_id = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    ok = {"description": "The look: per complementary slot, the most compatible items.",
          "content": {"application/json": {"schema": _ref("OutfitResponse")}}}
    unavailable = {"description": "No outfit model fits the served model, or no index yet (the message says which "
                                  "command fixes it).", "content": errors["503"]["content"]}
    photo_props = {
        "crop": filter_params["crop"],
        "slot": {"type": "string", "description": "The photo's slot (default: the slot classifier decides)."},
        "per_slot": per_slot,
        "filters": filter_params["filters"],
        "filter": filter_params["filter"],
    }
    return {
        "/api/items/{item_id}/outfit": {"get": {
            "operationId": "itemOutfit", "summary": "Complete the look around a catalog item",
            "description": "Filters restrict the candidates before ranking (inside the search).",
            "parameters": [item_id,
                           {"name": "per_slot", "in": "query", "schema": per_slot},
                           {"name": "filter", "in": "query", "schema": filter_params["filter"], "style": "form",
                            "explode": True, "description": filter_params["filter"]["description"]},
                           {"name": "filters", "in": "query", "schema": filter_params["filters"],
                            "description": filter_params["filters"]["description"]}],
            "responses": {"200": ok, **{c: errors[c] for c in ("400", "404", "405", "429", "500")}, "503": unavailable},
        }},
        "/api/outfit": {"post": {
            "operationId": "photoOutfit", "summary": "Complete the look around a photo (or a crop of it)",
            "description": f"Body at most {web.max_upload_mb} MB. The photo's slot comes from the slot classifier "
                           "unless `slot` is given.",
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {
                    "type": "object", "required": ["image"],
                    "properties": {"image": {"type": "string", "contentMediaType": "application/octet-stream"},
                                   **photo_props}}},
                "application/json": {"schema": {
                    "type": "object", "required": ["image"], "additionalProperties": False,
                    "properties": {"image": {"type": "string", "contentEncoding": "base64"},
                                   **{k: v for k, v in photo_props.items() if k != "filter"}}}},
            }},
            "responses": {"200": ok, **{c: errors[c] for c in ("400", "405", "413", "429", "500")}, "503": unavailable},
        }},
    }
