"""Query-time localisation for street photos: which parts of a photo to search, and how to merge the answers.

A shopper's photo often shows a whole person in a street; the garment they mean is a small part of it, while
catalog photos show one product on white. Without a garment detector (none ships offline), a query searches
the whole photo plus a few crops at fixed scales and positions plus one crop around where the network's
activations say the catalog-like content is, and merges the results by best evidence: an item's score is its
best similarity to any region. Searching the whole photo is always one of the regions, so an item that matches
the whole photo keeps its score. A detector can be plugged in (``load_detector``) by users who have weights;
its boxes are searched as extra regions. The built-in detector (``engine.models.detector``, web.detector =
"builtin") replaces the grid when it finds garments: each garment is searched on its own and the one the shopper
most likely means (``shopper_focus``) gives the default answer.

Pure logic (region proposal, map -> box, merging) works on plain numbers and arrays; ``FeatureProbe`` is the
only part that touches torch: it captures the last spatial feature map of a forward pass through a hook.
"""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from torch import nn

Box = tuple[float, float, float, float]
WHOLE: Box = (0.0, 0.0, 1.0, 1.0)
# Regions whose area is at least this share of the photo add nothing over the whole photo.
NEAR_WHOLE_AREA = 0.85


@dataclass(frozen=True)
class Region:
    """A part of the query photo to search.

    Attributes:
        box: (x0, y0, x1, y1) relative to the photo, 0..1.
        source: "whole", "user" (a client's crop box), "grid", "centre", "activation", "saliency" or "detector".
        label: The detector's class label, if any.
        confidence: The detector's confidence, if any.
    """

    box: Box
    source: str
    label: str = ""
    confidence: float | None = None

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


@dataclass(frozen=True)
class Detection:
    """One box from a garment detector, in relative coordinates (0..1)."""

    box: Box
    label: str
    score: float


@runtime_checkable
class Detector(Protocol):
    """What a pluggable garment detector provides (e.g. a wrapper around a DeepFashion2-trained model)."""

    def detect(self, image: Image.Image) -> list[Detection]:
        """Garment boxes found in an RGB image, best first."""
        ...


class LocalizeError(ValueError):
    """A detector spec that cannot be loaded; the message names the config key."""


