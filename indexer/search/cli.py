"""`manage.py search IMAGE`: the catalog items most similar to a photo, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from indexer.cli_support import (
    parse_filters,
    with_settings,
)
from indexer.settings import Settings


@click.command("search")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--filter", "filters", multiple=True, help="column=value; repeat for more (same column: OR).")
@click.option("--threshold", type=float, default=None, help="Minimum cosine similarity.")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def search_cmd(settings: Settings, image: str, k: int, filters: tuple[str, ...], threshold: float | None,
               as_json: bool) -> None:
    """Find the catalog items most similar to IMAGE."""
    from indexer.catalog.images import decode_image
    from indexer.embedders import create_embedder_from_settings
    from indexer.wiring import create_search_service, open_store

    data = Path(image).read_bytes()
    img = decode_image(data, settings.web.max_image_pixels, settings.web.decode_min_side)
    service = create_search_service(settings, open_store(settings), create_embedder_from_settings(settings))
    hits = service.search_image(img, k, parse_filters(filters) or None, threshold)
    if as_json:
        click.echo(json.dumps({"query": image, "k": k, "results": [h.as_dict() for h in hits]}, indent=2))
        return
    for rank, h in enumerate(hits, 1):
        item = h.item
        click.echo(f"{rank:3d}  {h.score:.4f}  {item['external_id']:>10}  {item['title']}  "
                   f"[{item.get('article_type') or '-'}, {item.get('base_colour') or '-'}]")
    if not hits:
        click.echo("no results")
