"""Analyst workbench: evaluation runs, recall@k curves, failure gallery, run comparison and index sweeps.

Pages under /analytics and the JSON behind them under /api/analytics (both read-only). Access: open without
login when the server is bound to a loopback address and the request comes from this machine; otherwise off
(404) unless ``web.analytics_token`` is set, and then the token is required (Authorization: Bearer, or
?token= once, which sets a cookie). docs/analytics.md describes the pages.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, jsonify, redirect, render_template, request

from indexer.evaluation.runs import RUN_SORT_KEYS, compare_runs, get_run, list_runs
from indexer.evaluation.sweep import (
    DEFAULT_MIN_RECALL,
    configured_setting,
    find_point,
    list_sweeps,
    load_sweep,
    recommend,
)
from web.analytics.charts import pareto_chart, recall_chart
from web.errors import ApiError
from web.runtime import runtime

bp = Blueprint("analytics", __name__)

TOKEN_COOKIE = "lookalike_analytics"
LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if not host:
        return False
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bound_host() -> str:
    return current_app.config.get("LOOKALIKE_BIND_HOST") or runtime(current_app).settings.web.host


def _given_token() -> str:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.args.get("token") or request.cookies.get(TOKEN_COOKIE) or ""


@bp.before_request
def check_access():
    """Loopback server + loopback client: open. Elsewhere: the configured token, or off."""
    if is_loopback(_bound_host()) and is_loopback(request.remote_addr):
        return None
    token = runtime(current_app).settings.web.analytics_token
    if not token:
        raise ApiError(404, "the analyst pages are off on this server: it is not bound to 127.0.0.1 and "
                            "web.analytics_token is not set", "analytics_off")
    if not hmac.compare_digest(_given_token().encode(), token.encode()):
        raise ApiError(401, "the analyst pages need the analytics token (Authorization: Bearer <token>, or "
                            "?token=<token> once)", "unauthorized")
    if request.args.get("token") and not request.path.startswith("/api/"):
        # Swap the token in the URL for a cookie, so it does not linger in history or referrers.
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
        resp = redirect(request.path + ("?" + urlencode(args) if args else ""))
        resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure,
                        path="/")
        return resp
    return None


@bp.after_request
def no_store(resp):
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _store():
    return runtime(current_app).store


def _run_id(raw: Any, name: str) -> int:
    text = str(raw or "").strip()
    if not text.isdigit() or not 0 < int(text) < 2**31:
        raise ApiError(400, f"{name} must be an evaluation run id (a positive integer), got {text!r}")
    return int(text)


def _sorting() -> tuple[str, bool]:
    sort = request.args.get("sort", "created_at")
    if sort not in RUN_SORT_KEYS:
        raise ApiError(400, f"cannot sort by {sort!r}; use one of {', '.join(RUN_SORT_KEYS)}")
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(400, f"order must be asc or desc, got {order!r}")
    return sort, order == "desc"


def _compare_ids() -> tuple[int, int]:
    picked = request.args.getlist("run")
    a, b = request.args.get("a"), request.args.get("b")
    if picked and not (a or b):
        if len(picked) != 2:
            raise ApiError(400, f"pick exactly two runs to compare, got {len(picked)}")
        a, b = sorted(picked, key=lambda v: int(v) if str(v).isdigit() else 0)
    return _run_id(a, "a"), _run_id(b, "b")


def _sweep_view(sweep_id: str) -> dict[str, Any] | None:
    points = load_sweep(_store(), sweep_id)
    if not points:
        return None
    settings = runtime(current_app).settings
    chosen = recommend(points, DEFAULT_MIN_RECALL)
    first = points[0]
    configured = configured_setting(settings, first.n_vectors + first.n_queries, 0)
    current = find_point(points, configured.spec, configured.nprobe, configured.ef_search)
    rows = [{**p.as_dict(), "recommended": p is chosen, "configured": p is current} for p in points]
    return {"sweep_id": sweep_id, "k": first.k, "n_vectors": first.n_vectors, "n_queries": first.n_queries,
            "points": rows, "recommended": chosen.as_dict() if chosen else None, "min_recall": DEFAULT_MIN_RECALL,
            "configured": configured.label, "configured_measured": current is not None,
            "configured_on_front": bool(current and current.pareto)}


# ---- pages -----------------------------------------------------------------------------------------------------

@bp.get("/analytics")
def runs_page():
    """Sortable table of stored evaluation runs; pick two to compare."""
    sort, desc = _sorting()
    runs = list_runs(_store(), sort, desc)
    metric_keys = [k for k in ("recall@1", "recall@5", "recall@10", "recall@20", "mAP", "n_queries")
                   if any(k in r["metrics"] for r in runs)]
    columns = [("id", "Run"), ("created_at", "Date"), ("kind", "Kind"), ("model_fingerprint", "Model"),
               ("index_spec", "Index"), ("dataset", "Dataset")] + [(k, k) for k in metric_keys]
    return render_template("analytics/runs.html", runs=runs, sort=sort, desc=desc, metric_keys=metric_keys,
                           columns=columns,
                           sweeps=list_sweeps(_store(), limit=1), curation=_curation_summary())


def _curation_summary() -> dict[str, dict | None]:
    """The latest duplicates and label-audit runs (summary only) and the label changes applied, for the runs page."""
    from indexer.curation import records

    store = _store()
    return {"duplicates": records.latest_run(store, records.DUPLICATES, with_details=False),
            "audit": records.latest_run(store, records.AUDIT, with_details=False),
            "changes": len(records.label_changes(store, limit=1000))}


@bp.get("/analytics/runs/<int:run_id>")
def run_page(run_id: int):
    """One run: recall@k curve, per-label table worst first, failure gallery."""
    run = get_run(_store(), run_id)
    if run is None:
        raise ApiError(404, f"there is no evaluation run {run_id}")
    chart = recall_chart({"all queries": run["curve"]}, f"recall@k of run {run_id}") if run["curve"] else None
    return render_template("analytics/run.html", run=run, chart=chart)


@bp.get("/analytics/compare")
def compare_page():
    """Two runs side by side: metric deltas, per-label deltas, overlaid curves."""
    a, b = _compare_ids()
    cmp = compare_runs(_store(), a, b)
    if cmp is None:
        raise ApiError(404, f"run {a} or run {b} does not exist")
    curves = {f"run {a}": cmp["curves"]["a"], f"run {b}": cmp["curves"]["b"]}
    chart = recall_chart({k: v for k, v in curves.items() if v}, f"recall@k: run {a} vs run {b}")
    return render_template("analytics/compare.html", cmp=cmp, chart=chart)


@bp.get("/analytics/sweeps")
def sweeps_page():
    """The latest index sweep (or ?sweep=ID): recall vs queries/s with the Pareto front, and all sweeps."""
    sweeps = list_sweeps(_store())
    wanted = request.args.get("sweep") or (sweeps[0]["sweep_id"] if sweeps else None)
    view = _sweep_view(wanted) if wanted else None
    if wanted and view is None:
        raise ApiError(404, f"there is no sweep {wanted!r}")
    chart = None
    if view:
        chart = pareto_chart(view["points"], f"recall@{view['k']} vs queries/s, sweep {view['sweep_id']}")
    return render_template("analytics/sweeps.html", sweeps=sweeps, view=view, chart=chart)


# ---- JSON ------------------------------------------------------------------------------------------------------

@bp.get("/api/analytics/runs")
def api_runs():
    sort, desc = _sorting()
    return jsonify({"runs": list_runs(_store(), sort, desc)})


@bp.get("/api/analytics/runs/<int:run_id>")
def api_run(run_id: int):
    run = get_run(_store(), run_id)
    if run is None:
        raise ApiError(404, f"there is no evaluation run {run_id}")
    return jsonify(run)


@bp.get("/api/analytics/compare")
def api_compare():
    a, b = _compare_ids()
    cmp = compare_runs(_store(), a, b)
    if cmp is None:
        raise ApiError(404, f"run {a} or run {b} does not exist")
    return jsonify(cmp)


@bp.get("/api/analytics/sweeps")
def api_sweeps():
    return jsonify({"sweeps": list_sweeps(_store())})


@bp.get("/api/analytics/sweeps/<sweep_id>")
def api_sweep(sweep_id: str):
    view = _sweep_view(sweep_id)
    if view is None:
        raise ApiError(404, f"there is no sweep {sweep_id!r}")
    return jsonify(view)
