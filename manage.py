#!/usr/bin/env python3
"""Lookalike command line: thin wrappers over indexer/ and engine/.

Every command takes --config PATH (default ./config.toml, or env LOOKALIKE_CONFIG).
Errors are printed as one line starting with "error:" and exit with status 2 (1 for a failed check).
"""

from __future__ import annotations

import functools
import json
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask.cli import FlaskGroup
from sqlalchemy.exc import DBAPIError

from indexer.settings import Settings, SettingsError, load_settings


def _known_errors() -> tuple[type[BaseException], ...]:
    """The error classes reported as one line. A module that cannot be imported here (a bare training machine
    without alembic or faiss, say) cannot have raised its error, so it is skipped rather than failing the report."""
    import importlib

    found: list[type[BaseException]] = [SettingsError, ValueError, FileNotFoundError, PermissionError]
    for module, names in (("engine", ("EmbedderError",)), ("indexer.catalog", ("CatalogError",)),
                          ("indexer.db", ("StoreError",)), ("indexer.generations", ("GenerationError",)),
                          ("indexer.images", ("ImageDecodeError",)), ("indexer.pipeline", ("WriterBusyError",)),
                          ("indexer.ray_embed", ("RayIndexError",)), ("indexer.store", ("FilterError",)),
                          ("indexer.vector_store", ("MissingExtraError", "VectorStoreError"))):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found.extend(getattr(mod, name) for name in names)
    return tuple(found)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def with_settings(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --config, load settings into the first argument, and turn known errors into one-line messages."""

    @click.option("--config", "config_path", default="config.toml", envvar="LOOKALIKE_CONFIG", show_default=True,
                  type=click.Path(dir_okay=False), help="Config file (env LOOKALIKE_CONFIG).")
    @functools.wraps(func)
    def wrapper(config_path: str, **kwargs: Any) -> Any:
        try:
            settings = load_settings(config_path)
        except SettingsError as exc:
            fail(str(exc))
        try:
            return func(settings, **kwargs)
        except _known_errors() as exc:
            fail(str(exc))
        except DBAPIError as exc:
            fail(f"database error: {exc.orig}. Check database.url, that no other process holds a long write lock, "
                 "and that the database file and its folder are writable")
        except OSError as exc:
            fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
        except KeyboardInterrupt:
            fail("interrupted; rerun the command to resume", 130)

    return wrapper


def _create_app_for_cli():
    from web import create_app

    ctx = click.get_current_context(silent=True)
    path = (ctx.params.get("config_path") if ctx else None) or "config.toml"
    import os

    return create_app(load_settings(os.environ.get("LOOKALIKE_CONFIG", path)))


cli = FlaskGroup(create_app=_create_app_for_cli, add_default_commands=False,
                 help="Lookalike: visual similarity search for fashion catalogs.")


# ---- db ------------------------------------------------------------------------------------

@cli.group()
def db() -> None:
    """Database migrations (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@with_settings
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply migrations up to REVISION (default head)."""
    from indexer.db import upgrade_database

    upgrade_database(settings.database_url, revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision", default="-1")
@with_settings
def db_downgrade(settings: Settings, revision: str) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    from indexer.db import downgrade_database

    downgrade_database(settings.database_url, revision)
    click.echo(f"database downgraded to {revision}")


@db.command("check")
@with_settings
def db_check(settings: Settings) -> None:
    """Exit 1 unless the database is at head and matches the models."""
    from indexer.db import StoreError, check_database

    try:
        check_database(settings.database_url)
    except StoreError as exc:
        fail(str(exc), 1)
    click.echo("database is up to date and matches the models")


# ---- index / remove / check ------------------------------------------------------------------

@cli.command("index")
@click.argument("catalog", required=False)
@click.option("--images-root", type=click.Path(file_okay=False), help="Folder image paths are relative to.")
@click.option("--rebuild", is_flag=True, help="Build a fresh index generation from SQL even if nothing changed.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--crash-at", hidden=True, default=None, help="(tests) SIGKILL this process at a named point.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Embed on a Ray cluster: 'auto' starts a local one for this run, else an address for ray.init "
                   "(ray://head:10001, host:6379). Needs the scale extra; see docs/scaling.md.")
@click.option("--ray-workers", default=0, show_default=True, type=click.IntRange(0),
              help="Embedding actors with --ray (0 = one per GPU, or one per CPU where the cluster has no GPU).")
@with_settings
def index_cmd(settings: Settings, catalog: str | None, images_root: str | None, rebuild: bool, as_json: bool,
              no_progress: bool, crash_at: str | None, ray_address: str | None, ray_workers: int) -> None:
    """Import CATALOG (a CSV with id,image columns, or a folder of images), embed and index it.

    Resumable and idempotent: rerunning after a crash finishes the job without redoing finished
    items; rerunning over an unchanged catalog changes nothing. With --ray the embedding runs on
    Ray Data actors; SQL and the vector store are written exactly as without it.
    """
    from indexer.catalog import open_catalog
    from indexer.pipeline import kill_at
    from indexer.service import create_embedder_from_settings, create_pipeline, create_ray_pipeline, open_store

    path = catalog or str(settings.resolve_path(settings.catalog.default_csv))
    root = images_root or (str(settings.resolve_path(settings.catalog.images_root))
                           if settings.catalog.images_root and not catalog else None)
    source = open_catalog(path, root)
    store = open_store(settings)
    embedder = create_embedder_from_settings(settings)
    hook = kill_at(crash_at) if crash_at else None
    progress = not no_progress and not as_json
    if ray_address:
        from indexer.ray_embed import RayOptions

        pipeline = create_ray_pipeline(settings, store, embedder, RayOptions(address=ray_address, workers=ray_workers),
                                       crash_hook=hook, progress=progress)
    else:
        pipeline = create_pipeline(settings, store, embedder, crash_hook=hook, progress=progress)
    try:
        report = pipeline.run(source, rebuild=rebuild)
    finally:
        pipeline.vector_store.close()
    data = report.as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"rows: {report.rows}  new: {report.new}  changed: {report.changed}  "
               f"re-embedded: {report.reembedded}  metadata updated: {report.metadata_updated}  "
               f"unchanged: {report.unchanged}  skipped: {len(report.problems)}")
    for problem in report.problems[:50]:
        click.echo(f"  skipped {problem}")
    if len(report.problems) > 50:
        click.echo(f"  ... and {len(report.problems) - 50} more (use --json for all)")
    rate = data["items_per_second"]
    runner = getattr(pipeline, "runner", "") or str(embedder.device)
    click.echo(f"embedded {report.embedded} items in {report.elapsed_seconds:.1f}s ({rate} items/s) on {runner}")
    state = "published" if report.published else "unchanged"
    click.echo(f"index generation {report.generation} ({report.generation_count} vectors, {report.spec}): {state}")


@cli.command("remove")
@click.argument("ids", nargs=-1, required=True)
@click.option("--crash-at", hidden=True, default=None)
@with_settings
def remove_cmd(settings: Settings, ids: tuple[str, ...], crash_at: str | None) -> None:
    """Delete catalog items (by their catalog id) from SQL and the index."""
    from indexer.pipeline import kill_at
    from indexer.service import create_embedder_from_settings, open_store, remove_items

    store = open_store(settings)
    result = remove_items(settings, store, create_embedder_from_settings(settings), ids,
                          crash_hook=kill_at(crash_at) if crash_at else None)
    click.echo(f"removed {result['removed']} item(s); index {result['generation']} holds {result['count']}")
    if result["unknown"]:
        click.echo(f"not found: {', '.join(result['unknown'])}", err=True)
        sys.exit(1)


@cli.command("check")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def check_cmd(settings: Settings, as_json: bool) -> None:
    """Check that the index and SQL agree; exit 1 when they do not."""
    from indexer.service import create_embedder_from_settings, open_store
    from indexer.vector_store import create_vector_store

    store = open_store(settings)
    vector_store = create_vector_store(settings)
    try:
        report = vector_store.check(store, create_embedder_from_settings(settings).fingerprint)
    finally:
        vector_store.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(f"index {report.generation}: {report.index_count} vectors; SQL: {report.sql_count} embedded items")
        for p in report.problems:
            click.echo(f"  problem: {p}")
        click.echo("consistent" if report.ok else "INCONSISTENT")
    sys.exit(0 if report.ok else 1)


# ---- search ----------------------------------------------------------------------------------

def parse_filters(values: tuple[str, ...]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--filter must look like column=value, got {raw!r}")
        filters.setdefault(key.strip(), []).append(value.strip())
    return filters


@cli.command("search")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--filter", "filters", multiple=True, help="column=value; repeat for more (same column: OR).")
@click.option("--threshold", type=float, default=None, help="Minimum cosine similarity.")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def search_cmd(settings: Settings, image: str, k: int, filters: tuple[str, ...], threshold: float | None,
               as_json: bool) -> None:
    """Find the catalog items most similar to IMAGE."""
    from indexer.images import decode_image
    from indexer.service import create_embedder_from_settings, create_search_service, open_store

    data = Path(image).read_bytes()
    img = decode_image(data, settings.web.max_image_pixels)
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


# ---- training and evaluation (issue 4) -------------------------------------------------------------------------

def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _embedder_for_eval(settings: Settings, checkpoint: str | None):
    """The configured (served) model, or the same recipe with another checkpoint ("none" = the bare backbone)."""
    import dataclasses

    from indexer.service import create_embedder_from_settings

    if checkpoint is not None:
        value = "" if checkpoint.lower() == "none" else str(Path(checkpoint).resolve())
        settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, checkpoint=value))
    return create_embedder_from_settings(settings)


def _default_catalog(settings: Settings, catalog: str | None, images_root: str | None) -> tuple[str, str | None]:
    path = catalog or str(settings.resolve_path(settings.catalog.default_csv))
    root = images_root or (str(settings.resolve_path(settings.catalog.images_root))
                           if settings.catalog.images_root and not catalog else None)
    return path, root


@cli.group("make-pairs")
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
@click.option("--limit", default=None, type=click.IntRange(1), help="At most this many products (seeded sample).")
@click.option("--label-column", default="article_type", show_default=True)
@click.option("--no-progress", is_flag=True)
@with_settings
def make_pairs_synthetic(settings: Settings, out_dir: str, catalog: str | None, images_root: str | None,
                         splits_file: str | None, split: str, views: int, seed: int, size: int, limit: int | None,
                         label_column: str, no_progress: bool) -> None:
    """SYNTHETIC street photos of catalog products (composited, warped, occluded, re-lit, degraded)."""
    from indexer.make_pairs import make_synthetic_pairs
    from indexer.synthetic import SyntheticConfig

    path, root = _default_catalog(settings, catalog, images_root)
    make_synthetic_pairs(path, out_dir, root, splits_file, split, views, seed, SyntheticConfig(size=size), limit,
                         label_column, progress=not no_progress, echo=click.echo)


def _save_pairs(pair_set, out_dir: str) -> None:
    from indexer.make_pairs import save_pair_set, summarize_pair_set

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
    from indexer.pairs import read_deepfashion_consumer2shop

    _save_pairs(read_deepfashion_consumer2shop(root, partitions), out_dir)


@make_pairs.command("deepfashion-inshop")
@click.argument("root", type=click.Path(file_okay=False, exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--partition", default="test", show_default=True, type=click.Choice(["train", "test"]))
@with_settings
def make_pairs_inshop(settings: Settings, root: str, out_dir: str, partition: str) -> None:
    """DeepFashion In-shop retrieval (Eval/list_eval_partition.txt, Anno/list_bbox_inshop.txt)."""
    from indexer.pairs import read_deepfashion_inshop

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
    from indexer.pairs import read_street2shop

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
    from indexer.pairs import read_pair_set

    _save_pairs(read_pair_set(pairs_csv, gallery_csv, images_root).without_orphans(), out_dir)


@cli.command("make-splits")
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
    from indexer.splits import split_counts
    from indexer.training import load_or_make_splits, read_products

    path, root = _default_catalog(settings, catalog, images_root)
    products, _ = read_products(path, root)
    splits = load_or_make_splits(products, Path(out_file), val_fraction, test_fraction, seed)
    click.echo(f"{out_file}: {split_counts(splits)}")


@cli.command("train", with_appcontext=False)  # needs no web app (nor faiss): runs on bare GPU boxes
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--images-root", type=click.Path(file_okay=False))
@click.option("--out", default="models/lite0-street2shop/model.pt", show_default=True,
              type=click.Path(dir_okay=False), help="Checkpoint file (manifest and splits.csv go beside it).")
@click.option("--work-dir", default=None, type=click.Path(file_okay=False),
              help="View cache + training state (default var/train/<out folder name>).")
@click.option("--splits", "splits_file", default=None, type=click.Path(dir_okay=False),
              help="id,split file to use, created when missing (default: splits.csv beside --out).")
@click.option("--val-fraction", default=0.05, show_default=True, type=click.FloatRange(0, 1))
@click.option("--test-fraction", default=0.15, show_default=True, type=click.FloatRange(0, 1))
@click.option("--split-seed", default=0, show_default=True, type=int)
@click.option("--views", default=4, show_default=True, type=click.IntRange(2, 64),
              help="Views per product: the shop image + views-1 synthetic street photos.")
@click.option("--synthetic-seed", default=0, show_default=True, type=int)
@click.option("--synthetic-size", default=128, show_default=True, type=click.IntRange(32, 2048))
@click.option("--unfreeze-blocks", default=6, show_default=True, type=click.IntRange(0, 18),
              help="Backbone stages trainable in the unfrozen epochs (0 = head only, 18 = the whole backbone; see "
                   "engine/tail.py).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0),
              help="Processes making the views while caching (0 = in the main process).")
@click.option("--epochs-frozen", default=2, show_default=True, type=click.IntRange(0))
@click.option("--epochs-unfrozen", default=2, show_default=True, type=click.IntRange(0))
@click.option("--embed-dim", default=512, show_default=True, type=click.IntRange(1))
@click.option("--hidden", default=0, show_default=True, type=click.IntRange(0), help="0 = linear head.")
@click.option("--mining", default="batch-hard", show_default=True, type=click.Choice(["batch-hard", "semi-hard"]))
@click.option("--margin", default=0.2, show_default=True, type=float)
@click.option("--p", "products_per_batch", default=64, show_default=True, type=click.IntRange(2))
@click.option("--k", "views_per_product", default=3, show_default=True, type=click.IntRange(2))
@click.option("--lr", default=2e-3, show_default=True, type=float)
@click.option("--tail-lr", default=3e-4, show_default=True, type=float)
@click.option("--weight-decay", default=1e-4, show_default=True, type=float)
@click.option("--aux-weight", default=0.5, show_default=True, type=float,
              help="Weight of the master->sub->article_type classification loss (0 = off).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-products", default=None, type=click.IntRange(2), help="Train on a seeded sample.")
@click.option("--input-size", default=None, type=click.IntRange(32), help="Default: model.input_size.")
@click.option("--device", default=None, help="Default: model.device.")
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@click.option("--float32", "full_precision", is_flag=True, help="Store float32 tensors (default float16).")
@click.option("--resume", is_flag=True, help="Continue from the work dir's training state.")
@click.option("--no-progress", is_flag=True)
@with_settings
def train_cmd(settings: Settings, catalog: str | None, images_root: str | None, out: str, work_dir: str | None,
              splits_file: str | None, val_fraction: float, test_fraction: float, split_seed: int, views: int,
              synthetic_seed: int, synthetic_size: int, unfreeze_blocks: int, epochs_frozen: int,
              epochs_unfrozen: int, embed_dim: int, hidden: int, mining: str, margin: float,
              products_per_batch: int, views_per_product: int, lr: float, tail_lr: float, weight_decay: float,
              aux_weight: float, seed: int, max_products: int | None, input_size: int | None, device: str | None,
              threads: int | None, full_precision: bool, resume: bool, no_progress: bool, workers: int) -> None:
    """Fine-tune the embedding: triplet loss (P x K batches) + taxonomy loss on shop + synthetic street views
    of the train products; writes a checkpoint that model.checkpoint can point at."""
    from engine.training import TrainConfig
    from indexer.synthetic import SyntheticConfig
    from indexer.training import TrainOptions, train_from_catalog

    _set_threads(threads)
    path, root = _default_catalog(settings, catalog, images_root)
    out_path = Path(out)
    opts = TrainOptions(
        catalog=Path(path), images_root=Path(root) if root else None, out=out_path,
        work_dir=Path(work_dir) if work_dir else settings.resolve_path("var/train") / out_path.parent.name,
        backbone=settings.model.backbone, weights=settings.model.weights,
        input_size=input_size or settings.model.input_size, device=device or settings.model.device,
        splits=Path(splits_file) if splits_file else None, val_fraction=val_fraction, test_fraction=test_fraction,
        split_seed=split_seed, n_views=views, synthetic_seed=synthetic_seed,
        synthetic=SyntheticConfig(size=synthetic_size), unfreeze_blocks=unfreeze_blocks, half=not full_precision,
        max_products=max_products, workers=workers,
        resume=resume, progress=not no_progress,
        command=" ".join(shlex.quote(a) for a in ["python", "manage.py", *sys.argv[1:]]))
    cfg = TrainConfig(embed_dim=embed_dim, hidden=hidden, mining=mining, margin=margin,
                      products_per_batch=products_per_batch, views_per_product=views_per_product,
                      epochs_frozen=epochs_frozen, epochs_unfrozen=epochs_unfrozen, lr=lr, tail_lr=tail_lr,
                      weight_decay=weight_decay, aux_weight=aux_weight, seed=seed)
    train_from_catalog(opts, cfg, echo=click.echo)


@cli.command("train-classifier", with_appcontext=False)  # needs no web app (nor faiss): runs on bare GPU boxes
@click.option("--checkpoint", default=None, type=click.Path(dir_okay=False),
              help="Checkpoint from `manage.py train` (default: model.checkpoint).")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Output checkpoint (default: --checkpoint).")
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--images-root", type=click.Path(file_okay=False))
@click.option("--splits", "splits_file", default=None, type=click.Path(dir_okay=False),
              help="id,split file (default: splits.csv beside --checkpoint).")
@click.option("--work-dir", default=None, type=click.Path(file_okay=False),
              help="Feature cache (default var/train/<checkpoint folder name>-classifier).")
@click.option("--level", default="article_type", show_default=True,
              type=click.Choice(["master_category", "sub_category", "article_type"]))
@click.option("--views", default=2, show_default=True, type=click.IntRange(1, 16),
              help="Views per product: the shop photo + views-1 SYNTHETIC street photos.")
@click.option("--synthetic-seed", default=0, show_default=True, type=int)
@click.option("--hidden", default=1024, show_default=True, type=click.IntRange(0), help="0 = linear classifier.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=2e-3, show_default=True, type=float)
@click.option("--weight-decay", default=1e-2, show_default=True, type=float)
@click.option("--dropout", default=0.3, show_default=True, type=click.FloatRange(0, 0.95))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--weight", default=None, type=click.FloatRange(0, 1),
              help="Share of the embedding given to the posterior (default: chosen on the val products).")
@click.option("--head-epochs", default=0, show_default=True, type=click.IntRange(0),
              help="First re-fit the checkpoint's projection head on the serving-size features for this many epochs "
                   "(triplet + taxonomy loss, as `train`; 0 = keep the head).")
@click.option("--head-aux-weight", default=1.0, show_default=True, type=float)
@click.option("--head-lr", default=5e-4, show_default=True, type=float)
@click.option("--max-products", default=None, type=click.IntRange(2), help="Fit on a seeded sample.")
@click.option("--input-size", default=None, type=click.IntRange(32), help="Default: model.input_size.")
@click.option("--device", default=None, help="Default: model.device.")
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0),
              help="Processes making the views while caching features (0 = in the main process).")
@click.option("--no-progress", is_flag=True)
@with_settings
def train_classifier_cmd(settings: Settings, checkpoint: str | None, out: str | None, catalog: str | None,
                         images_root: str | None, splits_file: str | None, work_dir: str | None, level: str,
                         views: int, synthetic_seed: int, hidden: int, epochs: int, lr: float, weight_decay: float,
                         dropout: float, seed: int, weight: float | None, head_epochs: int,
                         head_aux_weight: float, head_lr: float, max_products: int | None,
                         input_size: int | None, device: str | None, threads: int | None, workers: int,
                         no_progress: bool) -> None:
    """Fit a taxonomy classifier on a checkpoint's features and mix its posterior into the embedding (the weight
    is chosen on the val products so that street-to-shop recall@20 does not drop); see docs/training.md."""
    from indexer.classifier_train import ClassifierConfig, ClassifierOptions, train_classifier

    _set_threads(threads)
    ckpt = Path(checkpoint) if checkpoint else (settings.resolve_path(settings.model.checkpoint)
                                                if settings.model.checkpoint else None)
    if ckpt is None:
        raise click.UsageError("no checkpoint: pass --checkpoint or set model.checkpoint")
    if not ckpt.is_file():
        raise click.UsageError(f"checkpoint not found: {ckpt}")
    splits = Path(splits_file) if splits_file else ckpt.parent / "splits.csv"
    if not splits.is_file():
        raise click.UsageError(f"splits file not found: {splits} (pass --splits)")
    path, root = _default_catalog(settings, catalog, images_root)
    opts = ClassifierOptions(
        checkpoint=ckpt, out=Path(out) if out else ckpt, catalog=Path(path), images_root=Path(root) if root else None,
        splits=splits, work_dir=Path(work_dir) if work_dir else
        settings.resolve_path("var/train") / f"{ckpt.parent.name}-classifier",
        input_size=input_size or settings.model.input_size, n_views=views, synthetic_seed=synthetic_seed,
        weight=weight, head_epochs=head_epochs, head_aux_weight=head_aux_weight, head_lr=head_lr,
        device=device or settings.model.device, workers=workers, progress=not no_progress, max_products=max_products,
        command=" ".join(shlex.quote(a) for a in ["python", "manage.py", *sys.argv[1:]]))
    cfg = ClassifierConfig(level=level, hidden=hidden, epochs=epochs, lr=lr, weight_decay=weight_decay,
                           dropout=dropout, seed=seed)
    try:
        train_classifier(opts, cfg, echo=click.echo)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@cli.group("evaluate")
def evaluate() -> None:
    """Retrieval quality of the served model: recall@1/5/10/20 and mAP, stored in SQL."""


def _finish_evaluation(settings: Settings, report, as_json: bool, plot: str | None, store_run: bool) -> None:
    import time

    from indexer.evaluation import format_report, record_evaluation, write_plot
    from indexer.service import open_store

    plot_path = plot or str(settings.resolve_path("var/eval") / f"{report.kind}-{time.strftime('%Y%m%d-%H%M%S')}.png")
    write_plot(report, plot_path)
    if store_run:
        record_evaluation(open_store(settings), report)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    format_report(report, click.echo)
    click.echo(f"  plot: {report.plot}" + (f"  stored as evaluation run {report.run_id}" if report.run_id else ""))


_EVAL_OPTIONS = [
    click.option("--checkpoint", default=None,
                 help="Evaluate another checkpoint of the configured backbone ('none' = no checkpoint)."),
    click.option("--plot", default=None, type=click.Path(dir_okay=False),
                 help="recall@k PNG (default var/eval/<kind>-<time>.png)."),
    click.option("--json", "as_json", is_flag=True),
    click.option("--no-store", is_flag=True, help="Do not store the run in SQL."),
    click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads."),
    click.option("--no-progress", is_flag=True),
]


def eval_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_EVAL_OPTIONS):
        func = option(func)
    return func


@evaluate.command("street2shop")
@click.option("--pairs", "pairs_csv", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--gallery", "gallery_csv", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--images-root", type=click.Path(file_okay=False), help="Relative paths root (default: each CSV's).")
@click.option("--label-column", default="label", show_default=True, help="Column for the per-label breakdown.")
@eval_options
@with_settings
def evaluate_street2shop_cmd(settings: Settings, pairs_csv: str, gallery_csv: str, images_root: str | None,
                             label_column: str, checkpoint: str | None, plot: str | None, as_json: bool,
                             no_store: bool, threads: int | None, no_progress: bool) -> None:
    """Each query photo against the gallery; a hit is a gallery image of the query's item."""
    from indexer.evaluation import evaluate_street2shop, read_pairs_manifest
    from indexer.pairs import read_pair_set
    from indexer.vector_index import SearchParams

    _set_threads(threads)
    pair_set = read_pair_set(pairs_csv, gallery_csv, images_root, label_column)
    manifest = read_pairs_manifest(pairs_csv)
    synthetic = bool(manifest.get("synthetic"))
    dataset = f"{'SYNTHETIC ' if synthetic else ''}street2shop pairs={pairs_csv} gallery={gallery_csv}"
    report = evaluate_street2shop(
        _embedder_for_eval(settings, checkpoint), pair_set, settings.index.spec, settings.index.search_device,
        SearchParams(settings.index.nprobe, settings.index.ef_search), batch_size=settings.model.batch_size,
        workers=settings.pipeline.decode_workers, progress=not (no_progress or as_json), synthetic=synthetic,
        dataset=dataset, max_pixels=settings.web.max_image_pixels)
    _finish_evaluation(settings, report, as_json, plot, not no_store)


@evaluate.command("category")
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--label", "label_column", default="article_type", show_default=True)
@click.option("--images-root", type=click.Path(file_okay=False))
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False, exists=True),
              help="id,split file; only products of --split are used.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--limit", default=None, type=click.IntRange(2), help="At most this many items (seeded sample).")
