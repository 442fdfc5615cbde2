"""The `manage.py train-detector` job: SYNTHETIC scenes of one split's products, the frozen trunk's features cached
once, the detector head trained on them (engine/train/detector.py), the best head by val AP written with its
manifest to models/detector/<image fingerprint>.pt.

Data: ``indexer.datasets.scenes`` scenes (SYNTHETIC) from the served checkpoint's splits.csv, train scenes from
train products, val scenes from val products (test products never reach this job). Each product's slot comes from
the [outfit] slot rules. The scenes are letterboxed to the detector's input size, run once through the served
model's trunk (torch, no grad) and the two feature maps stored as fp16 chunks in the work dir (resumable: finished
chunks are kept). Training then takes seconds per epoch; the state (head, optimizer, history) is saved after each
epoch, so ``--resume`` continues where an interrupted run stopped.

May import: engine, indexer.datasets, indexer.catalog, indexer.outfits.slots, indexer.settings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from engine.files import file_sha256, write_atomically
from engine.models.detector import (
    DetectionHead,
    DetectorConfig,
    detector_checkpoint_path,
    detector_preprocessor,
    photo_to_square,
    save_detector,
    trunk_features,
)
from engine.train.detector import HeadTrainConfig, SquareObject, detection_metrics, predict, train_head
from indexer.catalog.source import CatalogRow, iter_catalog, open_catalog
from indexer.catalog.splits import read_splits
from indexer.datasets.scenes import SCENES_VERSION, Scene, SceneProduct, SceneSynthesizer
from indexer.outfits.slots import parse_slot_rules
from indexer.settings import Settings

CHUNK = 128
# Objects a detector is not asked to find (neither targets nor false alarms): mostly hidden or tiny.
MIN_VISIBLE = 0.2
MIN_SIDE = 0.03


@dataclass(frozen=True)
class DetectorTrainOptions:
    catalog: Path
    images_root: Path | None
    splits: Path
    out: Path
    work_dir: Path
    train_scenes: int = 3000
    val_scenes: int = 300
    input_size: int = 256
    width: int = 96
    scene_seed: int = 0
    resume: bool = False
    progress: bool = True
    command: str = ""


def scene_products(settings: Settings, catalog: Path, images_root: Path | None, splits_file: Path, split: str
                   ) -> tuple[list[SceneProduct], dict[str, Path]]:
    """One split's catalog products that have an outfit slot, and their image paths."""
    rules = parse_slot_rules(settings.outfit.slots, settings.outfit.templates)
    splits = read_splits(splits_file)
    products, paths = [], {}
    for row in iter_catalog(open_catalog(catalog, images_root)):
        if not isinstance(row, CatalogRow) or splits.get(row.external_id) != split:
            continue
        slot = rules.slot_of(row.taxonomy)
        if slot:
            products.append(SceneProduct(row.external_id, slot))
            paths[row.external_id] = row.image_path
    if not products:
        raise ValueError(f"no {split} products with an outfit slot in {catalog} (splits {splits_file})")
    return products, paths


def scene_synthesizer(settings: Settings, catalog: Path, images_root: Path | None, splits_file: Path, split: str,
                      seed: int) -> SceneSynthesizer:
    """A SYNTHETIC scene synthesizer over one split's products."""
    products, paths = scene_products(settings, catalog, images_root, splits_file, split)

    def load(key: str) -> Image.Image:
        with Image.open(paths[key]) as img:
            return img.convert("RGB")

    return SceneSynthesizer(products, load, seed=seed, split=split)


def square_objects(scene: Scene, slots: Sequence[str]) -> list[SquareObject]:
    """A scene's objects as boxes of its letterboxed square, slot index, and whether they are ignored."""
    w, h = scene.image.size
    out: list[SquareObject] = []
    for o in scene.objects:
        if o.slot not in slots:
            continue
        box = photo_to_square(o.box, w, h)
        ignore = o.visible < MIN_VISIBLE or min(box[2] - box[0], box[3] - box[1]) < MIN_SIDE
        out.append((tuple(round(v, 5) for v in box), slots.index(o.slot), bool(ignore)))  # type: ignore[misc]
    return out


def cache_features(embedder, synth: SceneSynthesizer, count: int, input_size: int, slots: Sequence[str],
                   folder: Path, progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Trunk features of scenes 0..count-1 (fp16), cached in chunks of CHUNK scenes under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pre = detector_preprocessor(embedder, input_size)
    backbone = embedder.module.backbone.eval()
    fines, coarses, objects = [], [], []
    bar = tqdm(total=count, desc=desc, unit="scene", disable=not progress)
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, count, CHUNK):
            n = min(CHUNK, count - start)
            path = folder / f"{start:06d}-{n}.npz"
            if not path.is_file():
                scenes = list(pool.map(synth.scene, range(start, start + n)))
                batch = pre.batch([s.image for s in scenes])
                with torch.inference_mode():
                    parts = [trunk_features(backbone, batch[i:i + 32].contiguous(memory_format=torch.channels_last))
                             for i in range(0, n, 32)]
                fine = torch.cat([p[0] for p in parts]).float().numpy().astype(np.float16)
                coarse = torch.cat([p[1] for p in parts]).float().numpy().astype(np.float16)
                objs = json.dumps([square_objects(s, slots) for s in scenes])

                def write(f, fine=fine, coarse=coarse, objs=objs) -> None:  # noqa: ANN001
                    np.savez(f, fine=fine, coarse=coarse, objects=np.array(objs))

                write_atomically(path, write)
            with np.load(path) as data:
                fines.append(data["fine"])
                coarses.append(data["coarse"])
                objects += [[(tuple(b), int(c), bool(i)) for b, c, i in o] for o in json.loads(str(data["objects"]))]
            bar.update(n)
    bar.close()
    return np.concatenate(fines), np.concatenate(coarses), objects


