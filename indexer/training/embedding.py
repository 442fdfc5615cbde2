"""`manage.py train`: catalog -> product splits -> cached trunk activations of shop + synthetic street views ->
``engine.train.trainer.Trainer`` -> a fine-tuned checkpoint (head + unfrozen tail only) with its manifest.

The expensive part on a CPU is running the frozen trunk over every view; it is done once and cached under the
work dir (var/train/...), resumably (a kill loses at most one chunk). Training then runs on the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from engine import Embedder, create_embedder, save_checkpoint
from engine.files import file_sha256, write_atomically
from engine.models.backbone_split import BackboneSplit, split_backbone
from engine.train.trainer import TAXONOMY_LEVELS, EpochReport, TrainConfig, Trainer, ViewSet
from indexer.catalog.source import CatalogRow, catalog_digest, iter_catalog, open_catalog
from indexer.catalog.splits import assign_splits, read_splits, split_counts, write_splits
from indexer.datasets.synthetic import StreetPhotoSynthesizer, SyntheticConfig

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Product:
    """A catalog product as training sees it: id, image file, taxonomy values (None = unknown)."""

    id: str
    image: Path
    taxonomy: tuple[str | None, ...]


def read_products(catalog_csv: str | os.PathLike, images_root: str | os.PathLike | None = None,
                  levels: Sequence[str] = TAXONOMY_LEVELS) -> tuple[list[Product], list[str]]:
    """Products of a catalog CSV (the same reader as ``manage.py index``; bad rows are skipped and returned).

    Returns:
        (products in file order, problems as text).
    """
    source = open_catalog(catalog_csv, images_root)
    products, problems = [], []
    for row in iter_catalog(source):
        if isinstance(row, CatalogRow):
            tax = tuple((row.taxonomy.get(lv) or row.attributes.get(lv) or None) for lv in levels)
            products.append(Product(row.external_id, row.image_path, tax))
        else:
            problems.append(str(row))
    return products, problems


def load_or_make_splits(products: Sequence[Product], path: Path, val_fraction: float, test_fraction: float,
                        seed: int) -> dict[str, str]:
    """Read the splits file at ``path``, or assign splits (seeded, by product id) and write it there.

    Products missing from an existing file are assigned with the same rule and the file is rewritten, so a grown
    catalog keeps every old product in its split.
    """
    ids = [p.id for p in products]
    if path.is_file():
        splits = read_splits(path)
        missing = [i for i in ids if i not in splits]
        if not missing:
            return splits
        splits.update(assign_splits(missing, val_fraction, test_fraction, seed))
    else:
        splits = assign_splits(ids, val_fraction, test_fraction, seed)
    write_splits(path, splits)
    return splits


@dataclass
class TaxonomyVocab:
    """Class names per taxonomy level, learned from the training products (sorted, so the order is stable)."""

    levels: tuple[str, ...]
    classes: list[list[str]]

    @classmethod
    def fit(cls, products: Sequence[Product], levels: Sequence[str]) -> TaxonomyVocab:
        """Collect every value seen at each level."""
        classes = [sorted({p.taxonomy[j] for p in products if p.taxonomy[j]}) for j in range(len(levels))]
        return cls(tuple(levels), classes)

    def encode(self, products: Sequence[Product]) -> np.ndarray:
        """(N, L) int64 class indices; -1 for unknown values and values never seen in training."""
        index = [{c: i for i, c in enumerate(cl)} for cl in self.classes]
        out = np.full((len(products), len(self.levels)), -1, np.int64)
        for r, p in enumerate(products):
            for j, value in enumerate(p.taxonomy):
                out[r, j] = index[j].get(value, -1) if value else -1
        return out

    def sizes(self) -> list[int]:
        """Classes per level (at least 1, so a level with no labels still builds a classifier)."""
        return [max(1, len(c)) for c in self.classes]


def image_loader(products: Sequence[Product]) -> Callable[[str], Image.Image]:
    paths = {p.id: p.image for p in products}

    def load(pid: str) -> Image.Image:
        with Image.open(paths[pid]) as img:
            return img.convert("RGB")

    return load


def view_images(product: Product, synth: StreetPhotoSynthesizer, n_views: int) -> list[Image.Image]:
    """View 0 = the shop image itself; views 1..n_views-1 = synthetic street photos of the product."""
    shop = synth.load_image(product.id)
    return [shop] + [synth.view(product.id, v, shop) for v in range(1, n_views)]


def cache_key(embedder: Embedder, unfreeze_blocks: int, synth: StreetPhotoSynthesizer, n_views: int,
              products: Sequence[Product], catalog_sha: str) -> str:
    """Identifies cached activations: base model, cut point, input size, views, generator, products, catalog."""
    blob = json.dumps({"format": CACHE_FORMAT, "model": embedder.fingerprint, "unfreeze_blocks": unfreeze_blocks,
                       "input_size": embedder.input_size, "n_views": n_views, "synthetic": synth.describe(),
                       "catalog": catalog_sha, "products": hashlib.sha256("\n".join(p.id for p in products).encode())
                       .hexdigest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class _ViewChunks(torch.utils.data.Dataset):
    """Chunks of products -> their preprocessed views, for a DataLoader (worker processes inherit it by fork)."""

    def __init__(self, products: Sequence[Product], prepare: Callable[[Product], torch.Tensor], chunk: int) -> None:
        self.products, self.prepare, self.chunk = products, prepare, chunk

    def __len__(self) -> int:
        return (len(self.products) + self.chunk - 1) // self.chunk

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.cat([self.prepare(p) for p in self.products[i * self.chunk:(i + 1) * self.chunk]])


def cache_views(products: Sequence[Product], embedder: Embedder, split: BackboneSplit,
                synth: StreetPhotoSynthesizer, n_views: int, path: Path, chunk: int = 32, workers: int = 2,
                progress: bool = True, label: str = "") -> np.ndarray:
    """Trunk activations of every view of every product, in a float16 memmap at ``path`` (resumable).

    A small JSON beside the array (``<path>.done``) records how many products are finished; it is written after
    each chunk is flushed, so a killed run resumes at the first unfinished chunk and never trusts unflushed rows.
    ``workers`` processes make the views (the synthetic street photos are the costly part on CPUs) while the main
    process runs the trunk; 0 makes them in the main process. The views are the same whatever the number.

    Returns:
        The (N, n_views, *tap shape) float16 memmap, opened read-only. ``<path>.done`` also records the seconds
        spent caching (``cache_seconds`` reads them back).
    """
    done_file = Path(f"{path}.done")
    n = len(products)
    progress_rec = json.loads(done_file.read_text()) if done_file.is_file() and path.is_file() else {}
    done = int(progress_rec.get("done", 0))
    seconds = float(progress_rec.get("seconds", 0.0))  # caching time so far, over every (resumed) run
    trunk = split.trunk
    device = embedder.device

    def prepare(p: Product) -> torch.Tensor:
        return embedder.preprocess_batch(view_images(p, synth, n_views))

    # channels_last runs the depthwise-heavy convolutions about 1.5x faster on CPUs (same results up to rounding).
    embedder.module.to(memory_format=torch.channels_last)

    def run(batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            x = batch.to(device).contiguous(memory_format=torch.channels_last)
            ctx = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
            with ctx:
                return trunk(x).float().cpu().numpy().astype(np.float16)

    if done < n:
        sample = run(prepare(products[0])[:1])
        shape = (n, n_views, *sample.shape[1:])
        mode = "r+" if path.is_file() and done > 0 else "w+"
        arr = np.lib.format.open_memmap(path, mode=mode, dtype=np.float16, shape=shape if mode == "w+" else None)
        if arr.shape != shape:
            raise ValueError(f"cache {path} has shape {arr.shape}, expected {shape}; delete it to rebuild")
        bar = tqdm(total=n, initial=done, unit="product", desc=f"caching {label}".strip(), disable=not progress,
                   mininterval=5.0)
        workers = max(0, workers)
        loader = torch.utils.data.DataLoader(
            _ViewChunks(products[done:], prepare, chunk), batch_size=None, num_workers=workers,
            prefetch_factor=4 if workers else None, multiprocessing_context="fork" if workers else None)
        start = done
        t_chunk = time.perf_counter()
        for tensors in loader:
            stop = min(n, start + chunk)
            arr[start:stop] = run(tensors).reshape(stop - start, n_views, *shape[2:])
            arr.flush()
            now = time.perf_counter()
            seconds += now - t_chunk
            t_chunk = now
            data = json.dumps({"done": stop, "seconds": round(seconds, 1)}).encode()
            write_atomically(done_file, lambda f, d=data: f.write(d))
            bar.update(stop - start)
            start = stop
        bar.close()
        del arr
    return np.load(path, mmap_mode="r")


def cache_seconds(path: Path) -> float:
    """Seconds spent building the cache at ``path`` (0 when not recorded)."""
    try:
        return float(json.loads(Path(f"{path}.done").read_text()).get("seconds", 0.0))
    except (OSError, ValueError):
        return 0.0


@dataclass
class TrainOptions:
    """Everything ``manage.py train`` decides besides the hyper-parameters in ``TrainConfig``.

    Attributes:
        catalog: Catalog CSV.
        images_root: Folder image paths are relative to (None = the CSV's folder).
        out: Output checkpoint file (its manifest goes beside it, the splits file too).
        work_dir: Cache and training state folder (not committed).
        backbone / weights / input_size / device: The base model recipe.
        splits: Splits file to read (or create); default ``<out folder>/splits.csv``.
        val_fraction / test_fraction / split_seed: Used when the splits file is created.
        n_views: Views per product (1 shop + n_views - 1 synthetic).
        synthetic_seed: Seed of the synthetic street photos.
        synthetic: Difficulty of the synthetic street photos.
        unfreeze_blocks: Cut point of the backbone (see ``engine.models.backbone_split``).
        half: Store the checkpoint's tensors as float16.
        max_products: Use at most this many training products (seeded sample; for small runs and tests).
        batch_chunk: Products per trunk forward pass while caching.
        workers: Processes making views while the trunk runs (0 = the main process).
        resume: Continue from the work dir's training state.
        progress: Show progress bars.
        command: The command line, recorded in the manifest.
    """

    catalog: Path
    out: Path
    work_dir: Path
    images_root: Path | None = None
    backbone: str = "efficientnet_lite0"
    weights: str = ""
    input_size: int = 96
    device: str = "auto"
    splits: Path | None = None
    val_fraction: float = 0.05
    test_fraction: float = 0.15
    split_seed: int = 0
    n_views: int = 4
    synthetic_seed: int = 0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    unfreeze_blocks: int = 6
    half: bool = True
    max_products: int | None = None
    batch_chunk: int = 32
    workers: int = 2
    resume: bool = False
    progress: bool = True
    command: str = ""


@dataclass
class TrainResult:
    """What a training run produced."""

    checkpoint: Path
    manifest: dict[str, Any]
    history: list[EpochReport]
    cache_seconds: float
    train_seconds: float


def sample_products(products: list[Product], limit: int | None, seed: int) -> list[Product]:
    if limit is None or len(products) <= limit:
        return products
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(products), limit, replace=False))
    return [products[i] for i in keep]


def machine_summary() -> str:
    """CPU model / cores / GPU, for manifests."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}"


def train_from_catalog(opts: TrainOptions, cfg: TrainConfig,
                       echo: Callable[[str], None] = print) -> TrainResult:
    """Run the whole recipe: splits, cached views, training, checkpoint export.

    Args:
        opts: Data, model recipe and run options.
        cfg: Hyper-parameters.
        echo: Where progress lines go.

    Returns:
        The checkpoint path, its manifest, the epoch history and the timings.
    """
    cfg.check()
    t0 = time.perf_counter()
    products, problems = read_products(opts.catalog, opts.images_root)
    if problems:
        echo(f"skipped {len(problems)} catalog rows (first: {problems[0]})")
    splits_path = opts.splits or opts.out.parent / "splits.csv"
    splits = load_or_make_splits(products, splits_path, opts.val_fraction, opts.test_fraction, opts.split_seed)
    by_split = {name: [p for p in products if splits.get(p.id) == name] for name in ("train", "val")}
    train_products = sample_products(by_split["train"], opts.max_products, opts.split_seed)
    val_limit = None if opts.max_products is None else max(8, opts.max_products // 4)
    val_products = sample_products(by_split["val"], val_limit, opts.split_seed)
    if len(train_products) < 2:
        raise ValueError(f"only {len(train_products)} training products: the catalog is too small to train on")
    counts = split_counts(splits)
    echo(f"products: {len(products)} ({counts['train']} train, {counts['val']} val, {counts['test']} test; splits "
         f"{splits_path}); training on {len(train_products)}, validating on {len(val_products)}")

    embedder = create_embedder(opts.backbone, opts.weights, input_size=opts.input_size, device=opts.device)
    backbone = embedder.module.backbone
    split = split_backbone(backbone, opts.unfreeze_blocks)
    synth_cfg = opts.synthetic
    train_synth = StreetPhotoSynthesizer(image_loader(train_products), [p.id for p in train_products],
                                         seed=opts.synthetic_seed, cfg=synth_cfg)
    val_synth = StreetPhotoSynthesizer(image_loader(val_products), [p.id for p in val_products],
                                       seed=opts.synthetic_seed, cfg=synth_cfg)
    catalog_sha = catalog_digest(open_catalog(opts.catalog, opts.images_root))
    key = cache_key(embedder, opts.unfreeze_blocks, train_synth, opts.n_views, train_products + val_products,
                    catalog_sha)
    cache_dir = opts.work_dir / f"cache-{key}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    echo(f"view cache: {cache_dir} ({opts.n_views} views per product, input {opts.input_size}px, "
         f"unfreeze_blocks {opts.unfreeze_blocks}, device {embedder.device})")
    c0 = time.perf_counter()
    train_arr = cache_views(train_products, embedder, split, train_synth, opts.n_views, cache_dir / "train.npy",
                            opts.batch_chunk, opts.workers, opts.progress, "train")
    val_arr = cache_views(val_products, embedder, split, val_synth, opts.n_views, cache_dir / "val.npy",
                          opts.batch_chunk, opts.workers, opts.progress, "val") if len(val_products) >= 2 else None
    cache_total = cache_seconds(cache_dir / "train.npy") + cache_seconds(cache_dir / "val.npy")
    echo(f"view cache ready ({time.perf_counter() - c0:.0f}s in this run, {cache_total:.0f}s in all)")

    vocab = TaxonomyVocab.fit(train_products, TAXONOMY_LEVELS)
    train_set = ViewSet(train_arr, vocab.encode(train_products))
    val_set = ViewSet(val_arr, vocab.encode(val_products)) if val_arr is not None else None
    trainer = Trainer(backbone, split, cfg, train_set, val_set, vocab.sizes(), TAXONOMY_LEVELS,
                      state_path=opts.work_dir / "train_state.pt", data_key=key, device=embedder.device)
    base = {"weights": opts.weights, "source": embedder.weights_source, "fingerprint": embedder.fingerprint}
    data = {"catalog": str(opts.catalog), "catalog_sha256": catalog_sha, "splits": str(splits_path),
            "splits_sha256": file_sha256(splits_path), "split_counts": counts,
            "train_products": len(train_products), "val_products": len(val_products), "n_views": opts.n_views,
            "synthetic": train_synth.describe(), "cache_key": key}

    def export(report: EpochReport) -> None:
        meta = {"backbone": embedder.name, "input_size": opts.input_size, "head": trainer.head.spec,
                "base_weights": opts.weights, "base": base, "unfreeze_blocks": opts.unfreeze_blocks,
                "stored_dtype": "float16" if opts.half else "float32",
                "trained_prefixes": ["head."] + [f"backbone.{p}" for p in split.tail_prefixes],
                "train_config": cfg.as_dict(), "data": data, "taxonomy": {"levels": list(vocab.levels),
                                                                          "classes": [len(c) for c in vocab.classes]},
                "epochs_done": report.epoch + 1, "metrics": report.val,
                "history": [{"epoch": h.epoch + 1, "stage": h.stage, "loss": round(h.loss, 5), **h.val}
                            for h in trainer.history],
                "timing": {"cache_seconds": round(cache_total, 1),
                           "train_seconds": round(sum(h.seconds for h in trainer.history), 1)},
                "machine": machine_summary(), "command": opts.command}
        save_checkpoint(opts.out, trainer.export_state_dict(half=opts.half), meta)

    steps_bar: dict[str, Any] = {}

    def progress(step: int, steps: int, loss: float) -> None:
        if not opts.progress:
            return
        bar = steps_bar.get("bar")
        if bar is None or step == 1:
            if bar is not None:
                bar.close()
            bar = steps_bar["bar"] = tqdm(total=steps, unit="batch", leave=False, mininterval=2.0,
                                          desc=f"epoch {trainer.next_epoch + 1}/{trainer.total_epochs}")
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if step == steps:
            bar.close()
            steps_bar.pop("bar", None)

    def on_epoch(report: EpochReport) -> None:
        echo(report.line(trainer.total_epochs))
        export(report)

    t1 = time.perf_counter()
    if opts.resume and trainer.state_path is not None and trainer.state_path.is_file():
        echo(f"resuming from {trainer.state_path}")
    history = trainer.fit(resume=opts.resume, progress=progress, on_epoch=on_epoch)
    train_seconds = time.perf_counter() - t1
    if not history:
        raise ValueError("no epoch was trained")
    manifest = json.loads(Path(f"{opts.out}.json").read_text())
    echo(f"checkpoint {opts.out} ({manifest['bytes'] / 1e6:.1f} MB, sha256 {manifest['sha256'][:16]}); caching "
         f"{cache_total:.0f}s, training {train_seconds:.0f}s (all runs); this run {time.perf_counter() - t0:.0f}s")
    return TrainResult(opts.out, manifest, history, cache_total, train_seconds)
