"""The `manage.py train-street-encoder` job: a query-side copy of the served image model, fine-tuned so that crops of
SYNTHETIC street photos land on their product's catalog vector (engine/train/street_encoder.py).

Data: train-split products of the served checkpoint's splits.csv (test products never reach training), each with
its shop photo (view 0) and ``views - 1`` SYNTHETIC crops made by ``street_crop_config`` (what a detector's padded
box of a hard street photo holds: the product 60-95% of the crop, rotated, sheared, cut off, covered, on clutter,
under a colour cast, blurred, low resolution, JPEG 25-70). The served model's frozen trunk runs once per view
(cached, resumable: ``indexer.training.embedding.cache_views``); the catalog vectors are the served model's output
for the shop photos. Validation: val-split products, their crops against their own catalog vectors, the served
model's recall@1 beside the street encoder's.

The result is a full model checkpoint (``engine.models.checkpoints``) at ``<out>/<served fingerprint>.pt`` whose
meta names the served model it answers for (``street_encoder.gallery_fingerprint``); the server loads it as the
query embedder (``model.street_encoder``; indexer/embedders.py).
"""

from __future__ import annotations

import copy
import json
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.files import file_sha256, write_atomically
from engine.metrics import recall_at_k
from engine.models.backbone_split import split_backbone
from engine.models.checkpoints import load_checkpoint, save_checkpoint
from engine.models.keyed_files import keyed_path
from engine.train.street_encoder import StreetTrainConfig, encode_activations, train_street_encoder
from indexer.catalog.splits import read_splits
from indexer.datasets.synthetic import StreetPhotoSynthesizer, street_crop_config
from indexer.training.embedding import cache_views, image_loader, read_products

STREET_ENCODER_FORMAT = 1


@dataclass
class StreetEncoderOptions:
    catalog: Path
    images_root: Path | None
    splits: Path
    out: Path
    work_dir: Path
    products: int = 12000
    val_products: int = 1000
    views: int = 4
    unfreeze_blocks: int = 6
    synthetic_seed: int = 11
    workers: int = 2
    resume: bool = False
    progress: bool = True
    command: str = ""


def _recall(queries: torch.Tensor, gallery: torch.Tensor, per_product: int) -> dict[str, float]:
    """recall@1 and @10 of queries (``per_product`` consecutive rows per gallery row) against their gallery row."""
    top = (queries @ gallery.T).topk(min(10, len(gallery)), dim=1).indices.numpy()
    found = recall_at_k(top, np.repeat(np.arange(len(gallery)), per_product), (1, top.shape[1]))
    return {"r@1": round(found[1], 4), "r@10": round(found[top.shape[1]], 4)}


