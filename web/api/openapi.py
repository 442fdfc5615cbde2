"""The OpenAPI 3.1 document of the JSON API (served at /api/openapi.json).

Schemas are JSON Schema 2020-12 (OpenAPI 3.1's dialect), so tests validate real responses against them
with jsonschema. Keep this in step with web/api/routes.py: the tests fail when a response drifts from it.
"""

from __future__ import annotations

from typing import Any

from indexer.curation.collapse import COLLAPSE_MODES
from indexer.search.query import LOCALIZE_MODES
from indexer.settings import OutfitSettings, WebSettings
from web.api.params import MAX_EXAMPLE_IDS, MAX_TEXT_CHARS
from web.searched_photos import SEARCH_TTL_S, SEARCHES_KEPT


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str | list[str], **extra: Any) -> dict[str, Any]:
    kinds = [kind] if isinstance(kind, str) else kind
    return {"type": [*kinds, "null"], **extra}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


ERRORS = {
    "400": _error_response("Malformed request: bad image, parameter, filter or crop box; the message says which."),
    "404": _error_response("No such item."),
    "405": _error_response("Method not allowed."),
    "413": _error_response("Request body over web.max_upload_mb."),
    "500": _error_response("Unexpected server error (logged; no details leak)."),
    "429": _error_response("Too many searches from this client (web.rate_limit_per_minute; loopback exempt by "
                           "default); code rate_limited, with a Retry-After header."),
    "503": _error_response("No index generation can be served yet (index_unavailable), or every embedding slot "
                           "is busy (busy, with a Retry-After header: web.max_concurrent_embeddings)."),
}


