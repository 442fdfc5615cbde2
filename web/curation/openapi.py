"""OpenAPI paths and schemas of /api/explain and the curation JSON (web/curation/), merged into
/api/openapi.json."""

from __future__ import annotations

from typing import Any

from engine.explain import METHODS
from web.searched_photos import SEARCH_TTL_S, SEARCHES_KEPT


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def curation_schemas() -> dict[str, Any]:
    """Explanation, DuplicateGroups, LabelSuspects."""
    heat = {"type": "array", "items": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}},
            "description": "grid rows of grid values: how much each cell of the letterboxed square model input "
                           "drives the similarity to the other picture (1 = most)."}
    side = {"type": "object", "additionalProperties": False, "required": ["type", "type_confidence", "colour",
                                                                        "heatmap"],
            "properties": {"type": {"type": ["string", "null"], "description": "Article type the model reads."},
                           "type_confidence": {"type": ["number", "null"]},
                           "colour": {"type": "string", "description": "Nearest named colour of the item's pixels."},
                           "heatmap": heat}}
    explanation = {"type": "object", "additionalProperties": False,
                   "required": ["query_ref", "item_id", "score", "method", "grid", "query", "item", "agree",
                                "timing_ms"],
                   "properties": {"query_ref": {
                       "type": "object", "additionalProperties": False,
                       "description": "What the query side was: a search's region ({search, region, box: the "
                                      "searched part of the photo, result: whether the item was one of that "
                                      "search's results}), a catalog item ({item}) or a sent photo ({photo})",
                       "properties": {"search": {"type": "string"}, "region": {"type": "integer", "minimum": 0},
                                      "box": {"type": "array", "items": {"type": "number"}, "minItems": 4,
                                              "maxItems": 4},
                                      "result": {"type": "boolean"}, "item": {"type": "integer"},
                                      "photo": {"type": "boolean"}}},
                                  "item_id": {"type": "integer"}, "score": {"type": "number"},
                                  "method": {"enum": list(METHODS)}, "grid": {"type": "integer", "minimum": 1},
                                  "query": side, "item": side,
                                  "agree": {"type": "object", "additionalProperties": False,
                                            "required": ["type", "colour"],
                                            "properties": {"type": {"type": ["boolean", "null"]},
                                                           "colour": {"type": "boolean"}}},
                                  "timing_ms": {"type": "number"}}}
    run = {"type": ["object", "null"], "additionalProperties": False,
           "required": ["id", "created_at", "summary", "params"],
           "properties": {"id": {"type": "integer"}, "created_at": {"type": ["string", "null"]},
                          "summary": {"type": "object"}, "params": {"type": "object"}}}
    group = {"type": "object", "required": ["kind", "size", "ids"], "additionalProperties": True,
             "properties": {"kind": {"enum": ["exact", "near", "variant"]}, "size": {"type": "integer"},
                            "score": {"type": ["number", "null"]}, "leader": {"type": "integer"},
                            "ids": {"type": "array", "items": {"type": "integer"}}}}
    groups = {"type": "object", "additionalProperties": False,
              "required": ["run", "kind", "sort", "page", "total", "groups"],
              "properties": {"run": run, "kind": {"type": "string"}, "sort": {"type": "string"},
                             "page": {"type": "integer"}, "total": {"type": "integer"},
                             "groups": {"type": "array", "items": group}}}
    suspect = {"type": "object", "additionalProperties": False,
               "required": ["id", "column", "current", "suggested", "confidence", "current_probability"],
               "properties": {"id": {"type": "integer"}, "column": {"type": "string"},
                              "current": {"type": "string"}, "suggested": {"type": "string"},
                              "confidence": {"type": "number"}, "current_probability": {"type": "number"}}}
    change = {"type": "object", "additionalProperties": False,
              "required": ["id", "item_id", "column", "old_value", "new_value", "applied_by", "run_id", "applied_at"],
              "properties": {"id": {"type": "integer"}, "item_id": {"type": "integer"}, "column": {"type": "string"},
                             "old_value": {"type": ["string", "null"]}, "new_value": {"type": "string"},
                             "applied_by": {"type": "string"}, "run_id": {"type": ["integer", "null"]},
                             "applied_at": {"type": "string"}}}
    suspects = {"type": "object", "additionalProperties": False,
                "required": ["run", "column", "page", "total", "suspects", "changes"],
                "properties": {"run": run, "column": {"type": ["string", "null"]}, "page": {"type": "integer"},
                               "total": {"type": "integer"}, "suspects": {"type": "array", "items": suspect},
                               "changes": {"type": "array", "items": change}}}
    return {"Explanation": explanation, "DuplicateGroups": groups, "LabelSuspects": suspects}


