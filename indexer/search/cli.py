"""`manage.py search [IMAGE] [--text WORDS]`: the catalog items most similar to a photo and / or words, from the
command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from indexer.cli_support import (
    fail,
    parse_filters,
    with_settings,
)
from indexer.settings import Settings


@click.command("search")
@click.argument("image", type=click.Path(dir_okay=False), required=False)
@click.option("--text", default=None, help="Words to search for; with IMAGE, a modifier of it (\"in red\").")
@click.option("--negative-text", default=None, help="Words the results should be unlike.")
@click.option("--like", "positive_ids", multiple=True, type=click.IntRange(1),
              help="Item id the results should be like (thumbs up); repeat for more.")
@click.option("--unlike", "negative_ids", multiple=True, type=click.IntRange(1),
              help="Item id to drop with its look-alikes (thumbs down); repeat for more.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--filter", "filters", multiple=True, help="column=value; repeat for more (same column: OR).")
@click.option("--threshold", type=float, default=None, help="Minimum cosine similarity.")
@click.option("--collapse", type=click.Choice(["none", "duplicates", "variants"]), default="none", show_default=True,
              help="One result per group of the latest `manage.py duplicates` run (the rest shown as +N more).")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def search_cmd(settings: Settings, image: str | None, k: int, filters: tuple[str, ...], threshold: float | None,
               as_json: bool, collapse: str = "none", text: str | None = None, negative_text: str | None = None,
               positive_ids: tuple[int, ...] = (), negative_ids: tuple[int, ...] = ()) -> None:
    """Find the catalog items most similar to IMAGE and / or --text WORDS."""
    if text is not None or negative_text is not None or positive_ids or negative_ids:
        _search_composed(settings, image, k, filters, threshold, as_json, text, negative_text, positive_ids,
                         negative_ids, collapse)
        return
    if image is None:
        fail("nothing to search for: give an IMAGE and / or --text WORDS")
    from engine.localize import looks_like_product_shot
    from indexer.catalog.images import decode_image
    from indexer.embedders import create_embedder_from_settings, query_embedder_from_settings
    from indexer.wiring import create_search_service, open_store

    data = Path(image).read_bytes()
    img = decode_image(data, settings.web.max_image_pixels, settings.web.decode_min_side)
    embedder = create_embedder_from_settings(settings)
    service = create_search_service(settings, open_store(settings), embedder)
    # The whole photo, embedded as the API would: a product shot by the served model, any other photo by the street
    # encoder when one is configured.
    model = embedder if looks_like_product_shot(img) else query_embedder_from_settings(settings, embedder)[0]
    vector = model.embed_images([img])
    more: dict[int, list[int]] = {}
    if collapse == "none":
        hits = service.search_vectors(vector, k, parse_filters(filters) or None, threshold)[0]
    else:
        from indexer.curation.collapse import FETCH_FACTOR, GroupCache, collapse_ranked

        found = service.search_vectors(vector, k * FETCH_FACTOR, parse_filters(filters) or None, threshold)[0]
        kept = collapse_ranked(found, lambda h: h.id, GroupCache(service.store).groups(collapse))[:k]
        hits, more = [h for h, _ in kept], {h.id: m for h, m in kept if m}
    if as_json:
        click.echo(json.dumps({"query": image, "k": k, "collapse": collapse,
                               "results": [{**h.as_dict(), **({"more_ids": more.get(h.id, [])} if collapse != "none"
                                                              else {})} for h in hits]}, indent=2))
        return
    for rank, h in enumerate(hits, 1):
        item = h.item
        extra = f"  +{len(more[h.id])} more" if h.id in more else ""
        click.echo(f"{rank:3d}  {h.score:.4f}  {item['external_id']:>10}  {item['title']}  "
                   f"[{item.get('article_type') or '-'}, {item.get('base_colour') or '-'}]{extra}")
    if not hits:
        click.echo("no results")


def _search_composed(settings: Settings, image: str | None, k: int, filters: tuple[str, ...],
                     threshold: float | None, as_json: bool, text: str | None, negative_text: str | None,
                     positive_ids: tuple[int, ...], negative_ids: tuple[int, ...], collapse: str = "none") -> None:
    """Words, thumbs up / down and an optional photo, through QueryEngine.search_composed (as the API)."""
    from engine.models.text_tower import MAX_QUERY_CHARS, TextTowerError
    from indexer.catalog.images import decode_image
    from indexer.embedders import create_embedder_from_settings, query_embedder_from_settings
    from indexer.search.composed import EmptyQueryError, UnknownItemsError, text_setup_from_settings
    from indexer.search.query import QueryEngine, QueryOptions
    from indexer.wiring import create_search_service, open_store

    words = {}
    for name, value in (("--text", text), ("--negative-text", negative_text)):
        clean = " ".join((value or "").split())
        if value is not None and not clean:
            fail(f"{name} is empty: type a few words")
        if len(clean) > MAX_QUERY_CHARS:
            fail(f"{name} is too long ({len(clean)} characters): at most {MAX_QUERY_CHARS}")
        words[name] = clean
    img = None
    if image is not None:
        img = decode_image(Path(image).read_bytes(), settings.web.max_image_pixels, settings.web.decode_min_side)
    embedder = create_embedder_from_settings(settings)
    service = create_search_service(settings, open_store(settings), embedder)
    text_model, weights = text_setup_from_settings(settings)
    query_embedder = query_embedder_from_settings(settings, embedder)[0] if img is not None else None
    engine = QueryEngine(service, text_model=text_model, weights=weights, query_embedder=query_embedder)
    options = QueryOptions(k=k, filters=parse_filters(filters) or None, threshold=threshold, text=words["--text"],
                           negative_text=words["--negative-text"], positive_ids=tuple(positive_ids),
                           negative_ids=tuple(negative_ids), collapse=collapse)
    try:
        hits = engine.search_composed(img, options).hits
    except (TextTowerError, UnknownItemsError, EmptyQueryError) as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps({"query": {"image": image, "text": words["--text"]}, "k": k, "collapse": collapse,
                               "results": [h.as_dict() for h in hits]}, indent=2))
        return
    for rank, h in enumerate(hits, 1):
        item = h.item
        extra = f"  +{len(item['more_ids'])} more" if item.get("more_ids") else ""
        click.echo(f"{rank:3d}  {h.score:.4f}  {item['external_id']:>10}  {item['title']}  "
                   f"[{item.get('article_type') or '-'}, {item.get('base_colour') or '-'}]{extra}")
    if not hits:
        click.echo("no results")
