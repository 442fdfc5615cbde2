"""What curation stores in SQL: the runs of `duplicates` and `audit labels` (summary + details), the label changes
merchandisers apply (who, when, old, new), and the reads the pages, the result collapsing and the outfit slots use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import desc, select

from indexer.store.catalog_store import Store
from indexer.store.tables import STATUS_ACTIVE, TAXONOMY_COLUMNS, CatalogItem, CurationRun, LabelChange

DUPLICATES = "duplicates"
VARIANTS = "variants"
AUDIT = "audit"
RUN_KINDS = (DUPLICATES, VARIANTS, AUDIT)


class LabelChangeError(ValueError):
    """A label change that cannot be applied (unknown item or column, empty value); the message says why."""


def catalog_rows(store: Store, ids: Sequence[int] | None = None) -> dict[int, dict[str, Any]]:
    """{id: {"id", "external_id", "title", "image_path", "content_sha256", taxonomy columns...}} of active items."""
    return store.active_item_columns(["id", "external_id", "title", "image_path", "content_sha256",
                                      *TAXONOMY_COLUMNS], ids)


def record_run(store: Store, kind: str, summary: dict[str, Any], details: dict[str, Any],
               params: dict[str, Any] | None = None, fingerprint: str = "", generation: str = "") -> int:
    """Store a curation run; returns its id."""
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown curation run kind {kind!r}")
    with store.sessions() as s, s.begin():
        run = CurationRun(kind=kind, summary=summary, details=details, params=params or {},
                          model_fingerprint=fingerprint, generation=generation)
        s.add(run)
        s.flush()
        return int(run.id)


def _run_dict(run: CurationRun, with_details: bool) -> dict[str, Any]:
    out = {"id": run.id, "kind": run.kind, "created_at": run.created_at.isoformat() if run.created_at else None,
           "model_fingerprint": run.model_fingerprint, "generation": run.generation, "params": run.params,
           "summary": run.summary}
    if with_details:
        out["details"] = run.details
    return out


def latest_run(store: Store, kind: str, with_details: bool = True) -> dict[str, Any] | None:
    """The newest run of a kind, or None."""
    with store.sessions() as s:
        run = s.scalar(select(CurationRun).where(CurationRun.kind == kind).order_by(desc(CurationRun.id)).limit(1))
        return _run_dict(run, with_details) if run else None


def list_runs(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """Newest runs first, without their details."""
    with store.sessions() as s:
        runs = s.scalars(select(CurationRun).order_by(desc(CurationRun.id)).limit(limit))
        return [_run_dict(r, False) for r in runs]


def apply_label(store: Store, item_id: int, column: str, value: str, applied_by: str = "",
                run_id: int | None = None) -> dict[str, Any]:
    """Set one taxonomy value of an item and record the change; returns the recorded change.

    Raises:
        LabelChangeError: Unknown or removed item, a column that is not a taxonomy column, an empty value.
    """
    if column not in TAXONOMY_COLUMNS:
        raise LabelChangeError(f"cannot change column {column!r}: taxonomy columns are {', '.join(TAXONOMY_COLUMNS)}")
    value = (value or "").strip()
    if not value:
        raise LabelChangeError("the new value is empty")
    with store.sessions() as s, s.begin():
        item = s.get(CatalogItem, int(item_id))
        if item is None or item.status != STATUS_ACTIVE:
            raise LabelChangeError(f"no active catalog item with id {item_id}")
        old = getattr(item, column)
        setattr(item, column, value)
        change = LabelChange(item_id=item.id, column=column, old_value=old, new_value=value,
                             applied_by=applied_by, run_id=run_id)
        s.add(change)
        s.flush()
        return _change_dict(change)


def _change_dict(c: LabelChange) -> dict[str, Any]:
    return {"id": c.id, "item_id": c.item_id, "column": c.column, "old_value": c.old_value, "new_value": c.new_value,
            "applied_by": c.applied_by, "run_id": c.run_id,
            "applied_at": (c.applied_at or dt.datetime.now(dt.UTC)).isoformat()}


def label_changes(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """Applied label changes, newest first."""
    with store.sessions() as s:
        return [_change_dict(c) for c in s.scalars(select(LabelChange).order_by(desc(LabelChange.id)).limit(limit))]


def changed_since(store: Store, item_ids: Iterable[int], run_id: int) -> set[tuple[int, str]]:
    """(item id, column) pairs changed by a merchandiser after the audit run ``run_id`` (its suspects are settled)."""
    ids = [int(i) for i in item_ids]
    if not ids:
        return set()
    with store.sessions() as s:
        with_run = s.get(CurationRun, int(run_id))
        since = with_run.created_at if with_run is not None else None
        stmt = select(LabelChange.item_id, LabelChange.column).where(LabelChange.item_id.in_(ids))
        if since is not None:
            stmt = stmt.where(LabelChange.applied_at >= since)
        return {(int(i), str(c)) for i, c in s.execute(stmt)}


def distrusted_labels(store: Store, columns: Sequence[str], min_confidence: float) -> set[int]:
    """Items whose value in any of ``columns`` the latest label audit flagged with confidence >= ``min_confidence``
    and that nobody has changed since (the outfit slots do not trust these labels; docs/curation.md)."""
    run = latest_run(store, AUDIT)
    if run is None:
        return set()
    flagged = {(int(s["id"]), s["column"]) for s in run["details"].get("suspects", [])
               if s["column"] in columns and float(s["confidence"]) >= min_confidence}
    settled = changed_since(store, {i for i, _ in flagged}, run["id"])
    return {i for i, c in flagged if (i, c) not in settled}


def group_lookup(store: Store, kind: str) -> tuple[int | None, dict[int, int]]:
    """(run id, {item id: group number}) from the latest run of ``kind`` ("duplicates" or "variants")."""
    run = latest_run(store, kind)
    if run is None:
        return None, {}
    out: dict[int, int] = {}
    for g, group in enumerate(run["details"].get("groups", [])):
        for item_id in group["ids"]:
            out.setdefault(int(item_id), g)
    return run["id"], out
