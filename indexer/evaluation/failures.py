"""Failed queries of an evaluation run, for the analysts' failure gallery (/analytics/runs/<id>).

A query fails at k when none of its relevant gallery images is among its first k results. ``collect_failures``
keeps the worst ones (true item ranked lowest, or not at all, first) with what came back instead and a small JPEG
thumbnail of the query photo inline (a data: URL), so the stored run stays viewable after the pair folder is gone
and the web server never opens files named by the database.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.datasets.pairs import crop_query

FAILURE_K = 10
MAX_FAILURES = 60
THUMB_SIDE = 128

Box = tuple[float, float, float, float]


def thumbnail_data_url(path: str | Path, bbox: Box | None = None, side: int = THUMB_SIDE,
                       max_pixels: int = 40_000_000) -> str | None:
    """A JPEG data: URL of the (cropped) image at most ``side`` px on its longer side; None if unreadable."""
    try:
        img = crop_query(decode_image(Path(path).read_bytes(), max_pixels), bbox).convert("RGB")
    except (OSError, ImageDecodeError, ValueError):
        return None
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def collect_failures(first_hit: np.ndarray, top: np.ndarray, queries: Sequence[dict[str, Any]],
                     result: Callable[[int], dict[str, Any]], images: Sequence[tuple[Path, Box | None]],
                     depth: int, k: int = FAILURE_K, limit: int = MAX_FAILURES,
                     max_pixels: int = 40_000_000) -> dict[str, Any]:
    """The worst failed queries at k, with the top-k results that came back instead.

    Args:
        first_hit: (Q,) 0-based rank of each query's first relevant result (``depth`` when none is ranked).
        top: (Q, >=k) ranked gallery rows of each query (-1 = no result).
        queries: Per query, what identifies it ({"query": ..., "item_id": ..., "label": ...}).
        result: Gallery row -> what identifies that result ({"item_id": ..., ...}).
        images: Per query, (image path, crop box) for its thumbnail.
        depth: Length of the ranked lists behind ``first_hit``.
        k: The cut-off a query fails at.
        limit: At most this many failures are kept.

    Returns:
        {"k", "n_failed", "n_queries", "queries": [{..query.., "true_rank": 1-based or None, "returned": [...],
        "thumb": data URL or None}]}.
    """
    first_hit = np.asarray(first_hit)
    k = min(k, top.shape[1]) if top.ndim == 2 and top.shape[1] else k
    failed = np.flatnonzero(first_hit >= k)
    worst = failed[np.argsort(-first_hit[failed], kind="stable")][:limit]
    entries = []
    for q in worst.tolist():
        rank = int(first_hit[q])
        entries.append({**queries[q], "true_rank": rank + 1 if rank < depth else None,
                        "returned": [result(int(r)) for r in top[q, :k] if r >= 0],
                        "thumb": thumbnail_data_url(*images[q], max_pixels=max_pixels)})
    return {"k": int(k), "n_failed": int(len(failed)), "n_queries": int(len(first_hit)), "queries": entries}
