"""`manage.py make-pairs ...` and `make-splits`: evaluation pair sets and product splits from a catalog."""

from __future__ import annotations

from pathlib import Path

import click

from indexer.cli_support import (
    default_catalog,
    with_settings,
)
from indexer.settings import Settings


@click.group("make-pairs")
def make_pairs() -> None:
    """Write a street-to-shop pair set (pairs.csv + gallery.csv + pairs.json) from a pair source."""


@make_pairs.command("synthetic")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--images-root", type=click.Path(file_okay=False), help="Folder image paths are relative to.")
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False, exists=True),
              help="id,split file; only products of --split are used (default: every product).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--views", default=1, show_default=True, type=click.IntRange(1, 100), help="Photos per product.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--size", default=128, show_default=True, type=click.IntRange(32, 2048), help="Photo size in px.")
@click.option("--preset", default="default", show_default=True, type=click.Choice(["default", "hard"]),
              help="hard: the garment 20-55% of a cluttered frame, rotated, cut off, occluded, damaged (issue 16).")
@click.option("--limit", default=None, type=click.IntRange(1), help="At most this many products (seeded sample).")
@click.option("--label-column", default="article_type", show_default=True)
@click.option("--no-progress", is_flag=True)
@with_settings
def make_pairs_synthetic(settings: Settings, out_dir: str, catalog: str | None, images_root: str | None,
                         splits_file: str | None, split: str, views: int, seed: int, size: int, preset: str,
                         limit: int | None, label_column: str, no_progress: bool) -> None:
    """SYNTHETIC street photos of catalog products (composited, warped, occluded, re-lit, degraded)."""
    from indexer.datasets.make_pairs import make_synthetic_pairs
    from indexer.datasets.synthetic import SyntheticConfig, hard_street_config

    path, root = default_catalog(settings, catalog, images_root)
    cfg = hard_street_config(size) if preset == "hard" else SyntheticConfig(size=size)
    make_synthetic_pairs(path, out_dir, root, splits_file, split, views, seed, cfg, limit,
                         label_column, progress=not no_progress, echo=click.echo)


def _save_pairs(pair_set, out_dir: str) -> None:
    from indexer.datasets.make_pairs import save_pair_set, summarize_pair_set

    save_pair_set(pair_set, out_dir)
    summarize_pair_set(pair_set, Path(out_dir), click.echo)


@make_pairs.command("deepfashion-c2s")
@click.argument("root", type=click.Path(file_okay=False, exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--partition", "partitions", multiple=True, default=("test",), show_default=True,
              type=click.Choice(["train", "val", "test"]), help="Repeat for several (protocol gallery: val + test).")
@with_settings
def make_pairs_c2s(settings: Settings, root: str, out_dir: str, partitions: tuple[str, ...]) -> None:
    """DeepFashion Consumer-to-shop (Eval/list_eval_partition.txt, Anno/list_bbox_consumer2shop.txt)."""
    from indexer.datasets.pairs import read_deepfashion_consumer2shop

    _save_pairs(read_deepfashion_consumer2shop(root, partitions), out_dir)


@make_pairs.command("deepfashion-inshop")
@click.argument("root", type=click.Path(file_okay=False, exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--partition", default="test", show_default=True, type=click.Choice(["train", "test"]))
@with_settings
def make_pairs_inshop(settings: Settings, root: str, out_dir: str, partition: str) -> None:
    """DeepFashion In-shop retrieval (Eval/list_eval_partition.txt, Anno/list_bbox_inshop.txt)."""
    from indexer.datasets.pairs import read_deepfashion_inshop

    _save_pairs(read_deepfashion_inshop(root, partition), out_dir)


@make_pairs.command("street2shop")
@click.option("--meta", "meta_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Folder of <split>_pairs_<category>.json and retrieval_<category>.json.")
@click.option("--images", "images_dir", required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--category", "categories", multiple=True, help="Repeat for several (default: all).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "test"]))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@with_settings
def make_pairs_street2shop(settings: Settings, meta_dir: str, images_dir: str, categories: tuple[str, ...],
                           split: str, out_dir: str) -> None:
    """Street2Shop ("Where to buy it") retrieval JSON: photo, product, bbox."""
    from indexer.datasets.pairs import read_street2shop

    _save_pairs(read_street2shop(meta_dir, images_dir, list(categories) or None, split), out_dir)


@make_pairs.command("csv")
@click.option("--pairs", "pairs_csv", required=True, type=click.Path(dir_okay=False, exists=True),
              help="query_image,item_id[,x0,y0,x1,y1] (box in pixels).")
@click.option("--gallery", "gallery_csv", required=True, type=click.Path(dir_okay=False, exists=True),
              help="id,image[,item_id].")
@click.option("--images-root", type=click.Path(file_okay=False), help="Relative paths root (default: each CSV's).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@with_settings
def make_pairs_csv(settings: Settings, pairs_csv: str, gallery_csv: str, images_root: str | None,
                   out_dir: str) -> None:
    """A generic pairs CSV + gallery CSV, checked and normalised."""
    from indexer.datasets.pairs import read_pair_set

    _save_pairs(read_pair_set(pairs_csv, gallery_csv, images_root).without_orphans(), out_dir)


@click.command("make-splits")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False))
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--images-root", type=click.Path(file_okay=False))
@click.option("--val-fraction", default=0.05, show_default=True, type=click.FloatRange(0, 1))
@click.option("--test-fraction", default=0.15, show_default=True, type=click.FloatRange(0, 1))
@click.option("--seed", default=0, show_default=True, type=int)
@with_settings
def make_splits_cmd(settings: Settings, out_file: str, catalog: str | None, images_root: str | None,
                    val_fraction: float, test_fraction: float, seed: int) -> None:
    """Assign every catalog product to train / val / test by a seeded hash of its id; write id,split."""
    from indexer.catalog.splits import split_counts
    from indexer.training.embedding import load_or_make_splits, read_products

    path, root = default_catalog(settings, catalog, images_root)
    products, _ = read_products(path, root)
    splits = load_or_make_splits(products, Path(out_file), val_fraction, test_fraction, seed)
    click.echo(f"{out_file}: {split_counts(splits)}")
