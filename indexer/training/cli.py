"""`manage.py train | train-classifier`: the training jobs. They need neither the web app nor faiss, so they run on
bare GPU boxes (scripts/gpu-train.sh)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from indexer.cli_support import (
    default_catalog,
    fail,
    served_splits,
    set_threads,
    with_settings,
)
from indexer.settings import Settings


@click.command("train")  # needs no web app (nor faiss): runs on bare GPU boxes
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
                   "engine/models/backbone_split.py).")
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
    from engine.train.trainer import TrainConfig
    from indexer.datasets.synthetic import SyntheticConfig
    from indexer.training.embedding import TrainOptions, train_from_catalog

    set_threads(threads)
    path, root = default_catalog(settings, catalog, images_root)
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


@click.command("train-classifier")  # needs no web app (nor faiss): runs on bare GPU boxes
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
    from indexer.training.classifier import ClassifierConfig, ClassifierOptions, train_classifier

    set_threads(threads)
    ckpt = Path(checkpoint) if checkpoint else (settings.resolve_path(settings.model.checkpoint)
                                                if settings.model.checkpoint else None)
    if ckpt is None:
        raise click.UsageError("no checkpoint: pass --checkpoint or set model.checkpoint")
    if not ckpt.is_file():
        raise click.UsageError(f"checkpoint not found: {ckpt}")
    splits = Path(splits_file) if splits_file else ckpt.parent / "splits.csv"
    if not splits.is_file():
        raise click.UsageError(f"splits file not found: {splits} (pass --splits)")
    path, root = default_catalog(settings, catalog, images_root)
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


@click.command("train-text")  # needs no web app (nor faiss)
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--images-root", type=click.Path(file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Checkpoint file (default: <text.checkpoint>/<image model fingerprint>.pt).")
@click.option("--work-dir", default=None, type=click.Path(file_okay=False),
              help="Served-vector cache + resumable state (default: text.cache_dir).")
@click.option("--splits", "splits_file", default=None, type=click.Path(dir_okay=False),
              help="id,split file (default: splits.csv beside model.checkpoint, so test products stay unseen).")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=512, show_default=True, type=click.IntRange(2))
@click.option("--lr", default=2e-3, show_default=True, type=float)
@click.option("--width", default=256, show_default=True, type=click.IntRange(8))
@click.option("--layers", default=3, show_default=True, type=click.IntRange(1))
@click.option("--heads", default=4, show_default=True, type=click.IntRange(1))
@click.option("--context-length", default=32, show_default=True, type=click.IntRange(4, 77))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default=None, help="Default: model.device (auto: cuda when a GPU is lent).")
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@click.option("--resume", is_flag=True, help="Continue from the work dir's training state.")
@click.option("--no-progress", is_flag=True)
@with_settings
def train_text_cmd(settings: Settings, catalog: str | None, images_root: str | None, out: str | None,
                   work_dir: str | None, splits_file: str | None, epochs: int, batch_size: int, lr: float,
                   width: int, layers: int, heads: int, context_length: int, seed: int, device: str | None,
                   threads: int | None, resume: bool, no_progress: bool) -> None:
    """Train the text tower (LiT: the served image model stays locked) so that words land in the served embedding
    space and the existing index answers text queries; see docs/text-search.md."""
    from engine.models.embedder import resolve_device
    from engine.models.text_tower import text_checkpoint_path
    from engine.train.text import TextTrainConfig
    from indexer.embedders import create_embedder_from_settings
    from indexer.training.text import TextTrainOptions, train_text_from_catalog

    set_threads(threads)
    fingerprint = create_embedder_from_settings(settings).fingerprint
    path, root = default_catalog(settings, catalog, images_root)
    splits = served_splits(settings, splits_file, required=False)
    opts = TextTrainOptions(
        catalog=Path(path), images_root=Path(root) if root else None,
        out=Path(out) if out else text_checkpoint_path(settings.resolve_path(settings.text.checkpoint),
                                                               fingerprint),
        work_dir=Path(work_dir) if work_dir else settings.resolve_path(settings.text.cache_dir), splits=splits,
        image_fingerprint=fingerprint, tower={"width": width, "layers": layers, "heads": heads,
                                              "context_length": context_length},
        device=str(resolve_device(device or settings.model.device)), resume=resume, progress=not no_progress,
        command=" ".join(shlex.quote(a) for a in ["python", "manage.py", *sys.argv[1:]]))
    cfg = TextTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    try:
        train_text_from_catalog(settings, opts, cfg, echo=click.echo)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("train-colour-head")  # needs no web app (nor faiss)
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--images-root", type=click.Path(file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Checkpoint file (default: <text.colour_head>/<image model fingerprint>.pt).")
@click.option("--work-dir", default=None, type=click.Path(file_okay=False),
              help="Served-vector cache, shared with train-text (default: text.cache_dir).")
@click.option("--splits", "splits_file", default=None, type=click.Path(dir_okay=False),
              help="id,split file (default: splits.csv beside model.checkpoint, so test products stay unseen).")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(1))
@click.option("--hidden", default=1024, show_default=True, type=click.IntRange(8))
@click.option("--layers", default=2, show_default=True, type=click.IntRange(0))
@click.option("--min-count", default=5, show_default=True, type=click.IntRange(1),
              help="Train products a base colour needs to be a class.")
@click.option("--colour-bins", default=8, show_default=True, type=click.IntRange(0, 16),
              help="Also read the pictures' colour descriptors with this many bins per channel (the outfit model's "
                   "are 8, so the server already holds them); 0 = served vectors only.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@click.option("--no-progress", is_flag=True)
@with_settings
def train_colour_head_cmd(settings: Settings, catalog: str | None, images_root: str | None, out: str | None,
                          work_dir: str | None, splits_file: str | None, epochs: int, hidden: int, layers: int,
                          min_count: int, colour_bins: int, seed: int, threads: int | None, no_progress: bool) -> None:
    """Train the colour head: base colour read from each item's served vector, so word queries that name a colour
    ("navy blue shirt", "this, but in red") rank that colour first; see docs/text-search.md."""
    from engine.models.colour_head import colour_head_path
    from engine.train.colour_head import ColourTrainConfig
    from indexer.embedders import create_embedder_from_settings
    from indexer.training.colour_head import ColourHeadOptions, train_colour_head_from_catalog

    set_threads(threads)
    if not out and not settings.text.colour_head:
        fail("text.colour_head is empty: set it to a folder (models/colour) or pass --out")
    fingerprint = create_embedder_from_settings(settings).fingerprint
    path, root = default_catalog(settings, catalog, images_root)
    opts = ColourHeadOptions(
        catalog=Path(path), images_root=Path(root) if root else None,
        out=Path(out) if out else colour_head_path(settings.resolve_path(settings.text.colour_head), fingerprint),
        work_dir=Path(work_dir) if work_dir else settings.resolve_path(settings.text.cache_dir),
        splits=served_splits(settings, splits_file, required=False), image_fingerprint=fingerprint,
        min_count=min_count, progress=not no_progress,
        command=" ".join(shlex.quote(a) for a in ["python", "manage.py", *sys.argv[1:]]))
    cfg = ColourTrainConfig(hidden=hidden, layers=layers, epochs=epochs, colour_bins=colour_bins, seed=seed)
    try:
        train_colour_head_from_catalog(settings, opts, cfg, echo=click.echo)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("train-detector")  # needs no web app (nor faiss)
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--images-root", type=click.Path(file_okay=False))
@click.option("--out", default=None, type=click.Path(),
              help="Folder (or .pt file) of the detector (default: web.detector_checkpoint); the file is named after "
                   "the served model's fingerprint.")
@click.option("--work-dir", default="var/train/detector", show_default=True, type=click.Path(file_okay=False),
              help="Cached trunk features of the scenes + resumable state.")
@click.option("--splits", "splits_file", default=None, type=click.Path(dir_okay=False),
              help="id,split file (default: splits.csv beside model.checkpoint, so test products stay unseen).")
@click.option("--train-scenes", default=3000, show_default=True, type=click.IntRange(1))
@click.option("--val-scenes", default=300, show_default=True, type=click.IntRange(1))
@click.option("--input-size", default=256, show_default=True, type=click.IntRange(64),
              help="Side of the letterboxed square the trunk sees (a multiple of 32).")
@click.option("--width", default=96, show_default=True, type=click.IntRange(8), help="Channels of the head.")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=2e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--scene-seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@click.option("--resume", is_flag=True, help="Continue from the work dir's training state.")
@click.option("--no-progress", is_flag=True)
@with_settings
def train_detector_cmd(settings: Settings, catalog: str | None, images_root: str | None, out: str | None,
                       work_dir: str, splits_file: str | None, train_scenes: int, val_scenes: int, input_size: int,
                       width: int, epochs: int, batch_size: int, lr: float, seed: int, scene_seed: int,
                       threads: int | None, resume: bool, no_progress: bool) -> None:
    """Train the built-in garment detector (web.detector = "builtin") on SYNTHETIC scenes of train products, over the
    served model's frozen trunk; see docs/training.md."""
    from engine.train.detector import HeadTrainConfig
    from indexer.embedders import create_embedder_from_settings
    from indexer.training.detector import DetectorTrainOptions, train_detector

    if input_size % 32:
        fail(f"--input-size must be a multiple of 32, got {input_size}")
    set_threads(threads)
    embedder = create_embedder_from_settings(settings)
    path, root = default_catalog(settings, catalog, images_root)
    splits = served_splits(settings, splits_file)
    opts = DetectorTrainOptions(
        catalog=Path(path), images_root=Path(root) if root else None, splits=splits,
        out=Path(out) if out else settings.resolve_path(settings.web.detector_checkpoint),
        work_dir=settings.resolve_path(work_dir), train_scenes=train_scenes, val_scenes=val_scenes,
        input_size=input_size, width=width, scene_seed=scene_seed, resume=resume, progress=not no_progress,
        command=" ".join(shlex.quote(a) for a in ["python", "manage.py", *sys.argv[1:]]))
    cfg = HeadTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    try:
        train_detector(settings, embedder, opts, cfg, echo=click.echo)
    except ValueError as exc:
        fail(str(exc))


