"""OpenAPI paths and schemas of the analyst endpoints (web/analytics/routes.py), merged into /api/openapi.json."""

from __future__ import annotations

from typing import Any

from indexer.evaluation.runs import RUN_SORT_KEYS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NUM = {"type": ["number", "null"]}
_INT = {"type": ["integer", "null"]}
_STR = {"type": ["string", "null"]}


def analytics_schemas() -> dict[str, Any]:
    """RunSummary, Run, RunComparison, SweepSummary, SweepPoint, Sweep."""
    summary_props = {
        "id": {"type": "integer"}, "created_at": _STR, "kind": {"type": "string"}, "synthetic": {"type": "boolean"},
        "model_fingerprint": {"type": "string"}, "index_spec": {"type": "string"}, "dataset": {"type": "string"},
        "dataset_sha256": {"type": "string"},
        "metrics": {"type": "object", "description": "recall@k, mAP, n_queries as stored by manage.py evaluate.",
                    "additionalProperties": {"type": ["number", "null"]}},
    }
    summary = {"type": "object", "additionalProperties": False, "required": list(summary_props),
               "properties": summary_props}
    curve = {"type": "array", "description": "[[k, recall@k], ...]",
             "items": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "minItems": 2,
                       "maxItems": 2}}
    entry = {"type": "object", "required": ["item_id", "catalog_item"], "additionalProperties": True,
             "properties": {"item_id": {"type": ["string", "integer"]},
                            "catalog_item": {"oneOf": [{"type": "null"}, {
                                "type": "object", "required": ["id", "title"],
                                "properties": {"id": {"type": "integer"}, "title": {"type": "string"},
                                               "article_type": _STR}}]}}}
    failure = {"type": "object", "additionalProperties": True,
               "required": ["query", "item_id", "true_rank", "returned", "thumb", "catalog_item"],
               "properties": {"query": {"type": ["string", "integer"]}, "item_id": {"type": ["string", "integer"]},
                              "label": _STR, "true_rank": {**_INT, "description": "1-based; null = not ranked."},
                              "returned": {"type": "array", "items": entry},
                              "thumb": {**_STR, "description": "JPEG data: URL of the query photo."},
                              "catalog_item": entry["properties"]["catalog_item"]}}
    run = {"type": "object", "additionalProperties": False,
           "required": [*summary_props, "curve", "per_label", "per_label_key", "failures", "context"],
           "properties": {**summary_props, "curve": curve,
                          "per_label": {"type": "array", "description": "Worst per_label_key first.",
                                        "items": {"type": "object", "required": ["label"],
                                                  "additionalProperties": {"type": ["number", "string", "null"]}}},
                          "per_label_key": {"type": "string"},
                          "failures": {"type": "object", "required": ["k", "n_failed", "n_queries", "queries"],
                                       "properties": {"k": _INT, "n_failed": _INT, "n_queries": _INT,
                                                      "queries": {"type": "array", "items": failure}}},
                          "context": {"type": "object", "additionalProperties": True}}}
    ab = {"type": "object", "required": ["a", "b", "delta"], "additionalProperties": False,
          "properties": {"a": _NUM, "b": _NUM, "delta": _NUM}}
    comparison = {"type": "object", "additionalProperties": False,
                  "required": ["a", "b", "metric_key", "metrics", "per_label", "curves"],
                  "properties": {"a": summary, "b": summary, "metric_key": {"type": "string"},
                                 "metrics": {"type": "object", "additionalProperties": ab},
                                 "per_label": {"type": "array", "items": {
                                     "type": "object", "additionalProperties": False,
                                     "required": ["label", "a", "b", "delta", "n_a", "n_b"],
                                     "properties": {"label": {"type": "string"}, "a": _NUM, "b": _NUM,
                                                    "delta": _NUM, "n_a": _NUM, "n_b": _NUM}}},
                                 "curves": {"type": "object", "required": ["a", "b"],
                                            "properties": {"a": curve, "b": curve}}}}
    point_props = {
        "spec": {"type": "string"}, "nprobe": _INT, "ef_search": _INT, "k": {"type": "integer"},
        "recall": {"type": "number", "minimum": 0, "maximum": 1}, "queries_per_s": {"type": "number"},
        "memory_bytes": {"type": "integer"}, "build_seconds": {"type": "number"}, "n_vectors": {"type": "integer"},
        "n_queries": {"type": "integer"}, "pareto": {"type": "boolean"}, "details": {"type": "object"},
        "label": {"type": "string"}}
    point = {"type": "object", "additionalProperties": False, "required": list(point_props),
             "properties": point_props}
    sweep_summary_props = {"sweep_id": {"type": "string"}, "created_at": _STR, "n_settings": {"type": "integer"},
                           "best_recall": {"type": "number"}, "best_queries_per_s": {"type": "number"},
                           "model_fingerprint": {"type": "string"}, "generation": {"type": "string"},
                           "n_vectors": {"type": "integer"}, "k": {"type": "integer"}}
    sweep = {"type": "object", "additionalProperties": False,
             "required": ["sweep_id", "k", "n_vectors", "n_queries", "points", "recommended", "min_recall",
                          "configured", "configured_measured", "configured_on_front"],
             "properties": {"sweep_id": {"type": "string"}, "k": {"type": "integer"},
                            "n_vectors": {"type": "integer"}, "n_queries": {"type": "integer"},
                            "points": {"type": "array", "items": {
                                "type": "object", "additionalProperties": False,
                                "required": [*point_props, "recommended", "configured"],
                                "properties": {**point_props, "recommended": {"type": "boolean"},
                                               "configured": {"type": "boolean"}}}},
                            "recommended": {"oneOf": [point, {"type": "null"}]},
                            "min_recall": {"type": "number"},
                            "configured": {"type": "string", "description": "The served setting (config.toml)."},
                            "configured_measured": {"type": "boolean"},
                            "configured_on_front": {"type": "boolean"}}}
    return {"RunSummary": summary, "Run": run, "RunComparison": comparison,
            "SweepSummary": {"type": "object", "additionalProperties": False, "required": list(sweep_summary_props),
                             "properties": sweep_summary_props},
            "Sweep": sweep}


