"""Wiring from Settings to the outfit library; shared by manage.py, bench/outfits.py and the web app."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine.outfits.model import OutfitModelError, load_outfit_model
from engine.outfits.training import CompatConfig, SlotConfig
from indexer.catalog.source import CatalogRow, iter_catalog, open_catalog
from indexer.catalog.splits import assign_splits, read_splits
from indexer.outfits.catalog import load_outfit_catalog
from indexer.outfits.evaluation import (
    OutfitEvaluation,
    catalog_vectors,
    embed_item_images,
    evaluate_outfit_dataset,
    item_colours,
    item_slots,
)
from indexer.outfits.polyvore import find_items_file, load_dataset, write_dataset
from indexer.outfits.proxy import SPLIT_SEED_OFFSET, build_proxy_dataset, products_from_rows
from indexer.outfits.service import OutfitService, check_outfit_model
from indexer.outfits.slots import SlotRules, SlotRulesError, parse_category_map, parse_slot_rules
from indexer.outfits.training import OutfitTrainOptions, train_outfit_model
from indexer.search.service import SearchService
from indexer.settings import Settings
from indexer.store.catalog_store import Store


def outfit_rules(settings: Settings) -> SlotRules:
    """The configured slots and templates (raises SlotRulesError when malformed)."""
    return parse_slot_rules(settings.outfit.slots, settings.outfit.templates)


def outfit_checkpoint(settings: Settings, fingerprint: str, override: str | None = None) -> Path:
    """The outfit model file for the served model: ``outfit.checkpoint`` (or ``override``) when it names a ``.pt``
    file, else ``<that folder>/<fingerprint>.pt`` — a folder keeps one outfit model per served model, so switching
    [model] picks the matching outfit model by itself."""
    path = settings.resolve_path(override or settings.outfit.checkpoint)
    return path if path.suffix == ".pt" else path / f"{fingerprint}.pt"


def create_outfit_service(settings: Settings, search: SearchService, checkpoint: str | None = None,
                          embed: Callable | None = None) -> OutfitService:
    """The OutfitService over a search service (raises OutfitModelError when the model does not fit)."""
    return OutfitService(search, settings.outfit, outfit_checkpoint(settings, search.embedder.fingerprint, checkpoint),
                         embed=embed, cache_dir=settings.resolve_path(settings.outfit.cache_dir),
                         distrust_confidence=settings.curation.outfit_distrust_confidence)


def catalog_rows(settings: Settings, catalog: str | None = None) -> list[dict[str, Any]]:
    """{"id", taxonomy...} of every readable row of a catalog CSV (default catalog.default_csv)."""
    path = catalog or str(settings.default_csv)
    root = settings.resolve_path(settings.catalog.images_root) if settings.catalog.images_root and not catalog else None
    return [{"id": r.external_id, **r.taxonomy} for r in iter_catalog(open_catalog(path, root))
            if isinstance(r, CatalogRow)]


def make_proxy_outfit_files(settings: Settings, out: str | os.PathLike, splits: Sequence[str] = ("test",),
                            catalog: str | None = None, splits_file: str | None = None,
                            n_outfits: int = 3000, seed: int = 0) -> dict[str, dict[str, Path]]:
    """Write PROXY outfit datasets (Polyvore Outfits layout) for the given splits of a catalog's products.

    With the defaults this is exactly the held-out test set `train-outfits` reports on.
    """
    rows = catalog_rows(settings, catalog)
    ids = [r["id"] for r in rows]
    assignment = read_splits(splits_file) if splits_file else assign_splits(ids)
    rules = outfit_rules(settings)
    written = {}
    for split in splits:
        products = products_from_rows([r for r in rows if assignment.get(r["id"], "train") == split], rules)
        ds = build_proxy_dataset(products, rules, split, n_outfits, seed + SPLIT_SEED_OFFSET[split])
        written[split] = write_dataset(out, split, ds)
    return written


def evaluate_outfit_files(settings: Settings, store: Store, embedder, outfits: str, questions: Sequence[str],
                          items: str | None = None, images_root: str | None = None,
                          checkpoint: str | None = None) -> OutfitEvaluation:
    """`evaluate outfits`: load the dataset, get item vectors (store first, then images), score the questions.

    Raises:
        OutfitDataError: Unreadable dataset files.
        OutfitModelError: No usable outfit model for the configured embedder.
    """
    rules = outfit_rules(settings)
    ds = load_dataset(outfits, list(questions), items)
    path = outfit_checkpoint(settings, embedder.fingerprint, checkpoint)
    model, meta = load_outfit_model(path)
    check_outfit_model(model, meta, rules, embedder.fingerprint, embedder.dim)
    vectors = catalog_vectors(store, embedder.fingerprint, list(ds.items))
    missing = [i for i in ds.items if i not in vectors]
    root = Path(images_root) if images_root else find_items_file(items or outfits).parent / "images"
    if missing and root.is_dir():
        vectors.update(embed_item_images(embedder, missing, root, settings.web.max_image_pixels))
    colours = (item_colours(store, list(ds.items), model.colour_bins, root if root.is_dir() else None,
                            settings.web.max_image_pixels) if model.colour_bins else None)
    slots = item_slots(ds, rules, parse_category_map(settings.outfit.polyvore_categories, rules))
    ev = evaluate_outfit_dataset(ds, vectors, slots, model, dataset=str(outfits), colours=colours)
    ev.checkpoint, ev.fingerprint = str(path), embedder.fingerprint
    return ev


def outfit_model_status(settings: Settings, embedder, checkpoint: str | None = None) -> tuple[bool, str]:
    """(usable, why): whether the outfit checkpoint fits the configured model and slots (for --if-stale)."""
    path = outfit_checkpoint(settings, embedder.fingerprint, checkpoint)
    try:
        model, meta = load_outfit_model(path)
        check_outfit_model(model, meta, outfit_rules(settings), embedder.fingerprint, embedder.dim)
    except (OutfitModelError, SlotRulesError) as exc:
        return False, str(exc)
    templates = ["+".join(t) for t in outfit_rules(settings).templates]
    if meta.get("templates") not in (None, templates):
        return False, f"the outfit model was trained for templates {meta.get('templates')}, configured: {templates}"
    return True, f"{path} fits model {embedder.fingerprint} and the configured slots"


def train_outfits(settings: Settings, store: Store, embedder, opts: OutfitTrainOptions, compat: CompatConfig,
                  slot: SlotConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """`train-outfits`: PROXY outfits from the indexed catalog -> the outfit model checkpoint."""
    rules = outfit_rules(settings)
    catalog = load_outfit_catalog(store, embedder.fingerprint, rules, opts.colour_bins,
                                  settings.resolve_path(settings.outfit.cache_dir))
    echo(f"catalog: {len(catalog.ids)} items with vectors of model {embedder.fingerprint}, "
         f"{int((catalog.slots >= 0).sum())} in outfit slots")
    return train_outfit_model(catalog, rules, embedder.fingerprint, opts, compat, slot,
                              embedder_info=embedder.describe(), echo=echo)
