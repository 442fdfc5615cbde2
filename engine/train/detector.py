"""Training the garment detector's head on cached trunk features, and its metric (AP@IoU per slot).

Targets are CenterNet's: per slot a heatmap with an elliptical Gaussian at each box centre (sigma = box side / 6,
at least half a cell), the log box size in cells and the centre's sub-cell offset at the centre cell. Loss: the
penalty-reduced focal loss on the heatmap + L1 on size (weight 0.5) and offset (weight 1), averaged over objects.
Horizontal flips are done on the cached features (the trunk is close to flip-equivariant) and on the boxes.

May import: torch, numpy, engine.models, engine's root modules. Never indexer/ or web/.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.localize import box_iou
from engine.models.detector import DetectionHead, decode

# One object of a scene: (x0, y0, x1, y1) relative to the letterboxed square, slot index, ignore flag (too small or
# too hidden to ask for: neither a target nor, at evaluation, a false positive).
SquareObject = tuple[tuple[float, float, float, float], int, bool]


@dataclass(frozen=True)
class HeadTrainConfig:
    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    size_weight: float = 0.5
    offset_weight: float = 1.0
    flip: bool = True
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def make_targets(objects: Sequence[SquareObject], n_classes: int, grid: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(heatmap (C, G, G), size (2, G, G), offset (2, G, G), mask (G, G)) of one scene's objects."""
    heat = np.zeros((n_classes, grid, grid), np.float32)
    size = np.zeros((2, grid, grid), np.float32)
    offset = np.zeros((2, grid, grid), np.float32)
    mask = np.zeros((grid, grid), np.float32)
    ys, xs = np.mgrid[0:grid, 0:grid].astype(np.float32)
    for (x0, y0, x1, y1), cls, ignore in objects:
        if ignore:
            continue
        cx, cy = (x0 + x1) / 2 * grid, (y0 + y1) / 2 * grid
        bw, bh = max((x1 - x0) * grid, 1e-2), max((y1 - y0) * grid, 1e-2)
        ix, iy = min(grid - 1, int(cx)), min(grid - 1, int(cy))
        sx, sy = max(0.5, bw / 6), max(0.5, bh / 6)
        g = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
        heat[cls] = np.maximum(heat[cls], g)
        heat[cls, iy, ix] = 1.0
        size[:, iy, ix] = np.log([bw, bh])
        offset[:, iy, ix] = (cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return heat, size, offset, mask


def flip_objects(objects: Sequence[SquareObject]) -> list[SquareObject]:
    """Objects of the horizontally flipped square."""
    return [((1 - b[2], b[1], 1 - b[0], b[3]), cls, ignore) for b, cls, ignore in objects]


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed and divided by the number of centres."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * neg
    n = pos.sum().clamp_min(1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def head_loss(head: DetectionHead, fine: torch.Tensor, coarse: torch.Tensor, heat: torch.Tensor, size: torch.Tensor,
              offset: torch.Tensor, mask: torch.Tensor, cfg: HeadTrainConfig) -> torch.Tensor:
    """Total loss of a batch (see the module docstring)."""
    p_heat, p_size, p_offset = head(fine, coarse)
    m = mask[:, None]
    n = mask.sum().clamp_min(1.0)
    size_l = (torch.abs(p_size - size) * m).sum() / n
    off_l = (torch.abs(p_offset - offset) * m).sum() / n
    return focal_loss(p_heat, heat) + cfg.size_weight * size_l + cfg.offset_weight * off_l


def train_head(head: DetectionHead, fine: np.ndarray, coarse: np.ndarray, objects: Sequence[Sequence[SquareObject]],
               cfg: HeadTrainConfig, start_epoch: int = 0, optimizer_state: dict | None = None,
               on_epoch: Callable[[int, float, torch.optim.Optimizer], bool] | None = None,
               progress: Callable[[int], None] | None = None) -> None:
    """Train ``head`` in place on cached features ((N, 112, G, G) and (N, 320, G/2, G/2), fp16 is fine).

    ``on_epoch(epoch, mean loss, optimizer)`` runs after each epoch (validation, checkpoint); returning False stops.
    ``progress(batches)`` is called after each batch. The learning rate follows a cosine over ``cfg.epochs``.
    """
    n, grid = len(fine), fine.shape[-1]
    n_classes = len(head.config.slots)
    targets = [make_targets(o, n_classes, grid) for o in objects]
    flipped = [make_targets(flip_objects(o), n_classes, grid) for o in objects] if cfg.flip else None
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    if optimizer_state:
        opt.load_state_dict(optimizer_state)
    steps_per_epoch = max(1, (n + cfg.batch_size - 1) // cfg.batch_size)
    total = max(1, cfg.epochs * steps_per_epoch)
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)
        order = rng.permutation(n)
        head.train()
        losses = []
        for b in range(0, n, cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            flip = rng.random(len(idx)) < 0.5 if cfg.flip else np.zeros(len(idx), bool)
            f = torch.from_numpy(fine[idx].astype(np.float32))
            c = torch.from_numpy(coarse[idx].astype(np.float32))
            if flip.any():
                sel = torch.from_numpy(flip)
                f[sel] = f[sel].flip(-1)
                c[sel] = c[sel].flip(-1)
            t = [(flipped if fl else targets)[i] for i, fl in zip(idx, flip, strict=True)]  # type: ignore[index]
            heat, size, offset, mask = (torch.from_numpy(np.stack([x[j] for x in t])) for j in range(4))
            loss = head_loss(head, f, c, heat, size, offset, mask, cfg)
            for group in opt.param_groups:  # cosine from cfg.lr to 0 over every step of cfg.epochs
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total)))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(head.parameters(), 10.0)
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            if progress:
                progress(1)
        head.eval()
        if on_epoch is not None and on_epoch(epoch, float(np.mean(losses)), opt) is False:
            break


