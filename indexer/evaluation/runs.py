"""Stored evaluation runs: recording them, and the read-only views the analyst workbench shows (run lists, one run,
run comparisons).

Everything here reads ``EvaluationRun`` rows (written by ``manage.py evaluate``) and turns them into plain dicts;
the web layer (web/analytics/routes.py) only renders them. Runs stored before a field existed still load: a missing
recall curve is rebuilt from the recall@k metrics, a missing failure list is empty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import defer

from indexer.store.tables import STATUS_ACTIVE, CatalogItem, EvaluationRun

if TYPE_CHECKING:
    from indexer.evaluation.retrieval import EvaluationReport

RUN_SORT_KEYS = ("id", "created_at", "kind", "model_fingerprint", "index_spec", "dataset", "recall@1", "recall@5",
                 "recall@10", "recall@20", "mAP", "n_queries")
_RECALL = re.compile(r"^recall@(\d+)$")


def run_summary(run: EvaluationRun, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's row in the runs table (``details`` given: its synthetic flag, else the dataset's SYNTHETIC tag)."""
    synthetic = bool(details.get("synthetic", False)) if details is not None else \
        (run.dataset or "").upper().startswith("SYNTHETIC")
    return {"id": int(run.id), "created_at": run.created_at.isoformat() if run.created_at else None,
            "kind": run.kind, "synthetic": synthetic,
            "model_fingerprint": run.model_fingerprint, "index_spec": run.index_spec,
            "dataset": run.dataset or "", "dataset_sha256": run.dataset_sha256,
            "metrics": {k: _finite(v) for k, v in (run.metrics or {}).items()}}


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _sort_value(run: dict[str, Any], key: str) -> tuple[int, Any]:
    value = run["metrics"].get(key) if key not in run else run[key]
    return (1, "") if value is None else (0, value)


def list_runs(store, sort: str = "created_at", descending: bool = True, limit: int = 500) -> list[dict[str, Any]]:
    """Stored runs as table rows, sorted by a column or a metric (missing values last).

    Raises:
        ValueError: ``sort`` is not one of RUN_SORT_KEYS.
    """
    if sort not in RUN_SORT_KEYS:
        raise ValueError(f"cannot sort by {sort!r}; use one of {', '.join(RUN_SORT_KEYS)}")
    with store.sessions() as s:
        # details (per-label tables, failure thumbnails) stay unread: the table needs only the columns.
        stmt = select(EvaluationRun).options(defer(EvaluationRun.details)).order_by(EvaluationRun.id.desc())
        runs = [run_summary(r) for r in s.scalars(stmt.limit(limit))]
    present = [r for r in runs if _sort_value(r, sort)[0] == 0]
    missing = [r for r in runs if _sort_value(r, sort)[0] == 1]
    present.sort(key=lambda r: (_sort_value(r, sort)[1], r["id"]), reverse=descending)
    return present + missing


def recall_curve(metrics: dict[str, Any], details: dict[str, Any]) -> list[list[float]]:
    """[[k, recall@k], ...]: the stored recall@1..K curve, else the recall@k metrics."""
    curve = details.get("recall_curve")
    if isinstance(curve, list) and curve:
        return [[k, float(r)] for k, r in enumerate(curve, start=1) if r is not None]
    points = sorted((int(m.group(1)), float(v)) for key, v in metrics.items()
                    if (m := _RECALL.match(key)) and isinstance(v, int | float) and math.isfinite(v))
    return [[k, r] for k, r in points]


def worst_label_key(per_label: dict[str, dict[str, Any]]) -> str:
    """The recall metric labels are ranked by: recall@10 when stored, else the smallest k present."""
    keys = {k for m in per_label.values() for k in m if _RECALL.match(k)}
    if "recall@10" in keys or not keys:
        return "recall@10"
    return min(keys, key=lambda k: int(k.split("@")[1]))


