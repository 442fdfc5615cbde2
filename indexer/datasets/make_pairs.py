"""`manage.py make-pairs`: write a pair set (pairs.csv + gallery.csv + pairs.json) from any pair source.

Synthetic pairs come from catalog products of one split: for each product, ``views`` synthetic street photos are
written as JPEGs under ``<out>/queries/`` and the product's own catalog image is its gallery image. ``pairs.json``
records the source, seeds, generator config and checksums, and says ``"synthetic": true`` so that every report made
from these pairs labels them as synthetic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from engine.files import file_sha256, write_atomically
from indexer.catalog.source import CatalogRow, catalog_digest, iter_catalog, open_catalog
from indexer.catalog.splits import read_splits
from indexer.datasets.pairs import PAIRS_MANIFEST, GalleryImage, PairSet, QueryPair, write_pair_set
from indexer.datasets.synthetic import StreetPhotoSynthesizer, SyntheticConfig

QUERY_JPEG_QUALITY = 95


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``pairs.json`` beside the CSVs, crash-safely."""
    path = Path(out_dir) / PAIRS_MANIFEST
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    write_atomically(path, lambda f: f.write(data))
    return path


def save_pair_set(pair_set: PairSet, out_dir: str | os.PathLike, extra: dict[str, Any] | None = None) -> dict:
    """Write pairs.csv, gallery.csv and pairs.json; returns the manifest."""
    out = Path(out_dir)
    pairs_csv, gallery_csv = write_pair_set(pair_set, out)
    manifest = {"source": pair_set.source, "synthetic": False, "n_pairs": len(pair_set.pairs),
                "n_gallery": len(pair_set.gallery), "n_items": len({g.item_id for g in pair_set.gallery}),
                "problems": pair_set.problems[:100], "n_problems": len(pair_set.problems),
                "pairs_sha256": file_sha256(pairs_csv), "gallery_sha256": file_sha256(gallery_csv), **(extra or {})}
    write_manifest(out, manifest)
    return manifest


def make_synthetic_pairs(catalog: str | os.PathLike, out_dir: str | os.PathLike,
                         images_root: str | os.PathLike | None = None, splits_file: str | os.PathLike | None = None,
                         split: str = "test", views: int = 1, seed: int = 1,
                         cfg: SyntheticConfig | None = None, limit: int | None = None,
                         label_column: str = "article_type", workers: int = 2, progress: bool = True,
                         echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Synthetic street-to-shop pairs for the catalog products of one split.

    Args:
        catalog: Catalog CSV (the format ``manage.py index`` reads).
        out_dir: Output folder (queries/, pairs.csv, gallery.csv, pairs.json).
        images_root: Folder the catalog's image paths are relative to (default: the CSV's folder).
        splits_file: ``id,split`` file; None = use every product.
        split: Which split's products to use when ``splits_file`` is given.
        views: Synthetic photos per product.
        seed: Generator seed (training uses its own; the default 1 keeps evaluation photos distinct from them).
        cfg: Generator difficulty (default ``SyntheticConfig()``).
        limit: At most this many products (a seeded sample), for small runs.
        label_column: Taxonomy column copied as the pairs' label (per-label breakdown).

    Returns:
        The manifest written to pairs.json.
    """
    out = Path(out_dir)
    source = open_catalog(catalog, images_root)
    rows = [r for r in iter_catalog(source) if isinstance(r, CatalogRow)]
    splits_sha = None
    if splits_file:
        splits = read_splits(splits_file)
        rows = [r for r in rows if splits.get(r.external_id) == split]
        splits_sha = file_sha256(splits_file)
    if limit is not None and len(rows) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
        rows = [rows[i] for i in keep]
    if not rows:
        raise ValueError(f"no catalog products to make pairs from (split {split!r}, splits file {splits_file})")
    paths = {r.external_id: r.image_path for r in rows}

    def load(pid: str) -> Image.Image:
        with Image.open(paths[pid]) as img:
            return img.convert("RGB")

    synth = StreetPhotoSynthesizer(load, [r.external_id for r in rows], seed=seed, cfg=cfg or SyntheticConfig())
    qdir = out / "queries"
    qdir.mkdir(parents=True, exist_ok=True)

    def label_of(r: CatalogRow) -> str:
        return r.taxonomy.get(label_column) or str(r.attributes.get(label_column, "")) or ""

    def make(r: CatalogRow) -> list[QueryPair]:
        shop = load(r.external_id)
        made = []
        for v in range(views):
            path = qdir / f"{_safe(r.external_id)}_{v}.jpg"
            if not path.is_file():  # rerunning after an interruption keeps finished photos (they are identical)
                img = synth.view(r.external_id, v, shop)
                tmp = path.with_suffix(".jpg.tmp")
                img.save(tmp, "JPEG", quality=QUERY_JPEG_QUALITY)
                os.replace(tmp, path)
            made.append(QueryPair(path, r.external_id, None, label_of(r)))
        return made

    pairs: list[QueryPair] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for made in tqdm(pool.map(make, rows), total=len(rows), unit="product", desc="synthetic pairs",
                         disable=not progress, mininterval=5.0):
            pairs += made
    gallery = [GalleryImage(r.external_id, r.image_path, r.external_id, label_of(r)) for r in rows]
    pair_set = PairSet(f"synthetic:{Path(catalog).name}:{split if splits_file else 'all'}", pairs, gallery)
    manifest = save_pair_set(pair_set, out, {
        "synthetic": True, "catalog": str(catalog), "catalog_sha256": catalog_digest(source),
        "splits": str(splits_file) if splits_file else None, "splits_sha256": splits_sha, "split": split,
        "views": views, "label_column": label_column, "generator": synth.describe(), "limit": limit})
    echo(f"wrote {len(pairs)} SYNTHETIC queries of {len(rows)} products to {out} (pairs.csv, gallery.csv)")
    return manifest


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def summarize_pair_set(pair_set: PairSet, out_dir: Path, echo: Callable[[str], None] = print) -> None:
    """One line per file written and the first problems."""
    echo(f"wrote {len(pair_set.pairs)} queries and {len(pair_set.gallery)} gallery images to {out_dir} "
         "(pairs.csv, gallery.csv, pairs.json)")
    for p in pair_set.problems[:10]:
        echo(f"  {p}")