def curation_paths(errors: dict[str, Any]) -> dict[str, Any]:
    """/api/explain (GET, POST), /api/curation/duplicates, /api/curation/labels."""
    ok = {"200": {"description": "The explanation.", "content": {"application/json": {"schema": _ref("Explanation")}}}}
    method = {"name": "method", "in": "query", "schema": {"enum": list(METHODS), "default": "occlusion"},
              "description": "occlusion (gradient-free, grey out each cell) or gradient (gradient x input)."}
    item = {"name": "item", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1},
            "description": "The result to explain."}
    page = {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}}
    guarded = {"security": [{}, {"analyticsToken": []}]}
    UNAUTHORIZED = {"description": "web.analytics_token is set and the request did not carry it.",  # noqa: N806
                    "content": errors["400"]["content"]}
    return {
        "/api/explain": {
            "get": {"operationId": "explainResult", "summary": "Why a result matched a photo search or a catalog item",
                    "parameters": [{"name": "query", "in": "query", "required": True,
                                    "schema": {"oneOf": [{"type": "string", "pattern": "^s-[0-9a-f]{16}$"},
                                                         {"type": "integer", "minimum": 1}]},
                                    "description": "A photo search's search_id (POST /api/search; the result is "
                                                   "explained against the region of the photo that found it), or "
                                                   "the catalog item searched from (more like this)."}, item, method,
                                   {"name": "region", "in": "query", "schema": {"type": "integer", "minimum": 0},
                                    "description": "With a search id: the index of the searched region to explain "
                                                   "against (default: the one that found the item; the whole photo "
                                                   "or crop box for an item that was not a result)."}],
                    "responses": {**ok, "400": errors["400"],
                                  "404": {**errors["404"], "description": "No such item, or the search id is unknown "
                                                                          f"or expired (code search_expired: kept "
                                                                          f"{SEARCH_TTL_S / 60:g} minutes, the latest "
                                                                          f"{SEARCHES_KEPT} searches, per server "
                                                                          "process)."},
                                  "503": errors["503"]}},
            "post": {"operationId": "explainPhoto", "summary": "Why a result matched a photo",
                     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                         "type": "object", "required": ["image", "item"], "additionalProperties": False,
                         "properties": {"image": {"type": "string", "format": "binary"},
                                        "item": {"type": "integer", "minimum": 1},
                                        "method": {"enum": list(METHODS)}}}}}},
                     "responses": {**ok, "400": errors["400"], "404": errors["404"], "413": errors["413"],
                                   "503": errors["503"]}}},
        "/api/curation/duplicates": {"get": {
            "operationId": "duplicateGroups", "summary": "Duplicate and variant groups of the latest run",
            "parameters": [{"name": "kind", "in": "query", "schema": {"enum": ["all", "exact", "near", "variant"]}},
                           {"name": "sort", "in": "query", "schema": {"enum": ["size", "score"]}}, page],
            "responses": {"200": {"description": "Groups, 50 a page.",
                                  "content": {"application/json": {"schema": _ref("DuplicateGroups")}}},
                          "400": errors["400"], "401": UNAUTHORIZED, "404": errors["404"]}, **guarded}},
        "/api/curation/labels": {"get": {
            "operationId": "labelSuspects", "summary": "Label suspects of the latest audit, most suspect first",
            "parameters": [{"name": "column", "in": "query", "schema": {"type": "string"}},
                           {"name": "min_confidence", "in": "query",
                            "schema": {"type": "number", "minimum": 0, "maximum": 1}}, page],
            "responses": {"200": {"description": "Suspects, 50 a page, and the latest applied changes.",
                                  "content": {"application/json": {"schema": _ref("LabelSuspects")}}},
                          "400": errors["400"], "401": UNAUTHORIZED, "404": errors["404"]}, **guarded}},
    }
