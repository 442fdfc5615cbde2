"""JSON shapes of items and results shared by the API, the pages and the outfit endpoints."""

from __future__ import annotations

from typing import Any

from flask import request

from indexer.search.service import Hit


def hit_json(hit: Hit, region: int | None = None) -> dict[str, Any]:
    """A result: the item's public metadata, its score and where to get its pictures and page."""
    out = item_json(hit.item)
    out["score"] = round(float(hit.score), 6)
    if region is not None:
        out["region"] = region
    return out


def item_json(item: dict[str, Any]) -> dict[str, Any]:
    """An item's public metadata plus the URLs of its picture, thumbnail and page."""
    out = {k: v for k, v in item.items() if k != "status"}
    # The same URLs url_for("pages.item_image"/"item_thumb"/"item_page") builds, without its cost per result.
    page = f"{request.script_root}/items/{int(item['id'])}"
    out["image_url"] = f"{page}/image"
    out["thumb_url"] = f"{page}/thumb"
    out["item_url"] = page
    return out


def garment_json(result, garment) -> dict[str, Any]:  # noqa: ANN001 - indexer.search.query QueryResult, GarmentResult
    """A detected garment: its box, slot, confidence, region index and its own first results."""
    region = result.regions[garment.region].region
    return {"box": [round(float(v), 6) for v in region.box], "slot": region.label,
            "confidence": round(float(region.confidence or 0.0), 6), "region": garment.region,
            "focus": round(float(garment.focus), 6),
            "results": [hit_json(h, garment.region) for h in garment.hits]}
