"""`manage.py train-classifier`: a taxonomy classifier on top of a fine-tuned checkpoint, mixed into its embedding.

The classifier reads the backbone's pooled features of the checkpoint (which stays frozen) and predicts one taxonomy
level (article_type by default). Its posterior becomes part of the embedding (``engine.models.heads.EmbeddingNet``)
with a weight chosen on the validation products, so that items of the type the model sees rank first without the
appearance similarity (street-to-shop) losing what it had.

It learns from the train products' shop photo and SYNTHETIC street photos of them (``indexer.datasets.synthetic``),
so it classifies street photos as well as catalog photos. The pooled features of every view are computed once and
cached under the work dir (resumable, like ``manage.py train``'s view cache); refitting with other settings reuses
them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine import create_embedder, load_checkpoint, save_checkpoint
from engine.files import file_sha256
from engine.metrics import category_recall_at_1, synthetic_recall
from engine.models.backbone_split import BackboneSplit
from engine.models.heads import EmbeddingNet, TaxonomyClassifier
from engine.train.trainer import TAXONOMY_LEVELS, TrainConfig, Trainer, ViewSet, cosine_lr
from indexer.catalog.source import catalog_digest, open_catalog
from indexer.catalog.splits import read_splits
from indexer.datasets.synthetic import StreetPhotoSynthesizer, SyntheticConfig
from indexer.training.embedding import (
    Product,
    TaxonomyVocab,
    cache_seconds,
    cache_views,
    image_loader,
    machine_summary,
    read_products,
    sample_products,
)

CLASSIFIER_CACHE_FORMAT = 1
WEIGHT_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class ClassifierConfig:
    """Hyper-parameters of the classifier fit (recorded in the checkpoint meta).

    Attributes:
        level: Taxonomy column to predict.
        hidden: Hidden width (0 = linear).
        epochs: Passes over the training views.
        batch_size: Rows per step.
        lr: Peak learning rate (AdamW, 5% warm-up, cosine decay).
        weight_decay: AdamW weight decay.
        dropout: Dropout on the input features.
        label_smoothing: Cross-entropy label smoothing.
        seed: Seeds the initialisation and the shuffling.
    """

    level: str = "article_type"
    hidden: int = 1024
    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-2
    dropout: float = 0.3
    label_smoothing: float = 0.1
    seed: int = 0


def _backbone_digest(net: EmbeddingNet) -> str:
    """sha256 over the backbone and head tensors (not the classifier): what the cached features depend on."""
    digest = hashlib.sha256()
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("classifier.")}
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fit_classifier(features: np.ndarray, labels: np.ndarray, classes: Sequence[str], cfg: ClassifierConfig,
                   device: torch.device | str = "cpu",
                   progress: Callable[[int, int, float], None] | None = None) -> TaxonomyClassifier:
    """Train a ``TaxonomyClassifier`` on (N, D) features and their class indices (rows with -1 are dropped).

    The fit runs on ``device``; the classifier comes back on the CPU. Dropout masks are drawn on the CPU from the
    seed, so they are the same on every device."""
    keep = labels >= 0
    x_all = torch.from_numpy(np.ascontiguousarray(features[keep], dtype=np.float32))
    y_all = torch.from_numpy(labels[keep].astype(np.int64))
    if len(y_all) < 2:
        raise ValueError("fewer than 2 labelled training rows: nothing to fit")
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        clf = TaxonomyClassifier(x_all.shape[1], classes, cfg.hidden, cfg.level)
    clf.to(device).train()
    drop = nn.Dropout(cfg.dropout)
    opt = torch.optim.AdamW(clf.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(y_all) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    step = 0
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(y_all), generator=gen)
        running = 0.0
        for b in range(steps_per_epoch):
            rows = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, total, cfg.lr)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed * 1_000_003 + step)
                x = drop(x_all[rows]).to(device)
            loss = F.cross_entropy(clf(x), y_all[rows].to(device), label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach())
            step += 1
        if progress:
            progress(epoch + 1, cfg.epochs, running / steps_per_epoch)
    return clf.cpu().eval()


def mix(emb: np.ndarray, posterior: np.ndarray, weight: float) -> np.ndarray:
    """The served embedding for given head outputs and posteriors (same formula as ``EmbeddingNet.forward``)."""
    e = emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
    return np.concatenate([math.sqrt(1 - weight) * e, math.sqrt(weight) * np.sqrt(posterior)], axis=-1)


def weight_grid_metrics(emb: np.ndarray, posterior: np.ndarray, labels: np.ndarray,
                        grid: Sequence[float] = WEIGHT_GRID) -> list[dict[str, float]]:
    """Validation metrics per mixing weight.

    Args:
        emb: (N, V, D) head outputs; view 0 = shop photo, views 1.. = SYNTHETIC street photos.
        posterior: (N, V, C) classifier posteriors.
        labels: (N,) class index of each product (-1 = unknown).

    Returns:
        One dict per weight: weight, category_r@1 (leave-one-out over shop photos), and when V >= 2 the
        street-to-shop r@1 / r@20 (street views against the shop photos; r@20 only with >= 20 products).
    """
    rows = []
    for w in grid:
        mixed = mix(emb, posterior, w)
        row = {"weight": float(w), "category_r@1": category_recall_at_1(mixed[:, 0], labels)}
        if emb.shape[1] >= 2:
            rec = synthetic_recall(mixed, (1, 20))
            row["street_r@1"] = rec[1]
            if 20 in rec:  # needs at least 20 products
                row["street_r@20"] = rec[20]
        rows.append(row)
    return rows


def choose_weight(rows: Sequence[dict[str, float]], tolerance: float = 0.002) -> float:
    """The weight with the best validation category recall@1 among those whose street-to-shop recall@20 is within
    ``tolerance`` of the weight-0 embedding's (street-to-shop must not pay for category retrieval).

    With fewer than 20 val products recall@1 stands in for recall@20; without street views only category counts.
    """
    base = next((r for r in rows if r["weight"] == 0.0), rows[0])
    key = next((k for k in ("street_r@20", "street_r@1") if k in base), None)
    allowed = list(rows) if key is None else [r for r in rows if r[key] >= base[key] - tolerance]
    return max(allowed, key=lambda r: (round(r["category_r@1"], 6), -r["weight"]))["weight"]


@dataclass
class ClassifierOptions:
    """Data and run options of ``manage.py train-classifier``.

    Attributes:
        checkpoint: Input checkpoint (from ``manage.py train``); its backbone stays as it is, its head too unless
            ``head_epochs`` > 0.
        out: Output checkpoint (may be the input: its classifier, if any, is replaced).
        catalog / images_root: The catalog the checkpoint was trained on.
        splits: id,split file (train products fit the classifier, val products choose the weight).
        work_dir: Feature cache folder.
        input_size: Input side the features are computed at (the serving size).
        n_views: Views per product: the shop photo + n_views - 1 SYNTHETIC street photos.
        synthetic_seed: Seed of the street photos.
        weight: Mixing weight in [0, 1], or None to choose it on the validation products (``choose_weight``).
        head_epochs: Before the classifier, re-fit the checkpoint's projection head for this many epochs on the
            cached features (triplet + taxonomy loss as ``manage.py train``, P x K batches of shop + street views,
            starting from the checkpoint's head); 0 = keep the head as it is.
        head_aux_weight / head_lr: Taxonomy loss weight and peak learning rate of that re-fit.
        device / workers / progress / command / max_products: As for ``manage.py train``.
    """

    checkpoint: Path
    out: Path
    catalog: Path
    splits: Path
    work_dir: Path
    images_root: Path | None = None
    input_size: int = 128
    n_views: int = 2
    synthetic_seed: int = 0
    weight: float | None = None
    head_epochs: int = 0
    head_aux_weight: float = 1.0
    head_lr: float = 5e-4
    device: str = "auto"
    workers: int = 2
    progress: bool = True
    command: str = ""
    max_products: int | None = None


def _products(opts: ClassifierOptions) -> tuple[list[Product], list[Product]]:
    products, _ = read_products(opts.catalog, opts.images_root, TAXONOMY_LEVELS)
    splits = read_splits(opts.splits)
    train = [p for p in products if splits.get(p.id) == "train"]
    val = [p for p in products if splits.get(p.id) == "val"]
    if opts.max_products is not None:
        train = sample_products(train, opts.max_products, 0)
        val = sample_products(val, max(8, opts.max_products // 4), 0)
    return train, val


def _embed_pooled(net: EmbeddingNet, clf: TaxonomyClassifier, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = torch.from_numpy(np.ascontiguousarray(pooled.reshape(-1, pooled.shape[-1]), dtype=np.float32))
    embs, posts = [], []
    with torch.inference_mode():
        for start in range(0, len(flat), 4096):
            x = flat[start:start + 4096]
            embs.append(F.normalize(net.head(x).float(), dim=1).numpy())
            posts.append(torch.softmax(clf(x).float(), dim=1).numpy())
    lead = pooled.shape[:-1]
    return np.concatenate(embs).reshape(*lead, -1), np.concatenate(posts).reshape(*lead, -1)


def refit_head(net: EmbeddingNet, meta: dict[str, Any], train_arr: np.ndarray, val_arr: np.ndarray,
               train: Sequence[Product], val: Sequence[Product], opts: ClassifierOptions,
               echo: Callable[[str], None]) -> dict[str, Any]:
    """Continue training ``net.head`` (in place) on cached pooled features of shop + street views.

    The features are the fine-tuned backbone's at the serving size, so this adapts the head to the size it serves at
    (the backbone stays frozen). Loss and batches are those of ``manage.py train`` (``engine.train.trainer.Trainer``);
    the taxonomy classifiers of that loss start fresh. Returns the record stored in the checkpoint meta.
    """
    if opts.n_views < 2:
        raise ValueError("--head-epochs needs street views: use --views 2 or more")
    recorded = dict(meta.get("train_config") or {})
    if "level_weights" in recorded:
        recorded["level_weights"] = tuple(recorded["level_weights"])
    known = set(TrainConfig.__dataclass_fields__)
    cfg = TrainConfig(**{**{k: v for k, v in recorded.items() if k in known}, "epochs_frozen": opts.head_epochs,
                         "epochs_unfrozen": 0, "aux_weight": opts.head_aux_weight, "lr": opts.head_lr,
                         "views_per_product": min(opts.n_views, int(recorded.get("views_per_product", 3)))})
    vocab = TaxonomyVocab.fit(train, TAXONOMY_LEVELS)
    split = BackboneSplit(trunk=nn.Identity(), tail=nn.Identity(), tail_prefixes=(), unfreeze_blocks=0)
    trainer = Trainer(nn.Identity(), split, cfg, ViewSet(np.asarray(train_arr, dtype=np.float32),
                                                         vocab.encode(train)),
                      ViewSet(np.asarray(val_arr, dtype=np.float32), vocab.encode(val)), vocab.sizes())
    trainer.head.load_state_dict(net.head.state_dict())
    before = trainer.validate(frozen=True)
    echo("head re-fit, validation before: " + "  ".join(f"{k} {v:.3f}" for k, v in before.items()))
    history = trainer.fit(on_epoch=lambda r: echo(r.line(trainer.total_epochs)))
    net.head.load_state_dict(trainer.head.state_dict())
    return {"config": cfg.as_dict(), "input_size": opts.input_size, "n_views": opts.n_views, "val_before": before,
            "history": [{"epoch": h.epoch + 1, "loss": round(h.loss, 5), **h.val} for h in history],
            "seconds": round(sum(h.seconds for h in history), 1)}


def train_classifier(opts: ClassifierOptions, cfg: ClassifierConfig,
                     echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Cache features, fit the classifier, choose the weight on val, write the checkpoint; returns its manifest."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    ckpt = load_checkpoint(opts.checkpoint)
    base_meta = {k: v for k, v in ckpt["meta"].items() if k != "classifier"}
    embedder = create_embedder(base_meta["backbone"], checkpoint=str(opts.checkpoint), input_size=opts.input_size,
                               device=opts.device, taxonomy_weight=0.0)
    net = embedder.module
    train, val = _products(opts)
    lv = TAXONOMY_LEVELS.index(cfg.level)
    classes = sorted({p.taxonomy[lv] for p in train if p.taxonomy[lv]})
    if len(classes) < 2 or len(val) < 2:
        raise ValueError(f"need >= 2 {cfg.level} classes among the train products and >= 2 val products; got "
                         f"{len(classes)} classes, {len(val)} val products")
    index = {c: i for i, c in enumerate(classes)}

    def encode(ps: Sequence[Product]) -> np.ndarray:
        return np.array([index.get(p.taxonomy[lv] or "", -1) for p in ps], np.int64)

    catalog_sha = catalog_digest(open_catalog(opts.catalog, opts.images_root))
    synth_cfg = SyntheticConfig()
    key_blob = json.dumps({"format": CLASSIFIER_CACHE_FORMAT, "net": _backbone_digest(net),
                           "input_size": opts.input_size, "n_views": opts.n_views, "seed": opts.synthetic_seed,
                           "synthetic": synth_cfg.describe(), "catalog": catalog_sha,
                           "products": hashlib.sha256("\n".join(p.id for p in train + val).encode()).hexdigest()},
                          sort_keys=True)
    key = hashlib.sha256(key_blob.encode()).hexdigest()[:24]
    cache_dir = opts.work_dir / f"features-{key}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    echo(f"{len(train)} train / {len(val)} val products, {len(classes)} {cfg.level} classes; features of "
         f"{opts.n_views} views per product at {opts.input_size}px cached in {cache_dir}")
    whole = BackboneSplit(trunk=net.backbone, tail=nn.Identity(), tail_prefixes=(), unfreeze_blocks=0)
    arrays = {}
    for name, ps in (("train", train), ("val", val)):
        synth = StreetPhotoSynthesizer(image_loader(ps), [p.id for p in ps], seed=opts.synthetic_seed, cfg=synth_cfg)
        arrays[name] = cache_views(ps, embedder, whole, synth, opts.n_views, cache_dir / f"{name}.npy",
                                   workers=opts.workers, progress=opts.progress, label=name)
    feature_seconds = cache_seconds(cache_dir / "train.npy") + cache_seconds(cache_dir / "val.npy")
    net.cpu()  # the rest works on cached features, on the CPU (the classifier fit uses opts.device)

    head_refit = None
    if opts.head_epochs:
        head_refit = refit_head(net, base_meta, arrays["train"], arrays["val"], train, val, opts, echo)

    y_train = np.repeat(encode(train), opts.n_views)
    x_train = np.asarray(arrays["train"], dtype=np.float32).reshape(len(train) * opts.n_views, -1)
    bar = tqdm(total=cfg.epochs, unit="epoch", desc="fitting", disable=not opts.progress)

    def progress(epoch: int, epochs: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    f0 = time.perf_counter()
    clf = fit_classifier(x_train, y_train, classes, cfg, embedder.device, progress)
    bar.close()
    fit_seconds = time.perf_counter() - f0
    y_val = encode(val)
    emb, post = _embed_pooled(net, clf, np.asarray(arrays["val"], dtype=np.float32))
    known = y_val >= 0
    accuracy = {"shop": float((post[:, 0].argmax(1) == y_val)[known].mean())}
    if opts.n_views >= 2:
        accuracy["street"] = float((post[:, 1:].argmax(2) == y_val[:, None])[known].mean())
    grid = weight_grid_metrics(emb, post, y_val)
    weight = choose_weight(grid) if opts.weight is None else float(opts.weight)
    echo(f"validation accuracy ({len(val)} val products): " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    echo("validation by weight (street = SYNTHETIC street photos of the val products):")
    for r in grid:
        mark = "  <- chosen" if math.isclose(r["weight"], weight) else ""
        street = "".join(f" {name} {r[key]:.3f}" for key, name in (("street_r@1", " street-to-shop r@1"),
                                                                     ("street_r@20", "r@20")) if key in r)
        echo(f"  weight {r['weight']:.2f}: category r@1 {r['category_r@1']:.3f}{street}{mark}")

    state = dict(ckpt["state_dict"])
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    half = base_meta.get("stored_dtype") == "float16"
    new = {f"classifier.{k}": v for k, v in clf.state_dict().items()}
    if head_refit is not None:
        new.update({f"head.{k}": v for k, v in net.head.state_dict().items()})
    for k, v in new.items():
        v = v.detach().cpu().clone()
        state[k] = v.half() if half and v.is_floating_point() else v
    meta = dict(base_meta)
    if head_refit is not None:
        meta["head_refit"] = head_refit
    meta["classifier"] = {**clf.spec, "weight": weight, "fit": {
        "config": asdict(cfg), "input_size": opts.input_size, "n_views": opts.n_views,
        "synthetic_seed": opts.synthetic_seed, "train_products": len(train), "val_products": len(val),
        "splits": str(opts.splits), "splits_sha256": file_sha256(opts.splits), "catalog_sha256": catalog_sha,
        "cache_key": key, "val_accuracy": accuracy, "val_by_weight": grid,
        "weight_rule": "given" if opts.weight is not None else "best val category r@1 with val street r@20 within "
                                                                 "0.002 of weight 0",
        "timing": {"feature_seconds": round(feature_seconds, 1), "fit_seconds": round(fit_seconds, 1)},
        "machine": machine_summary(), "command": opts.command}}
    manifest = save_checkpoint(opts.out, state, meta)
    echo(f"checkpoint {opts.out} (sha256 {manifest['sha256'][:16]}), classifier weight {weight}; "
         f"{time.perf_counter() - t0:.0f}s")
    return manifest