def train_street_encoder_job(settings, embedder, opts: StreetEncoderOptions, cfg: StreetTrainConfig,  # noqa: ANN001
                             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole job; returns the manifest of the written checkpoint."""
    t0 = time.perf_counter()
    fingerprint = embedder.fingerprint
    # The street encoder is the served model's recipe with other weights: its meta is the served checkpoint's.
    served_meta = load_checkpoint(embedder.checkpoint)["meta"] if embedder.checkpoint else {
        "backbone": embedder.name, "input_size": embedder.input_size, "head": None,
        "mean": list(embedder.preprocessor.mean), "std": list(embedder.preprocessor.std)}
    products, _ = read_products(opts.catalog, opts.images_root)
    splits = read_splits(opts.splits)
    rng = random.Random(opts.synthetic_seed)
    by_split = {name: [p for p in products if splits.get(p.id) == name] for name in ("train", "val")}
    for ps in by_split.values():
        rng.shuffle(ps)
    train, val = by_split["train"][:opts.products], by_split["val"][:opts.val_products]
    if len(train) < 2 or len(val) < 2:
        raise ValueError(f"needs train and val products in {opts.splits} (found {len(train)} and {len(val)})")
    crop_cfg = street_crop_config(embedder.input_size)
    key = {"fingerprint": fingerprint, "unfreeze_blocks": opts.unfreeze_blocks, "views": opts.views,
           "synthetic": crop_cfg.describe(), "seed": opts.synthetic_seed, "products": [len(train), len(val)],
           "splits_sha256": file_sha256(opts.splits)}
    work = opts.work_dir
    work.mkdir(parents=True, exist_ok=True)
    key_file = work / "cache-key.json"
    if key_file.is_file() and json.loads(key_file.read_text()) != key:
        raise ValueError(f"the work dir {work} caches views of another model, crop set or split file; remove it or "
                         "pass another --work-dir")
    write_atomically(key_file, lambda f: f.write(json.dumps(key, indent=2).encode()))
    echo(f"SYNTHETIC street crops: {opts.views - 1} per product of {len(train)} train and {len(val)} val products; "
         f"trunk frozen below the last {opts.unfreeze_blocks} stages")
    teacher = embedder.module
    teacher_split = split_backbone(teacher.backbone, opts.unfreeze_blocks)
    arrays = {}
    tc = time.perf_counter()
    for name, ps in (("train", train), ("val", val)):
        synth = StreetPhotoSynthesizer(image_loader(ps), [p.id for p in ps], seed=opts.synthetic_seed, cfg=crop_cfg)
        arrays[name] = cache_views(ps, embedder, teacher_split, synth, opts.views, work / f"{name}.npy",
                                   workers=opts.workers, progress=opts.progress, label=f"{name} crops")
    cache_seconds = time.perf_counter() - tc
    targets = encode_activations(teacher, teacher_split.tail, arrays["train"][:, 0])
    val_gallery = encode_activations(teacher, teacher_split.tail, arrays["val"][:, 0])
    val_crops = arrays["val"][:, 1:].reshape(-1, *arrays["val"].shape[2:])
    baseline = _recall(encode_activations(teacher, teacher_split.tail, val_crops), val_gallery, opts.views - 1)
    echo(f"served model on SYNTHETIC val crops: recall@1 {baseline['r@1']:.3f}, recall@10 {baseline['r@10']:.3f}")

    torch.manual_seed(cfg.seed)
    student = copy.deepcopy(teacher)
    student_split = split_backbone(student.backbone, opts.unfreeze_blocks)

    def validate() -> dict[str, float]:
        crops = _recall(encode_activations(student, student_split.tail, val_crops), val_gallery, opts.views - 1)
        shop = encode_activations(student, student_split.tail, arrays["val"][:, 0])
        return {"val_crop_r@1": crops["r@1"], "val_crop_r@10": crops["r@10"],
                "val_shop_self_r@1": _recall(shop, val_gallery, 1)["r@1"],
                "val_shop_cosine": round(float((shop * val_gallery).sum(dim=1).mean()), 4)}

    tt = time.perf_counter()
    history = train_street_encoder(student, student_split.tail, arrays["train"], targets, cfg, validate,
                                   work / "state.pt", opts.resume, opts.progress)
    for row in history:
        echo(f"epoch {row['epoch']}: loss {row['loss']:.4f}, val crop recall@1 {row['val_crop_r@1']:.3f} (served model "
             f"{baseline['r@1']:.3f}), shop self recall@1 {row['val_shop_self_r@1']:.3f}")
    meta = {k: v for k, v in served_meta.items() if k not in ("base_weights", "base", "history", "command")}
    meta["street_encoder"] = {
        "format": STREET_ENCODER_FORMAT, "gallery_fingerprint": fingerprint, "synthetic": True,
        "unfreeze_blocks": opts.unfreeze_blocks, "train_config": cfg.describe(), "history": history,
        "val_baseline": baseline, "data": {"train_products": len(train), "val_products": len(val),
                                           "views": opts.views, "crops": crop_cfg.describe(),
                                           "splits": str(opts.splits), "splits_sha256": key["splits_sha256"],
                                           "catalog": str(opts.catalog)},
        "timing": {"cache_seconds": round(cache_seconds, 1), "train_seconds": round(time.perf_counter() - tt, 1)},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "command": opts.command, "options": {k: str(v) for k, v in asdict(opts).items()}}
    out = keyed_path(opts.out, fingerprint)
    state = {k: v.half() if v.is_floating_point() else v for k, v in student.state_dict().items()}
    manifest = save_checkpoint(out, state, meta)
    last = history[-1]
    echo(f"wrote {out} ({manifest['bytes'] / 1e6:.1f} MB): SYNTHETIC val crop recall@1 {last['val_crop_r@1']:.3f} "
         f"(served model {baseline['r@1']:.3f}); {time.perf_counter() - t0:.0f} s in all")
    return manifest
