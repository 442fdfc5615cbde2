"""`manage.py train-colour-head`: the colour head's data and recipe (the loop is engine/train/colour_head.py).

Inputs: the served image model's vectors of the catalog (read once from SQL and cached like train-text's, under
``text.cache_dir``), the colour descriptors of the products' pictures (the outfit model's, cached by image sha256 in
``outfit.cache_dir``: the server computes the same ones for every item at start) and each product's base_colour.
Classes: the base colours at least ``min_count`` train products carry; products of rarer colours are left out. Train
products train, val products pick the epoch, test products are never looked at (the image model's splits.csv
decides, as for every model).

May import: engine/, indexer.training.text, indexer.catalog, indexer.outfits.colours and indexer.store (lazily, for
the descriptors).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.models.colour_head import save_colour_head
from engine.train.colour_head import ColourTrainConfig, accuracy, train_colour_head
from indexer.training.text import load_products, served_vectors, split_products

MIN_COUNT = 5


@dataclass
class ColourHeadOptions:
    """Where train-colour-head reads and writes."""

    catalog: Path
    out: Path
    work_dir: Path
    splits: Path | None
    image_fingerprint: str
    images_root: Path | None = None
    min_count: int = MIN_COUNT
    progress: bool = True
    command: str = ""


def product_colours(settings, external_ids: list[str], bins: int,  # noqa: ANN001
                    echo: Callable[[str], None] = print) -> np.ndarray:
    """(len(external_ids), bins**3) colour descriptors of the products' pictures (zeros where the store holds no
    active item for an id), from ``outfit.cache_dir``'s cache or the images themselves (then cached)."""
    from indexer.outfits.colours import catalog_colours
    from indexer.store.catalog_store import Store

    store = Store.from_url(settings.database_url, settings.database.busy_timeout_s)
    try:
        sql_id = {str(row["external_id"]): i for i, row in store.active_item_columns(["external_id"]).items()}
        found = [e for e in external_ids if e in sql_id]
        echo(f"colour descriptors ({bins} bins) of {len(found)} product pictures, cached in "
             f"{settings.resolve_path(settings.outfit.cache_dir)}")
        descriptors = catalog_colours(store, [sql_id[e] for e in found], bins,
                                      settings.resolve_path(settings.outfit.cache_dir))
    finally:
        store.close()
    out = np.zeros((len(external_ids), bins**3), np.float32)
    row = {e: n for n, e in enumerate(found)}
    for n, e in enumerate(external_ids):
        if e in row:
            out[n] = descriptors[row[e]]
    return out


def train_colour_head_from_catalog(settings, opts: ColourHeadOptions, cfg: ColourTrainConfig,  # noqa: ANN001
                                   echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the colour head for the served image model and write ``opts.out`` (+ manifest). Returns the manifest.

    Raises:
        ValueError: no served vectors (index first), or fewer than two colours with ``min_count`` train products.
    """
    t0 = time.perf_counter()
    products = load_products(opts.catalog, opts.images_root)
    external, vectors = served_vectors(settings, opts.image_fingerprint, opts.work_dir, echo)
    row_of = {e: n for n, e in enumerate(external)}
    products = [p for p in products if p.external_id in row_of and p.taxonomy.get("base_colour")]
    split = split_products(products, opts.splits)
    counts = Counter(p.taxonomy["base_colour"] for p in products if split.get(p.external_id) == "train")
    colours = sorted(c for c, n in counts.items() if n >= opts.min_count)
    if len(colours) < 2:
        raise ValueError(f"only {len(colours)} base colour(s) have {opts.min_count}+ train products with a served "
                         "vector: index the catalog first, or lower --min-count")
    index = {c: n for n, c in enumerate(colours)}

    chosen = {which: [p for p in products if split.get(p.external_id) == which and p.taxonomy["base_colour"] in index]
              for which in ("train", "val")}
    ids = {which: [p.external_id for p in ps] for which, ps in chosen.items()}
    # One read of the descriptors for train and val products together (one store pass, one cache load).
    both = (product_colours(settings, ids["train"] + ids["val"], cfg.colour_bins, echo) if cfg.colour_bins
            else None)

    def rows(which: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        start = 0 if which == "train" else len(ids["train"])
        return (vectors[[row_of[e] for e in ids[which]]].reshape(len(ids[which]), vectors.shape[1]),
                None if both is None else both[start:start + len(ids[which])],
                np.asarray([index[p.taxonomy["base_colour"]] for p in chosen[which]], np.int64))

    (x_train, d_train, y_train), val = rows("train"), rows("val")
    echo(f"train-colour-head: {len(y_train)} train products ({len(val[2])} val pick the epoch; test products never "
         f"seen), {len(colours)} base colours with {opts.min_count}+ train products, inputs: served vectors of "
         f"image model {opts.image_fingerprint}"
         + (f" + {cfg.colour_bins}-bin colour descriptors" if cfg.colour_bins else ""))
    head, history = train_colour_head(x_train, y_train, colours, cfg, d_train, val, progress=opts.progress)
    best = max(history, key=lambda r: r.get("val_accuracy", r["epoch"]))
    meta = {"image_fingerprint": opts.image_fingerprint, "epoch": best["epoch"],
            "val": {"val_accuracy": round(accuracy(head, val[0], val[2], val[1]), 4)} if len(val[2]) else {},
            "train_accuracy": round(accuracy(head, x_train, y_train, d_train), 4), "train": asdict(cfg),
            "products": {"train": int(len(y_train)), "val": int(len(val[2]))},
            "colour_counts": {c: counts[c] for c in colours}, "catalog": str(opts.catalog), "command": opts.command}
    manifest = save_colour_head(opts.out, head, meta)
    echo(f"wrote {opts.out} ({manifest['bytes'] / 1e6:.1f} MB, best epoch {best['epoch']}: {meta['val']}) in "
         f"{time.perf_counter() - t0:.0f} s")
    return manifest