def _schemas(web: WebSettings) -> dict[str, Any]:
    box = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "minItems": 4, "maxItems": 4,
           "description": "x0, y0, x1, y1 as fractions of the photo's width and height."}
    item_props = {
        "id": {"type": "integer", "description": "Lookalike's item id (use it in /api/items/{item_id})."},
        "external_id": {"type": "string", "description": "The id in the merchant's catalog."},
        "title": {"type": "string"},
        "gender": _nullable("string"),
        "master_category": _nullable("string"),
        "sub_category": _nullable("string"),
        "article_type": _nullable("string"),
        "base_colour": _nullable("string"),
        "usage": _nullable("string"),
        "price": _nullable("number"),
        "attributes": {"type": "object", "description": "Other catalog columns.",
                       "additionalProperties": True},
        "image_url": {"type": "string", "description": "The full picture."},
        "thumb_url": {"type": "string", "description": f"A JPEG at most {web.thumb_size}px on its longer side."},
        "item_url": {"type": "string", "description": "The item's HTML page."},
    }
    item_required = list(item_props)
    query_props = {
        "k": {"type": "integer", "minimum": 1, "maximum": web.max_k},
        "offset": {"type": "integer", "minimum": 0},
        "filters": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "threshold": _nullable("number"),
        "crop": {"oneOf": [box, {"type": "null"}]},
    }
    return {
        "Error": {
            "type": "object", "required": ["error"], "additionalProperties": False,
            "properties": {"error": {
                "type": "object", "required": ["status", "code", "message"], "additionalProperties": False,
                "properties": {"status": {"type": "integer", "minimum": 400, "maximum": 599},
                               "code": {"type": "string", "examples": ["bad_request", "not_found"]},
                               "message": {"type": "string", "minLength": 1,
                                           "description": "What went wrong, written for a person."}}}},
        },
        "Item": {"type": "object", "required": item_required, "additionalProperties": False,
                 "properties": item_props},
        "Hit": {"type": "object", "required": [*item_required, "score"], "additionalProperties": False,
                "properties": {**item_props,
                               "score": {"type": "number",
                                         "description": "Cosine similarity (higher is closer); for words that name "
                                                        "a colour, plus the colour term (at most 0; "
                                                        "docs/text-search.md)."},
                               "region": {"type": "integer", "minimum": 0,
                                          "description": "Index into `regions`: the part of the photo that "
                                                         "matched this item best."},
                               "more_ids": {"type": "array", "items": {"type": "integer"},
                                            "description": "With collapse: the other items of this result's "
                                                           "duplicate / variant group (\"+N more\")."}}},
        "Region": {"type": "object", "required": ["box", "source", "best_score", "hits"],
                   "additionalProperties": False,
                   "properties": {"box": box,
                                  "source": {"enum": ["whole", "user", "grid", "centre", "activation", "saliency",
                                                      "detector"]},
                                  "best_score": _nullable("number"),
                                  "hits": {"type": "integer", "minimum": 0,
                                           "description": "Returned results this region explains best."},
                                  "label": {"type": "string"}, "confidence": {"type": "number"}}},
        "Garment": {
            "type": "object", "additionalProperties": False,
            "required": ["box", "slot", "confidence", "region", "focus", "results"],
            "description": "A garment the detector found in the photo (web.detector; trained on SYNTHETIC scenes).",
            "properties": {"box": box,
                           "slot": {"type": "string", "examples": ["topwear", "footwear"],
                                    "description": "Outfit slot of the garment ([outfit] slots)."},
                           "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                           "region": {"type": "integer", "minimum": 0, "description": "Index into `regions`."},
                           "focus": {"type": "number", "minimum": 0,
                                     "description": "centrality^4 x the garment's best match similarity: the "
                                                    "highest is the default garment."},
                           "results": {"type": "array", "items": _ref("Hit"),
                                       "description": "This garment's own first k results."}}},
        "SearchResponse": {
            "type": "object", "additionalProperties": False,
            "required": ["query", "regions", "results", "garments", "default_garment", "has_more", "search_id",
                         "generation", "timing_ms"],
            "properties": {
                "query": {"type": "object", "additionalProperties": False,
                          "required": [*query_props, "width", "height", "localized"],
                          "properties": {**query_props, **_composed_query_props(), "collapse": COLLAPSE_PROP,
                                         "width": {"type": ["integer", "null"], "minimum": 1,
                                                   "description": "The photo's width; null without a photo."},
                                         "height": {"type": ["integer", "null"], "minimum": 1},
                                         "localized": {"type": "boolean",
                                                       "description": "True when crops of the photo were searched "
                                                                      "besides the whole photo."}}},
                "regions": {"type": "array", "items": _ref("Region"),
                            "description": "Searched parts of the photo; empty for a query without a photo."},
                "results": {"type": "array", "items": _ref("Hit")},
                "garments": {"type": "array", "items": _ref("Garment"),
                             "description": "Detected garments, each with its results (localize=auto with a "
                                            "detector and no crop box); empty otherwise. `results` then starts "
                                            "with `default_garment`'s results (the whole photo only where it "
                                            "matches clearly better), then every garment and the whole photo "
                                            "merged by best evidence."},
                "default_garment": {"type": ["integer", "null"], "minimum": 0,
                                    "description": "Index into `garments` of the garment `results` answers."},
                "has_more": {"type": "boolean", "description": "More results exist past offset + k."},
                "search_id": {"type": ["string", "null"], "pattern": "^s-[0-9a-f]{16}$",
                              "description": "With a photo: this search's id for GET /api/explain?query=<search_id>"
                                             "&item=<id> (\"Why?\"), which explains a result against the part of the "
                                             f"photo that found it. Kept in the server process's memory for "
                                             f"{SEARCH_TTL_S / 60:g} minutes (the latest {SEARCHES_KEPT} searches); "
                                             "null without a photo."},
                "generation": {"type": "string", "description": "The index generation that answered."},
                "timing_ms": {"type": "object", "additionalProperties": {"type": "number"}},
            },
        },
        "SimilarResponse": {
            "type": "object", "additionalProperties": False,
            "required": ["item", "query", "results", "has_more", "generation"],
            "properties": {"item": _ref("Item"),
                           "query": {"type": "object", "additionalProperties": False, "required": list(query_props),
                                     "properties": {**query_props, "collapse": COLLAPSE_PROP}},
                           "results": {"type": "array", "items": _ref("Hit")},
                           "has_more": {"type": "boolean"}, "generation": {"type": "string"}},
        },
        "Filters": {
            "type": "object", "required": ["columns", "values"], "additionalProperties": False,
            "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                           "values": {"type": "object",
                                      "additionalProperties": {"type": "array", "items": {"type": "string"}}}},
        },
        "Health": {
            "type": "object", "required": ["ok"],
            "properties": {"ok": {"type": "boolean"}, "generation": {"type": "string"},
                           "count": {"type": "integer"}, "spec": {"type": "string"},
                           "backend": {"type": "string"}, "fingerprint": {"type": "string"},
                           "dim": {"type": "integer"}, "warning": {"type": "string"},
                           "probe_ms": {"type": "number"}, "error": {"type": "string"}},
        },
    }


