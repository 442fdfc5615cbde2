"""SYNTHETIC multi-garment scenes with boxes: the training and test data of a garment detector (issue 16).

The catalog has product shots only, so scenes are made from them: 1-5 products per scene, either a person's look
(a top above a bottom above shoes, a bag or accessory beside them) or scattered at random, each 10-80% of the
frame, anywhere including partly out of frame, overlapping and occluding each other, on the varied backgrounds of
``indexer.datasets.synthetic``, then re-lit and degraded like its street photos (stronger ranges allowed), at
224-416 px. Every product's box is recorded twice: ``box``, the tight box of its *visible* pixels (what a detector
should find), and ``full_box``, where the whole product would lie (clipped to the frame), with the visible share
of its pixels and its slot label.

Every choice comes from a numpy Generator seeded by (seed, split, scene number), so a scene is reproducible on its
own, in any order, in any process. Scenes of a split use only that split's products (``indexer.catalog.splits``),
so no pixel of a test product reaches training. Everything made here is SYNTHETIC and reported as such.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from indexer.datasets.synthetic import (
    SyntheticConfig,
    background,
    degrade,
    draw_clutter,
    product_mask,
    relight,
    view_rng,
    warp_product,
)

# Bumped whenever the drawing code changes what a (seed, split, scene) produces; part of cache keys.
SCENES_VERSION = 1
# Where each slot of a look sits: (centre x, centre y) as fractions of the frame, before jitter.
# Slot names are those of config.toml [outfit] slots; a look has either topwear + bottomwear or a one_piece.
LOOK_LAYOUT = {"topwear": (0.5, 0.3), "bottomwear": (0.5, 0.62), "one_piece": (0.5, 0.45), "footwear": (0.5, 0.9),
               "accessory": (0.82, 0.35), "bag": (0.18, 0.6)}
LOOK_CORE = ("topwear", "bottomwear", "footwear")
# Photometric damage of scenes: the street photos' knobs, with stronger light and colour ranges.
SCENE_DAMAGE = SyntheticConfig(max_rotation_deg=20.0, max_perspective=0.12, max_colour_shift=0.12, max_light=0.3,
                               p_blur=0.4, max_blur=1.6, max_noise=8.0, p_low_res=0.3, min_low_res=0.5,
                               min_jpeg_quality=25, max_jpeg_quality=90)


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn. Extents are a product's longer side as a fraction of the frame's shorter side."""

    min_size: int = 224
    max_size: int = 416
    min_products: int = 1
    max_products: int = 5
    min_extent: float = 0.10
    max_extent: float = 0.80
    p_look: float = 0.6
    max_outside: float = 0.4
    p_clutter: float = 0.5
    damage: SyntheticConfig = field(default_factory=lambda: SCENE_DAMAGE)

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters plus the generator version (for manifests and cache keys)."""
        return {**asdict(self), "version": SCENES_VERSION, "synthetic": True}


@dataclass(frozen=True)
class SceneProduct:
    """A catalog product that may appear in scenes."""

    key: str
    slot: str


@dataclass(frozen=True)
class SceneObject:
    """One product in a scene. Boxes are relative (x0, y0, x1, y1) in 0..1 of the scene's width and height."""

    key: str
    slot: str
    box: tuple[float, float, float, float]
    full_box: tuple[float, float, float, float]
    visible: float

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "slot": self.slot, "box": [round(v, 5) for v in self.box],
                "full_box": [round(v, 5) for v in self.full_box], "visible": round(self.visible, 4)}


@dataclass
class Scene:
    """A SYNTHETIC scene and its objects, back to front (later objects may occlude earlier ones)."""

    image: Image.Image
    objects: list[SceneObject]


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion (a pixel stays when it and its 8 neighbours are set)."""
    out = mask.copy()
    padded = np.pad(mask, 1)
    h, w = mask.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out &= padded[dy:dy + h, dx:dx + w]
    return out


def _pick_products(rng: np.random.Generator, pool: Sequence[SceneProduct], by_slot: Mapping[str, list[int]],
                   cfg: SceneConfig) -> tuple[list[SceneProduct], bool]:
    """The scene's products and whether they form a look (one product per look slot, in layout order)."""
    if rng.random() < cfg.p_look:
        slots = [s for s in LOOK_LAYOUT if by_slot.get(s)]
        dress = "one_piece" in slots and rng.random() < 0.3
        slots = [s for s in slots if s not in (("topwear", "bottomwear") if dress else ("one_piece",))]
        wanted = [s for s in slots if s in LOOK_CORE or s == "one_piece" or rng.random() < 0.5]
        wanted = [s for s in wanted if rng.random() < 0.85] or slots[:1]
        wanted = wanted[:cfg.max_products]
        if wanted:
            return [pool[by_slot[s][int(rng.integers(len(by_slot[s])))]] for s in wanted], True
    n = int(rng.integers(cfg.min_products, cfg.max_products + 1))
    return [pool[int(i)] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)], False