def predict(head: DetectionHead, fine: np.ndarray, coarse: np.ndarray, threshold: float = 0.01,
            batch_size: int = 64) -> list[list[tuple[tuple[float, float, float, float], int, float]]]:
    """Decoded detections (boxes relative to the square) of cached features."""
    out = []
    head.eval()
    with torch.inference_mode():
        for b in range(0, len(fine), batch_size):
            heat, size, offset = head(torch.from_numpy(fine[b:b + batch_size].astype(np.float32)),
                                      torch.from_numpy(coarse[b:b + batch_size].astype(np.float32)))
            out += decode(heat, size, offset, threshold)
    return out


# ---- metric ------------------------------------------------------------------------------------------------------

def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (all-point interpolation, as PASCAL VOC 2010+ and COCO per IoU)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def detection_metrics(predictions: Sequence[Sequence[tuple[Sequence[float], int, float]]],
                      truths: Sequence[Sequence[SquareObject]], slots: Sequence[str], iou: float = 0.5,
                      served_threshold: float = 0.3) -> dict[str, dict[str, float]]:
    """AP@iou and recall@iou (at ``served_threshold``) per slot, plus "all" (the mean AP over slots with objects,
    and recall over every object).

    A prediction is a true positive when it overlaps an unmatched object of its slot by >= iou (greedy, best score
    first); one matching an ignored object is left out; otherwise it is a false positive.
    """
    out: dict[str, dict[str, float]] = {}
    all_hits = all_total = 0
    for cls, slot in enumerate(slots):
        scored: list[tuple[float, bool]] = []
        n_true = 0
        served_hits = 0
        for preds, objs in zip(predictions, truths, strict=True):
            gts = [(b, ig) for b, c, ig in objs if c == cls]
            n_true += sum(1 for _, ig in gts if not ig)
            used = [False] * len(gts)
            for box, _, score in sorted((p for p in preds if p[1] == cls), key=lambda p: -p[2]):
                best, best_j = 0.0, -1
                for j, (g, _) in enumerate(gts):
                    v = box_iou(tuple(box), g)  # type: ignore[arg-type]
                    if v > best and not used[j]:
                        best, best_j = v, j
                if best >= iou:
                    used[best_j] = True
                    if gts[best_j][1]:
                        continue  # an ignored object: neither hit nor false alarm
                    scored.append((score, True))
                    served_hits += score >= served_threshold
                else:
                    scored.append((score, False))
        if n_true == 0:
            continue
        scored.sort(key=lambda s: -s[0])
        tp = np.cumsum([s[1] for s in scored]) if scored else np.zeros(0)
        fp = np.cumsum([not s[1] for s in scored]) if scored else np.zeros(0)
        rec = tp / n_true
        prec = tp / np.maximum(tp + fp, 1)
        out[slot] = {"AP@0.5": average_precision(rec, prec), "recall@0.5": served_hits / n_true,
                     "objects": n_true}
        all_hits += served_hits
        all_total += n_true
    if out:
        out["all"] = {"AP@0.5": float(np.mean([v["AP@0.5"] for v in out.values()])),
                      "recall@0.5": all_hits / max(1, all_total), "objects": all_total}
    return out