def per_label_rows(per_label: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-label metrics, worst first (by ``worst_label_key``; larger labels first among equals)."""
    key = worst_label_key(per_label)
    rows = [{"label": label, **{k: _finite(v) for k, v in m.items()}} for label, m in per_label.items()]
    rows.sort(key=lambda r: (r.get(key) if r.get(key) is not None else 2.0, -(r.get("n_queries") or 0), r["label"]))
    return rows


def resolve_catalog_items(store, external_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """external_id -> {id, title, article_type} of active catalog items (unknown ids are left out)."""
    wanted = sorted({str(e) for e in external_ids if e is not None})
    out: dict[str, dict[str, Any]] = {}
    with store.sessions() as s:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            rows = s.execute(select(CatalogItem.external_id, CatalogItem.id, CatalogItem.title,
                                    CatalogItem.article_type)
                             .where(CatalogItem.external_id.in_(chunk), CatalogItem.status == STATUS_ACTIVE))
            for ext, item_id, title, article_type in rows:
                out[ext] = {"id": int(item_id), "title": title, "article_type": article_type}
    return out


def _failures(store, details: dict[str, Any]) -> dict[str, Any]:
    failures = details.get("failures") or {}
    queries = list(failures.get("queries") or [])
    ids = [q.get("item_id") for q in queries] + [r.get("item_id") for q in queries for r in q.get("returned", [])]
    catalog = resolve_catalog_items(store, ids) if queries else {}
    out = []
    for q in queries:
        out.append({**q, "catalog_item": catalog.get(str(q.get("item_id"))),
                    "returned": [{**r, "catalog_item": catalog.get(str(r.get("item_id")))}
                                 for r in q.get("returned", [])]})
    return {"k": failures.get("k"), "n_failed": failures.get("n_failed"), "n_queries": failures.get("n_queries"),
            "queries": out}


def get_run(store, run_id: int) -> dict[str, Any] | None:
    """One run for its page: summary, curve, per-label rows worst first, failures with catalog items resolved;
    None when there is no such run (ids past SQL's 64-bit integer range included: the driver cannot send them)."""
    if not 0 < int(run_id) < 2**63:
        return None
    with store.sessions() as s:
        run = s.get(EvaluationRun, int(run_id))
        if run is None:
            return None
        details = dict(run.details or {})
        summary = run_summary(run, details)
    per_label = details.get("per_label") or {}
    context = {k: v for k, v in details.items()
               if k in ("label_column", "n_gallery", "map_depth", "search_backend", "model", "seconds", "n_items",
                        "n_labels", "n_singletons", "n_problems", "plot")}
    return {**summary, "curve": recall_curve(summary["metrics"], details), "per_label": per_label_rows(per_label),
            "per_label_key": worst_label_key(per_label), "failures": _failures(store, details), "context": context}


def compare_runs(store, a: int, b: int) -> dict[str, Any] | None:
    """Run b against run a: metric deltas (b - a), per-label deltas (largest drop first), both curves.

    Returns None when either run does not exist.
    """
    ra, rb = get_run(store, a), get_run(store, b)
    if ra is None or rb is None:
        return None
    keys = [k for k in ra["metrics"] if k in rb["metrics"]] + [k for k in rb["metrics"] if k not in ra["metrics"]]
    metrics = {}
    for k in keys:
        va, vb = ra["metrics"].get(k), rb["metrics"].get(k)
        delta = vb - va if isinstance(va, int | float) and isinstance(vb, int | float) else None
        metrics[k] = {"a": va, "b": vb, "delta": delta}
    key = ra["per_label_key"]
    la = {r["label"]: r for r in ra["per_label"]}
    lb = {r["label"]: r for r in rb["per_label"]}
    labels = []
    for label in list(la) + [x for x in lb if x not in la]:
        va, vb = la.get(label, {}).get(key), lb.get(label, {}).get(key)
        labels.append({"label": label, "a": va, "b": vb, "delta": vb - va if va is not None and vb is not None
                       else None, "n_a": la.get(label, {}).get("n_queries"), "n_b": lb.get(label, {}).get("n_queries")})
    labels.sort(key=lambda r: (r["delta"] if r["delta"] is not None else 2.0, r["label"]))
    strip = ("curve", "per_label", "per_label_key", "failures", "context")
    return {"a": {k: v for k, v in ra.items() if k not in strip}, "b": {k: v for k, v in rb.items() if k not in strip},
            "metric_key": key, "metrics": metrics, "per_label": labels,
            "curves": {"a": ra["curve"], "b": rb["curve"]}}


def record_evaluation(store, report: EvaluationReport, details: dict[str, Any] | None = None) -> int:
    """Store the run as an ``EvaluationRun`` row; returns its id (also set on the report)."""
    body = report.as_dict()
    run = EvaluationRun(kind=report.kind, model_fingerprint=report.model["fingerprint"],
                        index_spec=report.index_spec, dataset_sha256=report.dataset_sha256, dataset=report.dataset,
                        metrics=report.metrics,
                        details={k: v for k, v in body.items() if k not in report.metrics and k != "run_id"} |
                        ({"failures": report.failures} if report.failures else {}) | (details or {}))
    with store.sessions() as s:
        s.add(run)
        s.commit()
        report.run_id = int(run.id)
    return report.run_id


def list_evaluations(store, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent stored runs, newest first (id, created_at, kind, fingerprint, spec, dataset hash, metrics)."""
    with store.sessions() as s:
        runs = s.scalars(select(EvaluationRun).order_by(EvaluationRun.id.desc()).limit(limit)).all()
        return [{"id": r.id, "created_at": r.created_at.isoformat() if r.created_at else None, "kind": r.kind,
                 "model_fingerprint": r.model_fingerprint, "index_spec": r.index_spec,
                 "dataset_sha256": r.dataset_sha256, "dataset": r.dataset, "metrics": r.metrics} for r in runs]