def train_detector(settings: Settings, embedder, opts: DetectorTrainOptions, cfg: HeadTrainConfig,
                   echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole job; returns the manifest of the written checkpoint."""
    t0 = time.perf_counter()
    fingerprint = embedder.fingerprint
    slots = tuple(parse_slot_rules(settings.outfit.slots, settings.outfit.templates).slots)
    key = {"fingerprint": fingerprint, "scenes_version": SCENES_VERSION, "input_size": opts.input_size,
           "scene_seed": opts.scene_seed, "slots": list(slots), "splits_sha256": file_sha256(opts.splits)}
    work = opts.work_dir
    work.mkdir(parents=True, exist_ok=True)
    key_file = work / "cache-key.json"
    if key_file.is_file() and json.loads(key_file.read_text()) != key:
        raise ValueError(f"the work dir {work} caches features of another model, scene set or split file; "
                         "remove it or pass another --work-dir")
    write_atomically(key_file, lambda f: f.write(json.dumps(key, indent=2).encode()))
    synth = {s: scene_synthesizer(settings, opts.catalog, opts.images_root, opts.splits, s, opts.scene_seed)
             for s in ("train", "val")}
    echo(f"SYNTHETIC scenes: {opts.train_scenes} from {len(synth['train'].products)} train products, "
         f"{opts.val_scenes} from {len(synth['val'].products)} val products; slots {', '.join(slots)}")
    tc = time.perf_counter()
    tr_f, tr_c, tr_o = cache_features(embedder, synth["train"], opts.train_scenes, opts.input_size, slots,
                                      work / "train", opts.progress, "train scenes")
    va_f, va_c, va_o = cache_features(embedder, synth["val"], opts.val_scenes, opts.input_size, slots,
                                      work / "val", opts.progress, "val scenes")
    cache_seconds = time.perf_counter() - tc
    torch.manual_seed(cfg.seed)
    head = DetectionHead(DetectorConfig(slots, opts.input_size, opts.width))
    state_file = work / "state.pt"
    state: dict[str, Any] = {"epoch": 0, "history": [], "best": -1.0, "optimizer": None, "train_seconds": 0.0}
    if opts.resume and state_file.is_file():
        saved = torch.load(state_file, map_location="cpu", weights_only=True)
        head.load_state_dict(saved["head"])
        state = {k: saved[k] for k in state}
        echo(f"resuming after epoch {state['epoch']} (best val AP@0.5 {state['best']:.3f})")
    else:
        head.set_normalisation(tr_f[:1000], tr_c[:1000])
    out = detector_checkpoint_path(opts.out, fingerprint)
    steps = (len(tr_f) + cfg.batch_size - 1) // cfg.batch_size
    bar = tqdm(total=(cfg.epochs - state["epoch"]) * steps, desc="train detector", unit="batch",
               disable=not opts.progress)
    t_train = time.perf_counter() - state["train_seconds"]

    def meta(metrics: dict[str, Any]) -> dict[str, Any]:
        return {"image_fingerprint": fingerprint, "slots": list(slots), "input_size": opts.input_size,
                "synthetic": True, "metrics": metrics, "history": state["history"], "train_config": cfg.describe(),
                "data": {"train_scenes": opts.train_scenes, "val_scenes": opts.val_scenes,
                         "scenes": synth["train"].describe(), "val_products": len(synth["val"].products),
                         "splits": str(opts.splits), "splits_sha256": key["splits_sha256"],
                         "catalog": str(opts.catalog), "min_visible": MIN_VISIBLE, "min_side": MIN_SIDE},
                "timing": {"cache_seconds": round(cache_seconds, 1),
                           "train_seconds": round(time.perf_counter() - t_train, 1)},
                "command": opts.command, "options": {k: str(v) for k, v in asdict(opts).items()}}

    def on_epoch(epoch: int, loss: float, opt: torch.optim.Optimizer) -> bool:
        metrics = json.loads(json.dumps(detection_metrics(predict(head, va_f, va_c), va_o, slots), default=float))
        ap = float(metrics.get("all", {}).get("AP@0.5", 0.0))
        state["history"].append({"epoch": epoch + 1, "loss": round(float(loss), 5), "val_AP@0.5": round(ap, 4),
                                 "val_recall@0.5": round(float(metrics.get("all", {}).get("recall@0.5", 0.0)), 4)})
        state["epoch"] = epoch + 1
        if ap > state["best"]:
            state["best"] = ap
            save_detector(out, head, meta({"val": metrics, "best_epoch": epoch + 1}))
        state["optimizer"] = opt.state_dict()
        state["train_seconds"] = float(time.perf_counter() - t_train)
        payload = {"head": head.state_dict(), **state}
        write_atomically(state_file, lambda f: torch.save(payload, f))
        bar.set_postfix(loss=f"{loss:.3f}", val_ap=f"{ap:.3f}", best=f"{state['best']:.3f}")
        return True

    train_head(head, tr_f, tr_c, tr_o, cfg, start_epoch=state["epoch"], optimizer_state=state["optimizer"],
               on_epoch=on_epoch, progress=bar.update)
    bar.close()
    manifest = json.loads(Path(f"{out}.json").read_text())
    best = manifest["meta"]["metrics"]
    echo(f"wrote {out} ({manifest['bytes'] / 1e6:.2f} MB): best SYNTHETIC val AP@0.5 "
         f"{best['val']['all']['AP@0.5']:.3f} at epoch {best['best_epoch']}; {time.perf_counter() - t0:.0f} s in all")
    return manifest