def synthesize_scene(products: Sequence[tuple[SceneProduct, Image.Image]], rng: np.random.Generator,
                     look: bool = False, cfg: SceneConfig = SceneConfig()) -> Scene:
    """Compose one scene of ``products`` (back to front) and record where each one is and how much shows.

    Args:
        products: (product, its catalog photo on white) pairs.
        rng: Source of every random choice.
        look: Lay the products out as a worn look (LOOK_LAYOUT by slot) instead of at random places.
        cfg: Sizes and damage.
    """
    side = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    aspect = float(rng.uniform(0.75, 1.33))
    w, h = (side, max(16, round(side / aspect))) if aspect >= 1 else (max(16, round(side * aspect)), side)
    scene = background(rng, w, h)
    if rng.random() < cfg.p_clutter:
        draw_clutter(rng, scene, int(rng.integers(2, 9)))
    mute = rng.uniform(cfg.damage.min_muting, cfg.damage.max_muting)
    scene = Image.blend(scene, ImageOps.grayscale(scene).convert("RGB"), float(mute))
    owner = np.full((h, w), -1, np.int16)  # which product each pixel shows (the last one pasted there)
    placed: list[tuple[SceneProduct, tuple[int, int, int, int], int]] = []
    short = min(w, h)
    for index, (product, photo) in enumerate(products):
        if look and product.slot in LOOK_LAYOUT:
            extent = rng.uniform(max(cfg.min_extent, 0.2), min(cfg.max_extent, 0.45))
            fx, fy = LOOK_LAYOUT[product.slot]
            cx, cy = (fx + rng.uniform(-0.08, 0.08)) * w, (fy + rng.uniform(-0.06, 0.06)) * h
        else:
            extent = rng.uniform(cfg.min_extent, cfg.max_extent)
            cx, cy = rng.uniform(0, 1) * w, rng.uniform(0, 1) * h
        fit = max(8.0, extent * short)
        rgb, mask = warp_product(rng, photo.convert("RGB"), product_mask(photo), (fit, fit), cfg.damage)
        pw, ph = rgb.size
        # Keep at least (1 - max_outside) of the product inside the frame.
        keep = 1.0 - cfg.max_outside
        cx = float(np.clip(cx, pw * (keep - 0.5), w - pw * (keep - 0.5)))
        cy = float(np.clip(cy, ph * (keep - 0.5), h - ph * (keep - 0.5)))
        x0, y0 = round(cx - pw / 2), round(cy - ph / 2)
        scene.paste(rgb, (x0, y0), mask)
        m = np.asarray(mask) > 127
        fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + pw), min(h, y0 + ph)
        if fx1 > fx0 and fy1 > fy0:
            sub = m[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            owner[fy0:fy1, fx0:fx1][sub] = index
        placed.append((product, (x0, y0, x0 + pw, y0 + ph), int(m.sum())))
    objects = []
    for index, (product, (x0, y0, x1, y1), area) in enumerate(placed):
        shown = owner == index
        visible = int(shown.sum())
        # The box of the visible pixels, ignoring slivers (1-2 px seams along an occluder's soft edge) that would
        # stretch it over the occluder: eroded twice, then grown back by the same 2 px.
        ys, xs = np.nonzero(_erode(_erode(shown)))
        if len(xs) == 0 or area == 0:
            continue
        full = (max(0, x0) / w, max(0, y0) / h, min(w, x1) / w, min(h, y1) / h)
        box = (max(0, xs.min() - 2) / w, max(0, ys.min() - 2) / h, min(w, xs.max() + 3) / w,
               min(h, ys.max() + 3) / h)
        box = (max(box[0], full[0]), max(box[1], full[1]), min(box[2], full[2]), min(box[3], full[3]))
        objects.append(SceneObject(product.key, product.slot, box, full, visible / area))
    scene = relight(rng, scene, cfg.damage)
    return Scene(degrade(rng, scene, cfg.damage), objects)


class SceneSynthesizer:
    """Reproducible SYNTHETIC scenes from one split's products.

    Args:
        products: The products scenes may show (use one split's products only).
        load_image: Loads a product photo by key.
        seed: Global seed; with the split name and scene number it fixes every choice.
        split: Name mixed into the seed ("train", "val", "test"), so splits draw different scenes.
        cfg: Sizes and damage.
    """

    def __init__(self, products: Sequence[SceneProduct], load_image: Callable[[str], Image.Image], seed: int = 0,
                 split: str = "train", cfg: SceneConfig = SceneConfig()) -> None:
        if not products:
            raise ValueError("no products to make scenes from")
        self.products = list(products)
        self.load_image = load_image
        self.seed = seed
        self.split = split
        self.cfg = cfg
        self.by_slot: dict[str, list[int]] = {}
        for i, p in enumerate(self.products):
            self.by_slot.setdefault(p.slot, []).append(i)

    def describe(self) -> dict[str, Any]:
        """Seed, split, pool size and config, for manifests."""
        return {"seed": self.seed, "split": self.split, "products": len(self.products),
                "slots": {s: len(v) for s, v in sorted(self.by_slot.items())}, **self.cfg.describe()}

    def scene(self, number: int) -> Scene:
        """Scene ``number`` of this split (the same pixels and boxes every time)."""
        rng = view_rng(self.seed, f"scene:{self.split}", number)
        picks, look = _pick_products(rng, self.products, self.by_slot, self.cfg)
        return synthesize_scene([(p, self.load_image(p.key)) for p in picks], rng, look, self.cfg)

    def with_config(self, **changes: Any) -> SceneSynthesizer:
        """The same products and seed with other knobs (e.g. a harder test set)."""
        return SceneSynthesizer(self.products, self.load_image, self.seed, self.split, replace(self.cfg, **changes))