COLLAPSE_PROP = {"enum": list(COLLAPSE_MODES),
                 "description": "One result per duplicate (same picture) or variant (same shape, other colourway) "
                                "group of the latest `manage.py duplicates` run; the rest in the result's more_ids. "
                                "Any query: a photo, words, both, thumbs up / down."}


def _composed_query_props() -> dict[str, Any]:
    """What a search by words / thumbs up-down echoes back in `query` (present only for such a search)."""
    ids = {"type": "array", "items": {"type": "integer", "minimum": 1}}
    return {"text": {"type": "string"}, "negative_text": {"type": "string"}, "positive_ids": ids,
            "negative_ids": ids,
            "labels": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                       "examples": [{"colour": ["Navy Blue"], "article_type": ["Shirts", "not Tshirts"]}],
                       "description": "Catalog labels the words named, per kind (article_type, colour; \"not X\" "
                                      "from negative_text), which ranked items of that colour / type first."}}


def _text_params_doc() -> dict[str, Any]:
    """Search by words and relevance feedback (docs/text-search.md); each works with or without `image`."""
    ids = {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": MAX_EXAMPLE_IDS}
    return {
        "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS, "examples": ["navy linen shirt"],
                 "description": "Words to search for; with a photo, a modifier of it (\"in red\", \"for women\")."},
        "negative_text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS, "examples": ["striped"],
                          "description": "Words the results should be unlike."},
        "positive_ids": {**ids, "description": "Thumbs up: item ids the results should be like (a form: 12,34)."},
        "negative_ids": {**ids, "description": "Thumbs down: item ids to drop, with their look-alikes."},
    }


def _search_params_doc(web: WebSettings) -> dict[str, Any]:
    return {
        "k": {"type": "integer", "minimum": 1, "maximum": web.max_k, "default": web.default_k,
              "description": "How many results."},
        "offset": {"type": "integer", "minimum": 0, "default": 0,
                   "description": f"Skip this many results (load more); offset + k <= {web.max_results}."},
        "threshold": {"type": "number", "minimum": -1, "maximum": 1,
                      "description": "Only results with at least this cosine similarity (for words that name a "
                                     "colour: this score, colour term included)."},
        "crop": {"type": "string", "examples": ["0.2,0.3,0.7,0.9"],
                 "description": "Search only this box of the photo: x0,y0,x1,y1 as fractions (JSON: also a list)."},
        "filters": {"type": "string", "examples": ['{"gender": ["Men"], "base_colour": ["Blue", "Navy Blue"]}'],
                    "description": "JSON object column -> value or list of values; values of a column are OR-ed, "
                                   "columns AND-ed. Applied inside the vector search, so k results come back when "
                                   "k matching items exist. Columns: the taxonomy columns and any catalog attribute "
                                   "(GET /api/filters)."},
        "filter": {"type": "array", "items": {"type": "string"}, "examples": [["gender:Men"]],
                   "description": "Alternative to filters for HTML forms: repeated column:value."},
        "localize": {"enum": list(LOCALIZE_MODES), "default": web.localize,
                     "description": "Street-photo localisation: auto searches crops too unless the photo is a "
                                    "product shot on a plain background; crops always; off never. Ignored with crop."},
        "collapse": {**COLLAPSE_PROP, "default": "none"},
    }


