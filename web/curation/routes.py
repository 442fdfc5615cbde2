"""Curation pages for merchandisers (/curation/duplicates, /curation/labels) and their JSON
(/api/curation/duplicates, /api/curation/labels), read from the latest stored runs of `manage.py duplicates` and
`manage.py audit labels`. Same access rule as the analyst pages (web/analytics/routes.py check_access)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request

from indexer.curation import records
from web.analytics.routes import check_access
from web.api.params import parse_int
from web.errors import ApiError
from web.runtime import runtime

bp = Blueprint("curation", __name__)
bp.before_request(check_access)

GROUP_SORTS = ("size", "score")
GROUP_KINDS = ("all", "exact", "near", "variant")
PAGE_SIZE = 50


def _duplicate_groups(kind: str, sort: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    store = runtime(current_app).store
    dup = records.latest_run(store, records.DUPLICATES)
    groups: list[dict[str, Any]] = []
    if dup is not None and kind in ("all", "exact", "near"):
        groups += [g for g in dup["details"].get("groups", []) if kind == "all" or g["kind"] == kind]
    if kind in ("all", "variant"):
        var = records.latest_run(store, records.VARIANTS)
        if var is not None:
            groups += [{**g, "score": None} for g in var["details"].get("groups", [])]
    if sort == "size":
        groups.sort(key=lambda g: (-g["size"], g["ids"][0]))
    else:
        groups.sort(key=lambda g: (g["score"] if g.get("score") is not None else 2.0, -g["size"]))
    return dup, groups


def _args() -> tuple[str, str, int]:
    kind = request.args.get("kind", "all")
    sort = request.args.get("sort", "size")
    if kind not in GROUP_KINDS:
        raise ApiError(400, f"kind must be one of {', '.join(GROUP_KINDS)}, got {kind!r}")
    if sort not in GROUP_SORTS:
        raise ApiError(400, f"sort must be one of {', '.join(GROUP_SORTS)}, got {sort!r}")
    page = parse_int("page", request.args.get("page", "1"), 1, 100_000)
    return kind, sort, page


def _titles(ids: list[int]) -> dict[int, dict[str, Any]]:
    return runtime(current_app).store.get_items(ids)


@bp.get("/api/curation/duplicates")
def duplicates_json():
    kind, sort, page = _args()
    run, groups = _duplicate_groups(kind, sort)
    shown = groups[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    return jsonify({"run": None if run is None else {k: run[k] for k in ("id", "created_at", "summary", "params")},
                    "kind": kind, "sort": sort, "page": page, "total": len(groups), "groups": shown})


@bp.get("/curation/duplicates")
def duplicates_page():
    kind, sort, page = _args()
    run, groups = _duplicate_groups(kind, sort)
    shown = groups[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    items = _titles([i for g in shown for i in g["ids"][:12]])
    return render_template("curation/duplicates.html", run=run, groups=shown, items=items, kind=kind, sort=sort,
                           page=page, total=len(groups), page_size=PAGE_SIZE, kinds=GROUP_KINDS, sorts=GROUP_SORTS)


def _suspects(column: str, min_confidence: float) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    run = records.latest_run(runtime(current_app).store, records.AUDIT)
    if run is None:
        return None, []
    found = [s for s in run["details"].get("suspects", [])
             if (not column or s["column"] == column) and s["confidence"] >= min_confidence]
    return run, found


def _label_args() -> tuple[str, float, int]:
    from indexer.curation.label_audit import AUDIT_COLUMNS

    column = request.args.get("column", "")
    if column and column not in AUDIT_COLUMNS:
        raise ApiError(400, f"column must be one of {', '.join(AUDIT_COLUMNS)}, got {column!r}")
    try:
        min_confidence = float(request.args.get("min_confidence", "0"))
    except ValueError:
        raise ApiError(400, "min_confidence must be a number in [0, 1]") from None
    if not 0.0 <= min_confidence <= 1.0:
        raise ApiError(400, "min_confidence must be a number in [0, 1]")
    return column, min_confidence, parse_int("page", request.args.get("page", "1"), 1, 100_000)


@bp.get("/api/curation/labels")
def labels_json():
    column, min_confidence, page = _label_args()
    run, found = _suspects(column, min_confidence)
    return jsonify({"run": None if run is None else {k: run[k] for k in ("id", "created_at", "summary", "params")},
                    "column": column or None, "page": page, "total": len(found),
                    "suspects": found[(page - 1) * PAGE_SIZE:page * PAGE_SIZE],
                    "changes": records.label_changes(runtime(current_app).store, 20)})


@bp.get("/curation/labels")
def labels_page():
    from indexer.curation.label_audit import AUDIT_COLUMNS

    column, min_confidence, page = _label_args()
    run, found = _suspects(column, min_confidence)
    shown = found[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    return render_template("curation/labels.html", run=run, suspects=shown, items=_titles([s["id"] for s in shown]),
                           column=column, columns=AUDIT_COLUMNS, min_confidence=min_confidence, page=page,
                           total=len(found), page_size=PAGE_SIZE,
                           changes=records.label_changes(runtime(current_app).store, 20),
                           distrust=runtime(current_app).settings.curation.outfit_distrust_confidence)