def analytics_paths(errors: dict[str, Any]) -> dict[str, Any]:
    """The five read-only analyst operations."""
    denied = {
        "401": {"description": "web.analytics_token is set and the request did not carry it.",
                "content": errors["400"]["content"]},
        "404": {"description": "No such run or sweep; or the analyst pages are off (server not on 127.0.0.1 and "
                               "no web.analytics_token).", "content": errors["404"]["content"]},
    }

    def ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    def op(op_id: str, summary: str, response: dict[str, Any], params: list | None = None,
           bad: bool = False) -> dict[str, Any]:
        responses = {"200": response, **denied, "405": errors["405"], "500": errors["500"]}
        if bad:
            responses["400"] = errors["400"]
        return {"get": {"operationId": op_id, "summary": summary, "tags": ["analytics"], "parameters": params or [],
                        "security": [{}, {"analyticsToken": []}], "responses": responses}}

    run_id = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    sort = [{"name": "sort", "in": "query", "schema": {"enum": list(RUN_SORT_KEYS), "default": "created_at"}},
            {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"], "default": "desc"}}]
    pair = [{"name": "a", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1},
             "description": "The baseline run."},
            {"name": "b", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1},
             "description": "The run compared with it (deltas are b - a)."}]
    return {
        "/api/analytics/runs": op("analyticsRuns", "Stored evaluation runs, sorted",
                                  ok("Runs.", {"type": "object", "required": ["runs"], "additionalProperties": False,
                                               "properties": {"runs": {"type": "array",
                                                                       "items": _ref("RunSummary")}}}), sort, True),
        "/api/analytics/runs/{run_id}": op("analyticsRun", "One run: curve, per-label worst first, failed queries",
                                           ok("The run.", _ref("Run")), [run_id]),
        "/api/analytics/compare": op("analyticsCompare", "Two runs side by side: metric and per-label deltas",
                                     ok("The comparison.", _ref("RunComparison")), pair, True),
        "/api/analytics/sweeps": op("analyticsSweeps", "Stored index sweeps, newest first",
                                    ok("Sweeps.", {"type": "object", "required": ["sweeps"],
                                                   "additionalProperties": False,
                                                   "properties": {"sweeps": {"type": "array",
                                                                             "items": _ref("SweepSummary")}}})),
        "/api/analytics/sweeps/{sweep_id}": op(
            "analyticsSweep", "One sweep: recall vs queries/s per setting, Pareto front, recommendation",
            ok("The sweep.", _ref("Sweep")),
            [{"name": "sweep_id", "in": "path", "required": True, "schema": {"type": "string"}}]),
    }