def openapi_document(web: WebSettings, outfit: OutfitSettings | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these settings' limits (with the outfit endpoints, web/outfits/openapi.py)."""
    doc = _base_document(web)
    from web.outfits.openapi import outfit_paths, outfit_schemas

    doc["paths"].update(outfit_paths(web, outfit or OutfitSettings(), ERRORS, _search_params_doc(web)))
    doc["components"]["schemas"].update(outfit_schemas(doc["components"]["schemas"]))
    from web.analytics.openapi import analytics_paths, analytics_schemas

    doc["paths"].update(analytics_paths(ERRORS))
    doc["components"]["schemas"].update(analytics_schemas())
    from web.curation.openapi import curation_paths, curation_schemas

    doc["paths"].update(curation_paths(ERRORS))
    doc["components"]["schemas"].update(curation_schemas())
    doc["components"]["securitySchemes"] = {"analyticsToken": {
        "type": "http", "scheme": "bearer",
        "description": "web.analytics_token; only needed when the server is not bound to 127.0.0.1."}}
    return doc


def _base_document(web: WebSettings) -> dict[str, Any]:
    params = {**_search_params_doc(web), **_text_params_doc()}
    json_body = {k: v for k, v in params.items() if k != "filter"}
    json_body["filters"] = {"type": "object", "additionalProperties": {
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "description": params["filters"]["description"]}
    json_body["crop"] = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "number"}, "minItems": 4,
                                                        "maxItems": 4}], "description": params["crop"]["description"]}
    query_params = [
        {"name": "k", "in": "query", "schema": params["k"]},
        {"name": "offset", "in": "query", "schema": params["offset"]},
        {"name": "threshold", "in": "query", "schema": params["threshold"]},
        {"name": "filter", "in": "query", "schema": params["filter"], "style": "form", "explode": True,
         "description": params["filter"]["description"]},
        {"name": "filters", "in": "query", "schema": params["filters"],
         "description": params["filters"]["description"]},
        {"name": "collapse", "in": "query", "schema": params["collapse"]},
    ]
    item_id = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Lookalike API", "version": "1",
                 "description": "Visual similarity search over a fashion catalog. Send a photo, get the catalog items "
                                "that look like it. The server never fetches URLs: send image bytes. Every error "
                                "is an Error envelope with a message written for a person."},
        "servers": [{"url": "/"}],
        "paths": {
            "/api/search": {"post": {
                "operationId": "search",
                "summary": "Search by photo, by words, or both (with thumbs up / down)",
                "description": "Send a photo (image), words (text), thumbs-up items, or any mix of them; at least "
                               "one is needed. Without a text model for the served image model, queries with words "
                               "answer 503 text_unavailable (run `manage.py train-text`). "
                               f"Body at most {web.max_upload_mb} MB (else 413). Images: JPEG, PNG, WebP, GIF "
                               f"(first frame), at most {web.max_image_pixels:,} pixels.",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {
                        "type": "object",
                        "properties": {"image": {"type": "string", "contentMediaType": "application/octet-stream",
                                                 "description": "The photo file."}, **params}},
                        "encoding": {"image": {"contentType": "image/jpeg, image/png, image/webp, image/gif"}}},
                    "application/json": {"schema": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"image": {"type": "string", "contentEncoding": "base64",
                                                 "description": "The photo's bytes, base64 (a data: URL is fine)."},
                                       **json_body}}},
                }},
                "responses": {"200": {"description": "Results, best first.",
                                      "content": {"application/json": {"schema": _ref("SearchResponse")}}},
                              **{c: ERRORS[c] for c in ("400", "405", "413", "429", "500", "503")}},
            }},
            "/api/items/{item_id}": {"get": {
                "operationId": "getItem", "summary": "One catalog item", "parameters": [item_id],
                "responses": {"200": {"description": "The item.",
                                      "content": {"application/json": {"schema": _ref("Item")}}},
                              **{c: ERRORS[c] for c in ("404", "405", "500")}},
            }},
            "/api/items/{item_id}/similar": {"get": {
                "operationId": "similarItems", "summary": "More like this: items similar to an item",
                "parameters": [item_id, *query_params],
                "responses": {"200": {"description": "Similar items, best first (the item itself excluded).",
                                      "content": {"application/json": {"schema": _ref("SimilarResponse")}}},
                              **{c: ERRORS[c] for c in ("400", "404", "405", "429", "500", "503")}},
            }},
            "/api/filters": {"get": {
                "operationId": "filters", "summary": "Filterable columns and their values",
                "responses": {"200": {"description": "Columns and taxonomy values.",
                                      "content": {"application/json": {"schema": _ref("Filters")}}},
                              "500": ERRORS["500"]},
            }},
            "/api/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/healthz": {"get": {
                "operationId": "health", "summary": "Can a search be answered? (a probe search, cached a few seconds)",
                "responses": {"200": {"description": "Serving.", "content": {"application/json": {
                    "schema": _ref("Health")}}},
                              "503": {"description": "A search cannot be answered now; `error` says why.", "content": {
                                  "application/json": {"schema": _ref("Health")}}}},
            }},
        },
        "components": {"schemas": _schemas(web)},
    }
