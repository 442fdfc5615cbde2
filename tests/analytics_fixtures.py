"""Seeded evaluation runs and sweeps for the analyst page tests (web and browser)."""

from __future__ import annotations

import base64
import io

from PIL import Image
from sqlalchemy import select

from indexer.store.tables import CatalogItem, EvaluationRun


def _thumb(colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (48, 64), colour).save(buf, "JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _curve(r1: float, r20: float) -> list[float]:
    return [round(r1 + (r20 - r1) * (1 - 0.85 ** (k - 1)) / (1 - 0.85 ** 19), 4) for k in range(1, 21)]


def seed_runs(store) -> list[int]:
    """Two category runs (a baseline and a better model) over the store's catalog items; returns their ids.

    Failures name real catalog external ids when the store has items, so the gallery shows thumbnails.
    """
    with store.sessions() as s:
        ext = list(s.scalars(select(CatalogItem.external_id).order_by(CatalogItem.id).limit(12)))
    ext = ext or [f"missing-{i}" for i in range(12)]
    ids = []
    for n, (fp, r1, r20) in enumerate((("base0000aaaa", 0.62, 0.90), ("tuned1111bbbb", 0.81, 0.97))):
        per_label = {
            "Tshirts": {"recall@1": r1 + 0.1, "recall@5": r1 + 0.2, "recall@10": min(1.0, r1 + 0.25),
                        "recall@20": min(1.0, r1 + 0.3), "mAP": r1, "n_queries": 40},
            "Watches": {"recall@1": r1 - 0.2 + 0.1 * n, "recall@5": r1 - 0.1, "recall@10": r1 - 0.05 + 0.1 * n,
                        "recall@20": r1, "mAP": r1 - 0.2, "n_queries": 12},
            "Casual Shoes": {"recall@1": r1 - 0.3, "recall@5": r1 - 0.25, "recall@10": r1 - 0.2 - 0.3 * n,
                             "recall@20": r1 - 0.1, "mAP": r1 - 0.3, "n_queries": 8},
        }
        failures = {"k": 10, "n_failed": 3 - n, "n_queries": 60, "queries": [
            {"query": ext[q], "item_id": ext[q], "label": "Watches", "true_rank": 14 + q if q else None,
             "thumb": _thumb((200, 60 + 40 * q, 40)),
             "returned": [{"item_id": ext[(q + j + 3) % len(ext)], "label": "Watches"} for j in range(5)]}
            for q in range(3 - n)]}
        curve = _curve(r1, r20)
        run = EvaluationRun(
            kind="category", model_fingerprint=fp, index_spec="Flat", dataset_sha256="d" * 64,
            dataset="category catalog=tests label=article_type split=test",
            metrics={"recall@1": r1, "recall@5": curve[4], "recall@10": curve[9], "recall@20": r20,
                     "mAP": r1 - 0.1, "n_queries": 60},
            details={"kind": "category", "synthetic": False, "per_label": per_label, "recall_curve": curve,
                     "label_column": "article_type", "n_gallery": 80, "failures": failures,
                     "model": {"name": "efficientnet_lite0", "checkpoint": "", "input_size": 64}})
        with store.sessions() as s:
            s.add(run)
            s.commit()
            ids.append(int(run.id))
    return ids