@click.command("train-street-encoder")  # needs no web app (nor faiss)
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--images-root", type=click.Path(file_okay=False))
@click.option("--out", default=None, type=click.Path(),
              help="Folder (or .pt file) of the street encoder (default: model.street_encoder); the file is named "
                   "after the served model's fingerprint.")
@click.option("--work-dir", default="var/train/street-encoder", show_default=True, type=click.Path(file_okay=False),
              help="Cached trunk activations of the crops + resumable state.")
@click.option("--splits", "splits_file", default=None, type=click.Path(dir_okay=False),
              help="id,split file (default: splits.csv beside model.checkpoint, so test products stay unseen).")
@click.option("--products", default=12000, show_default=True, type=click.IntRange(2),
              help="Train-split products used (a seeded sample).")
@click.option("--val-products", default=1000, show_default=True, type=click.IntRange(2))
@click.option("--views", default=4, show_default=True, type=click.IntRange(2, 64),
              help="Views per product: the shop photo + views-1 SYNTHETIC street crops.")
@click.option("--unfreeze-blocks", default=6, show_default=True, type=click.IntRange(1, 17),
              help="Backbone stages the street encoder trains (see engine/models/backbone_split.py).")
@click.option("--epochs", default=4, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(2))
@click.option("--lr", default=1e-4, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--synthetic-seed", default=11, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0),
              help="Processes making the SYNTHETIC crops while the trunk runs.")
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@click.option("--resume", is_flag=True, help="Continue from the work dir's training state.")
@click.option("--no-progress", is_flag=True)
@with_settings
def train_street_encoder_cmd(settings: Settings, catalog: str | None, images_root: str | None, out: str | None,
                             work_dir: str, splits_file: str | None, products: int, val_products: int, views: int,
                             unfreeze_blocks: int, epochs: int, batch_size: int, lr: float, seed: int,
                             synthetic_seed: int, workers: int, threads: int | None, resume: bool,
                             no_progress: bool) -> None:
    """Fine-tune the street encoder: a query-side copy of the served model whose crops of SYNTHETIC street photos land
    on their product's catalog vector (the index is not touched); see docs/training.md."""
    from engine.train.street_encoder import StreetTrainConfig
    from indexer.embedders import create_embedder_from_settings
    from indexer.training.street_encoder import StreetEncoderOptions, train_street_encoder_job

    set_threads(threads)
    embedder = create_embedder_from_settings(settings)
    path, root = default_catalog(settings, catalog, images_root)
    splits = served_splits(settings, splits_file)
    configured = out or settings.model.street_encoder or "models/street"
    opts = StreetEncoderOptions(
        catalog=Path(path), images_root=Path(root) if root else None, splits=splits,
        out=settings.resolve_path(configured), work_dir=settings.resolve_path(work_dir), products=products,
        val_products=val_products, views=views, unfreeze_blocks=unfreeze_blocks, synthetic_seed=synthetic_seed,
        workers=workers, resume=resume, progress=not no_progress,
        command=" ".join(shlex.quote(a) for a in ["python", "manage.py", *sys.argv[1:]]))
    cfg = StreetTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    try:
        train_street_encoder_job(settings, embedder, opts, cfg, echo=click.echo)
    except ValueError as exc:
        fail(str(exc))