@eval_options
@with_settings
def evaluate_category_cmd(settings: Settings, catalog: str | None, label_column: str, images_root: str | None,
                          splits_file: str | None, split: str, limit: int | None, checkpoint: str | None,
                          plot: str | None, as_json: bool, no_store: bool, threads: int | None,
                          no_progress: bool) -> None:
    """Leave-one-out: each item against all the others; a hit is an item with the same label."""
    from indexer.evaluation import catalog_items, evaluate_category
    from indexer.vector_index import SearchParams

    _set_threads(threads)
    path, root = _default_catalog(settings, catalog, images_root)
    items, dataset = catalog_items(path, root, label_column, splits_file, split, limit)
    report = evaluate_category(
        _embedder_for_eval(settings, checkpoint), items, label_column, settings.index.spec,
        settings.index.search_device, SearchParams(settings.index.nprobe, settings.index.ef_search),
        batch_size=settings.model.batch_size, workers=settings.pipeline.decode_workers,
        progress=not (no_progress or as_json), dataset=dataset, max_pixels=settings.web.max_image_pixels)
    _finish_evaluation(settings, report, as_json, plot, not no_store)


@evaluate.command("runs")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True)
@with_settings
def evaluate_runs_cmd(settings: Settings, limit: int, as_json: bool) -> None:
    """List stored evaluation runs, newest first."""
    from indexer.evaluation import list_evaluations
    from indexer.service import open_store

    runs = list_evaluations(open_store(settings), limit)
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    for r in runs:
        m = r["metrics"]
        click.echo(f"{r['id']:>5}  {r['created_at'][:19]}  {r['kind']:<12} {r['model_fingerprint'][:12]}  "
                   f"recall@1 {m.get('recall@1', float('nan')):.4f}  recall@20 {m.get('recall@20', float('nan')):.4f}"
                   f"  mAP {m.get('mAP', float('nan')):.4f}  n={m.get('n_queries')}  {r['dataset'][:60]}")