def load_detector(spec: str) -> Detector | None:
    """Load a detector from "package.module:factory" (web.detector); "" means none.

    The factory is called with no arguments and must return an object with ``detect(image)``.

    Raises:
        LocalizeError: the module or attribute does not exist, or the object has no ``detect`` method.
    """
    if not spec:
        return None
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise LocalizeError(f"web.detector must look like 'package.module:factory', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise LocalizeError(f"web.detector {spec!r} cannot be loaded: {exc}") from exc
    is_factory = isinstance(factory, type) or (callable(factory) and not isinstance(factory, Detector))
    detector = factory() if is_factory else factory
    if not isinstance(detector, Detector):
        raise LocalizeError(f"web.detector {spec!r} gave {type(detector).__name__}, which has no detect(image)")
    return detector


def grid_regions(scale: float = 0.6, steps: int = 2, centre_scales: Sequence[float] = (0.6,)) -> list[Region]:
    """Crops of side ``scale`` (relative) at ``steps`` x ``steps`` positions, plus centred crops.

    With the defaults: four overlapping corner crops of 60% of each side and one centred crop of 60%.
    """
    if not 0.0 < scale < 1.0 or steps < 1:
        raise ValueError(f"need 0 < scale < 1 and steps >= 1, got {scale}, {steps}")
    positions = [0.0] if steps == 1 else [i * (1.0 - scale) / (steps - 1) for i in range(steps)]
    out = [Region((x, y, x + scale, y + scale), "grid") for y in positions for x in positions]
    for s in centre_scales:
        lo = (1.0 - s) / 2
        out.append(Region((lo, lo, lo + s, lo + s), "centre"))
    return [Region(tuple(round(v, 6) for v in r.box), r.source) for r in out]  # type: ignore[misc]


def letterbox_content(width: int, height: int) -> Box:
    """Where a width x height photo lies inside its letterboxed square, relative to the square."""
    side = max(width, height)
    w, h = width / side, height / side
    return ((1 - w) / 2, (1 - h) / 2, (1 - w) / 2 + w, (1 - h) / 2 + h)


def activation_map(features: np.ndarray, direction: np.ndarray | None = None) -> np.ndarray:
    """(C, H, W) features -> (H, W) map of where the evidence is.

    With ``direction`` (a C-vector such as the mean catalog embedding), each cell's map value is its
    contribution to the similarity with that direction (negative contributions count as none): the cells
    that look like catalog products light up, street clutter does not. Without it, the mean non-negative
    activation over channels.
    """
    if features.ndim != 3:
        raise ValueError(f"expected (C, H, W) features, got shape {features.shape}")
    f = np.maximum(features.astype(np.float32, copy=False), 0.0)
    if direction is not None and direction.shape == (f.shape[0],):
        return np.maximum(np.tensordot(direction.astype(np.float32), f, axes=(0, 0)), 0.0)
    return f.mean(axis=0)


def box_from_map(amap: np.ndarray, content: Box = WHOLE, keep: float = 0.5, margin: float = 0.5) -> Box | None:
    """Box around the strongest blob of an activation map, relative to the photo.

    The map covers the letterboxed square; ``content`` says where the photo lies in it. Cells at or above
    ``keep`` of the map's range form a mask; the 4-connected component holding the peak is boxed, widened by
    ``margin`` cells, clipped to the photo. Returns None when the map is flat or the box is nearly the whole photo.
    """
    if amap.ndim != 2 or amap.size == 0 or not np.isfinite(amap).all():
        return None
    lo, hi = float(amap.min()), float(amap.max())
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        return None
    norm = (amap - lo) / (hi - lo)
    rows, cols = _component(norm >= keep, np.unravel_index(int(np.argmax(norm)), norm.shape))
    gh, gw = amap.shape
    sx0, sx1 = (min(cols) - margin) / gw, (max(cols) + 1 + margin) / gw
    sy0, sy1 = (min(rows) - margin) / gh, (max(rows) + 1 + margin) / gh
    cx0, cy0, cx1, cy1 = content
    cw, ch = cx1 - cx0, cy1 - cy0
    box = (
        float(np.clip((sx0 - cx0) / cw, 0, 1)), float(np.clip((sy0 - cy0) / ch, 0, 1)),
        float(np.clip((sx1 - cx0) / cw, 0, 1)), float(np.clip((sy1 - cy0) / ch, 0, 1)),
    )
    region = Region(box, "activation")
    if box[2] <= box[0] or box[3] <= box[1] or region.area >= NEAR_WHOLE_AREA:
        return None
    return tuple(round(v, 6) for v in box)  # type: ignore[return-value]


def _component(mask: np.ndarray, seed: tuple[int, int]) -> tuple[list[int], list[int]]:
    """Rows and columns of the 4-connected True component of a small mask that holds seed."""
    seen = {seed}
    stack = [seed]
    while stack:
        r, c = stack.pop()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < mask.shape[0] and 0 <= nc < mask.shape[1] and mask[nr, nc] and (nr, nc) not in seen:
                seen.add((nr, nc))
                stack.append((nr, nc))
    return [r for r, _ in seen], [c for _, c in seen]


def looks_like_product_shot(image: Image.Image, border: float = 0.04, tolerance: int = 24,
                            share: float = 0.6) -> bool:
    """True when the photo's border is one plain light colour, as catalog photos on white are.

    Such photos show one product and need no localisation; street photos have busy borders. Products often
    touch the frame, so 60% of the border suffices (99% of catalog photos pass, 3% of synthetic street photos).
    """
    small = image.convert("RGB")
    small.thumbnail((96, 96))
    a = np.asarray(small, dtype=np.int16)
    h, w = a.shape[:2]
    b = max(1, int(round(min(h, w) * border)))
    if h <= 2 * b or w <= 2 * b:
        return False
    edge = np.concatenate([a[:b].reshape(-1, 3), a[-b:].reshape(-1, 3), a[:, :b].reshape(-1, 3),
                           a[:, -b:].reshape(-1, 3)])
    ref = np.median(edge, axis=0)
    close = (np.abs(edge - ref).max(axis=1) <= tolerance).mean()
    return bool(close >= share and ref.mean() >= 180)


def merge_best_evidence(per_region: Sequence[Sequence[tuple[int, float]]]) -> list[tuple[int, float, int]]:
    """Merge ranked (id, score) lists of several regions: each id keeps its best score and that region's index.

    Returns (id, score, region index) sorted by score (descending), ties by id.
    """
    best: dict[int, tuple[float, int]] = {}
    for region_index, hits in enumerate(per_region):
        for item_id, score in hits:
            current = best.get(item_id)
            if current is None or score > current[0]:
                best[item_id] = (score, region_index)
    return sorted(((i, s, r) for i, (s, r) in best.items()), key=lambda t: (-t[1], t[0]))


def shopper_focus(box: Box, best_score: float) -> float:
    """How likely a detected garment is the one the shopper means: centrality ** 4 x its best match's similarity.

    Centrality is 1 at the photo's centre and falls linearly to 0.5 at a corner: shoppers frame what they want in
    the middle. Among garments about as central, the one whose best catalog match is closer wins (something the
    detector took for a garment but the catalog does not hold matches nothing well). Chosen on val products
    (SYNTHETIC hard street photos, 300 per model, served model and street encoder): the chosen garment's own
    recall@1 0.573 against 0.490 for the earlier confidence x sqrt(area) x centrality; neither the detector's
    confidence nor the box's area helped once centrality weighed this much.
    """
    x0, y0, x1, y1 = box
    dist = float(np.hypot((x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5)) / float(np.hypot(0.5, 0.5))
    return (1.0 - 0.5 * min(1.0, dist)) ** 4 * max(0.0, float(best_score))


def pad_box(box: Box, share: float = 0.08) -> Box:
    """A box grown by ``share`` of its width / height on each side, clipped to the photo (catalog photos show a
    margin around the product; tight detector boxes cut it off)."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * share, (y1 - y0) * share
    return (max(0.0, x0 - dx), max(0.0, y0 - dy), min(1.0, x1 + dx), min(1.0, y1 + dy))


def drop_near_duplicates(regions: Sequence[Region], iou_limit: float = 0.8) -> list[Region]:
    """Regions in order, leaving out any that overlap an earlier one by IoU >= iou_limit."""
    kept: list[Region] = []
    for r in regions:
        if all(box_iou(r.box, k.box) < iou_limit for k in kept):
            kept.append(r)
    return kept


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two relative boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = Region(a, "").area + Region(b, "").area - inter
    return inter / union if union > 0 else 0.0


# ---- torch: the last spatial feature map of a forward pass ----------------------------------------------------

_LAYER_CACHE: weakref.WeakKeyDictionary[nn.Module, str | None] = weakref.WeakKeyDictionary()


def find_feature_layer(module: nn.Module, input_size: int, device: torch.device | str = "cpu") -> str | None:
    """Name of the last submodule (in call order) whose output is an (N, C, H, W) map with H, W > 1.

    Found once per module with a dummy forward pass and cached. None for models without spatial maps (ViTs).
    """
    if module in _LAYER_CACHE:
        return _LAYER_CACHE[module]
    last: list[str] = []
    handles = []

    def make_hook(name: str) -> Callable:
        def hook(_m: nn.Module, _inp: object, out: object) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[2] > 1 and out.shape[3] > 1:
                last.append(name)
        return hook

    for name, sub in module.named_modules():
        if name:
            handles.append(sub.register_forward_hook(make_hook(name)))
    was_training = module.training
    try:
        module.eval()
        with torch.inference_mode():
            module(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    found = last[-1] if last else None
    _LAYER_CACHE[module] = found
    return found


class FeatureProbe:
    """Captures the output of one named submodule during forward passes (``with probe.capture(): ...``)."""

    def __init__(self, module: nn.Module, layer: str) -> None:
        self.module = module
        self.layer = dict(module.named_modules())[layer]
        self.output: torch.Tensor | None = None

    @contextmanager
    def capture(self) -> Iterator[FeatureProbe]:
        def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
            self.output = out.detach()

        self.output = None
        handle = self.layer.register_forward_hook(hook)
        try:
            yield self
        finally:
            handle.remove()

    def features(self, index: int = 0) -> np.ndarray | None:
        """(C, H, W) float32 features of one image of the last captured batch."""
        if self.output is None or self.output.ndim != 4:
            return None
        return self.output[index].float().cpu().numpy()