# ---- outfits: complete the look (issue 5) ---------------------------------------------------------------------

def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["python", "manage.py", *sys.argv[1:]])


@cli.command("outfit")
@click.argument("image_or_id")
@click.option("--per-slot", default=None, type=click.IntRange(1, 100), help="Items per slot (default outfit.per_slot).")
@click.option("--filter", "filters", multiple=True, help="column=value, applied inside the search; repeat for more.")
@click.option("--crop", default=None, help="x0,y0,x1,y1 fractions: use only this box of the photo.")
@click.option("--slot", default=None, help="The photo's slot (default: the slot classifier decides).")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def outfit_cmd(settings: Settings, image_or_id: str, per_slot: int | None, filters: tuple[str, ...],
               crop: str | None, slot: str | None, as_json: bool) -> None:
    """Complete the look around a photo (IMAGE file) or a catalog item (its catalog ID)."""
    from indexer.images import decode_image
    from indexer.outfit_service import create_outfit_service
    from indexer.service import create_embedder_from_settings, create_search_service, open_store

    store = open_store(settings)
    image, item, box = None, None, None
    if Path(image_or_id).is_file():
        box = tuple(float(v) for v in crop.split(",")) if crop else None
        if box is not None and len(box) != 4:
            raise ValueError(f"--crop must be four numbers x0,y0,x1,y1, got {crop!r}")
        image = decode_image(Path(image_or_id).read_bytes(), settings.web.max_image_pixels)
    else:
        item = store.get_item_by_external_id(image_or_id)
        if item is None:
            raise ValueError(f"{image_or_id!r} is neither an image file nor a catalog id")
    service = create_outfit_service(settings, create_search_service(settings, store,
                                                                     create_embedder_from_settings(settings)))
    if image is not None:
        result = service.for_image(image, box, slot, parse_filters(filters) or None, per_slot)  # type: ignore[arg-type]
    else:
        result = service.for_item(item["id"], parse_filters(filters) or None, per_slot)  # type: ignore[index]
        if result is None:
            raise ValueError(f"item {image_or_id} has no embedding from the current model yet: run `manage.py index`")
    if as_json:
        body = {"query": image_or_id, **result.as_dict(),
                "model": {"proxy": service.proxy_trained, "trained_on": service.meta.get("trained_on", "")}}
        click.echo(json.dumps(body, indent=2))
        return
    source = f"{result.slot_source}" + (f", {result.slot_confidence:.2f}" if result.slot_confidence is not None else "")
    click.echo(f"query slot: {result.query_slot or '-'} ({source})"
               + ("   [model trained on PROXY outfits]" if service.proxy_trained else ""))
    if result.note:
        click.echo(f"note: {result.note}")
    for s in result.slots:
        click.echo(f"{s.slot} ({s.candidates} candidates)")
        for rank, h in enumerate(s.hits, 1):
            click.echo(f"  {rank}. {h.score:.3f}  {h.item['external_id']:>10}  {h.item['title']}  "
                       f"[{h.item.get('article_type') or '-'}, {h.item.get('base_colour') or '-'}]")
        if not s.hits:
            click.echo("  (no item passes the filters)")


@cli.command("make-outfits")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False, exists=True),
              help="id,split file (default: indexer.splits defaults, as train-outfits).")
@click.option("--split", "split_names", multiple=True, default=("test",), show_default=True,
              type=click.Choice(["train", "val", "test"]))
@click.option("--outfits", "n_outfits", default=3000, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@with_settings
def make_outfits_cmd(settings: Settings, out_dir: str, catalog: str | None, splits_file: str | None,
                     split_names: tuple[str, ...], n_outfits: int, seed: int) -> None:
    """Write PROXY outfits (from catalog taxonomy) + questions in the Polyvore Outfits layout."""
    from indexer.outfit_service import make_proxy_outfit_files

    written = make_proxy_outfit_files(settings, out_dir, split_names, catalog, splits_file, n_outfits, seed)
    for split, paths in written.items():
        click.echo(f"PROXY {split}: {paths['outfits']}  questions: {paths['compatibility']} {paths['fitb']}")


@cli.command("train-outfits")
@click.option("--out", default=None,
              help="Checkpoint file, or a folder for <fingerprint>.pt (default: outfit.checkpoint).")
@click.option("--splits", "splits_file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="id,split file (default: indexer.splits defaults, seeded by product id).")
@click.option("--train-outfits", default=30000, show_default=True, type=click.IntRange(1))
@click.option("--val-outfits", default=1000, show_default=True, type=click.IntRange(0))
@click.option("--test-outfits", default=3000, show_default=True, type=click.IntRange(0))
@click.option("--proxy-seed", default=0, show_default=True, type=int)
@click.option("--proxy-dir", default=None,
              help="Also write the PROXY datasets here, Polyvore layout (default <outfit.cache_dir>/proxy; '' = no).")
@click.option("--colour-bins", default=8, show_default=True, type=click.IntRange(0, 16),
              help="Colour descriptor bins per channel appended to the image vectors (0 = image vectors only).")
@click.option("--epochs", default=None, type=click.IntRange(1))
@click.option("--embed-dim", default=None, type=click.IntRange(1))
@click.option("--hidden", default=None, type=click.IntRange(0))
@click.option("--dropout", default=None, type=click.FloatRange(0, 0.95))
@click.option("--margin", default=None, type=float)
@click.option("--lr", default=None, type=float)
@click.option("--batch-size", default=None, type=click.IntRange(2))
@click.option("--slot-epochs", default=None, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="torch CPU threads (small matrices: more threads pay off only on idle cores; measured 5x slower "
                   "with 2 threads on a busy 2-core machine).")
@click.option("--if-stale", is_flag=True,
              help="Do nothing when the checkpoint already fits the configured model and slots (make run).")
@with_settings
def train_outfits_cmd(settings: Settings, out: str | None, splits_file: str | None, train_outfits: int,
                      val_outfits: int, test_outfits: int, proxy_seed: int, proxy_dir: str | None, colour_bins: int,
                      slot_epochs: int | None, seed: int, threads: int, if_stale: bool, **hyper: Any) -> None:
    """Train the outfit model (type-aware compatibility + slot classifier) on PROXY outfits of the indexed
    catalog's train products; report held-out test numbers; write the checkpoint outfit.checkpoint points at.
    Hyper-parameters left out take engine.outfit_training.CompatConfig's defaults."""
    import dataclasses

    from engine.outfit_training import CompatConfig, SlotConfig
    from indexer.outfit_service import outfit_checkpoint, outfit_model_status
    from indexer.outfit_service import train_outfits as run_training
    from indexer.outfit_train import OutfitTrainOptions
    from indexer.service import create_embedder_from_settings, open_store

    _set_threads(threads)
    embedder = create_embedder_from_settings(settings)
    if if_stale:
        current, why = outfit_model_status(settings, embedder, out)
        click.echo(("outfit model is current: " if current else "retraining the outfit model: ") + why)
        if current:
            return
    opts = OutfitTrainOptions(
        out=outfit_checkpoint(settings, embedder.fingerprint, out),
        splits_file=Path(splits_file) if splits_file else None,
        train_outfits=train_outfits, val_outfits=val_outfits, test_outfits=test_outfits, proxy_seed=proxy_seed,
        proxy_dir=(settings.resolve_path(settings.outfit.cache_dir) / "proxy" if proxy_dir is None
                   else settings.resolve_path(proxy_dir) if proxy_dir else None),
        colour_bins=colour_bins, command=_command_line())
    compat = CompatConfig(**{k: v for k, v in hyper.items() if v is not None}, seed=seed)
    slot = dataclasses.replace(SlotConfig(), seed=seed, **({"epochs": slot_epochs} if slot_epochs else {}))
    run_training(settings, open_store(settings), embedder, opts, compat, slot, echo=click.echo)


@evaluate.command("outfits")
@click.option("--outfits", "outfits_file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Outfits JSON (Polyvore Outfits format, e.g. disjoint/test.json or make-outfits' test.json).")
@click.option("--questions", "question_files", required=True, multiple=True,
              type=click.Path(dir_okay=False, exists=True),
              help="compatibility_*.txt and/or fill_in_blank_*.json; repeat for both.")
@click.option("--items", "items_file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="polyvore_item_metadata.json (default: beside the outfits file or one folder up).")
@click.option("--images-root", type=click.Path(file_okay=False),
              help="Folder of <item_id>.jpg for items that are not catalog items (default: images/ beside the "
                   "item metadata).")
@click.option("--checkpoint", default=None, help="Outfit model (default: outfit.checkpoint).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@with_settings
def evaluate_outfits_cmd(settings: Settings, outfits_file: str, question_files: tuple[str, ...],
                         items_file: str | None, images_root: str | None, checkpoint: str | None, as_json: bool,
                         threads: int | None) -> None:
    """Compatibility AUC and fill-in-the-blank accuracy (Polyvore Outfits protocol): the outfit model vs the
    visual-similarity baseline on the same questions (and, for PROXY outfits, the proxy rules' ceiling)."""
    from indexer.outfit_eval import format_evaluation
    from indexer.outfit_service import evaluate_outfit_files
    from indexer.service import create_embedder_from_settings, open_store

    _set_threads(threads)
    ev = evaluate_outfit_files(settings, open_store(settings), create_embedder_from_settings(settings), outfits_file,
                               question_files, items_file, images_root, checkpoint)
    if as_json:
        click.echo(json.dumps(ev.as_dict(), indent=2))
    else:
        format_evaluation(ev, click.echo)


# ---- sweep: index settings, recall vs queries/s (issue 9) -------------------------------------

def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


@cli.command("sweep")
@click.option("--index-specs", default="", help="FAISS specs separated by ';' or spaces "
              "(e.g. 'Flat;IVF256,Flat;HNSW32'). Default: Flat, IVF at 1/2/4 x sqrt(n) lists, HNSW32.")
@click.option("--nprobe", "nprobes", default="1,2,4,8,16,32,64", show_default=True, help="IVF nprobe values.")
@click.option("--ef-search", "ef_searches", default="16,32,64,128,256", show_default=True,
              help="HNSW efSearch values.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 1000), help="recall@k vs exact.")
@click.option("--queries", "n_queries", default=1000, show_default=True, type=click.IntRange(1),
              help="Held-out catalog vectors used as queries (at most a tenth of the catalog).")
@click.option("--budget-s", default=2.0, show_default=True, type=click.FloatRange(0.0),
              help="Seconds of single-query timing per setting.")
@click.option("--min-recall", default=0.99, show_default=True, type=click.FloatRange(0, 1),
              help="Recall the recommended setting must reach (the fastest such Pareto point).")
@click.option("--apply", "apply_spec", default=None, help="'recommended' (the recommended setting: index.spec and "
              "its nprobe/ef_search) or a SPEC (index.spec only): write it into the config file and rebuild the index "
              "generation with it.")
@click.option("--no-store", is_flag=True, help="Do not store the results in SQL.")
@click.option("--benchmarks", is_flag=True, help="Write the table into BENCHMARKS.md (section 'sweep').")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def sweep_cmd(settings: Settings, index_specs: str, nprobes: str, ef_searches: str, k: int, n_queries: int,
              budget_s: float, min_recall: float, apply_spec: str | None, no_store: bool, benchmarks: bool,
              as_json: bool) -> None:
    """Measure recall@k vs exact search, queries/s and memory of index settings on the current catalog embeddings."""
    import re

    from indexer.service import open_store
    from indexer.sweep import apply_spec as apply_index_spec
    from indexer.sweep import record_sweep, resolve_apply, sweep_catalog, sweep_report

    specs = [s for s in re.split(r"[;\s]+", index_specs) if s]
    problems: list[str] = []
    points, manifest = sweep_catalog(settings, specs, _int_list(nprobes), _int_list(ef_searches), k, n_queries,
                                     budget_s, problems)
    sweep_id = None
    if not no_store:
        sweep_id = record_sweep(open_store(settings), points, manifest.fingerprint, manifest.name,
                                {"command": _command_line()})
    applied = resolve_apply(points, apply_spec, settings, min_recall) if apply_spec else None
    report = sweep_report(points, settings, min_recall, problems, sweep_id, manifest.name, applied)
    if benchmarks:
        from bench.report import update_section

        update_section("sweep", "Index sweep on the catalog embeddings: recall vs queries/s (manage.py sweep)",
                       report["markdown"])
    click.echo(json.dumps(report["json"], indent=2) if as_json else report["markdown"])
    if applied is not None:
        gen, count = apply_index_spec(settings, applied)
        click.echo(f"{applied.label} written to [index] of {settings.source}; generation {gen} built "
                   f"({count} vectors)", err=as_json)


# ---- serve -------------------------------------------------------------------------------------

@cli.command("run")
@click.option("--host", default=None, help="Default: web.host from the config.")
@click.option("--port", default=None, type=int, help="Default: web.port from the config.")
@click.option("--debug", is_flag=True)
@with_settings
def run_cmd(settings: Settings, host: str | None, port: int | None, debug: bool) -> None:
    """Serve the app with Flask's development server (make run uses waitress instead)."""
    from web import create_app

    app = create_app(settings)
    app.run(host=host or settings.web.host, port=port or settings.web.port, debug=debug, use_reloader=False)


@cli.command("serve")
@click.option("--host", default=None)
@click.option("--port", default=None, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@with_settings
def serve_cmd(settings: Settings, host: str | None, port: int | None, threads: int) -> None:
    """Serve the app with the production WSGI server (waitress); model and index load before the first request."""
    from web.server import serve

    serve(settings, host, port, threads)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("indexer", "engine", "web"):
        logging.getLogger(name).setLevel(logging.INFO)
    cli.main(prog_name="manage.py")


if __name__ == "__main__":
    main()
