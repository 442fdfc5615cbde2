"""SYNTHETIC multi-garment scenes with boxes (indexer/datasets/scenes.py): reproducible, boxes where the products
are, occlusion reflected in the visible boxes, one split's products only."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image, ImageDraw

from indexer.datasets.scenes import SceneConfig, SceneProduct, SceneSynthesizer, synthesize_scene
from indexer.datasets.synthetic import difference, view_rng
from indexer.settings import DEMO_CATALOG_CSV

SLOTS = {"Topwear": "topwear", "Bottomwear": "bottomwear", "Shoes": "footwear", "Bags": "bag", "Watches": "accessory"}


def _product(colour: tuple[int, int, int], size: tuple[int, int] = (60, 80)) -> Image.Image:
    """A flat-coloured block on white: its pixels are easy to find in a scene."""
    img = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(img).rectangle((8, 8, size[0] - 9, size[1] - 9), fill=colour)
    return img


@pytest.fixture(scope="module")
def demo_products():
    with DEMO_CATALOG_CSV.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["sub_category"] in SLOTS][:120]
    products = [SceneProduct(r["id"], SLOTS[r["sub_category"]]) for r in rows]
    paths = {r["id"]: DEMO_CATALOG_CSV.parent / r["image"] for r in rows}
    return products, lambda key: Image.open(paths[key])


def test_scenes_are_reproducible_and_differ_by_number_and_split(demo_products):
    products, load = demo_products
    train = SceneSynthesizer(products, load, seed=3, split="train")
    a, b = train.scene(7), train.scene(7)
    assert a.image.size == b.image.size and difference(a.image, b.image) == 0.0
    assert [o.as_dict() for o in a.objects] == [o.as_dict() for o in b.objects]
    assert train.scene(8).objects != a.objects or train.scene(8).image.size != a.image.size
    other = SceneSynthesizer(products, load, seed=3, split="test").scene(7)
    assert other.image.size != a.image.size or difference(other.image, a.image) > 1.0


def test_scene_sizes_counts_and_boxes_stay_in_range(demo_products):
    products, load = demo_products
    cfg = SceneConfig()
    synth = SceneSynthesizer(products, load, seed=0, split="train", cfg=cfg)
    slots_seen, counts = set(), []
    for n in range(40):
        scene = synth.scene(n)
        assert cfg.min_size <= max(scene.image.size) <= cfg.max_size
        assert 1 <= len(scene.objects) <= cfg.max_products
        counts.append(len(scene.objects))
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
            f0, g0, f1, g1 = obj.full_box
            assert f0 <= x0 + 1e-9 and g0 <= y0 + 1e-9 and x1 <= f1 + 1e-9 and y1 <= g1 + 1e-9  # visible in full
            assert 0.0 < obj.visible <= 1.0
            assert obj.key in {p.key for p in products}
            slots_seen.add(obj.slot)
    assert max(counts) >= 3 and min(counts) <= 2
    assert {"topwear", "bottomwear", "footwear"} <= slots_seen


def test_boxes_are_where_the_products_are_and_occlusion_shrinks_the_visible_box():
    red, blue = SceneProduct("red", "topwear"), SceneProduct("blue", "bag")
    cfg = SceneConfig(min_size=300, max_size=300, p_clutter=0.0, max_outside=0.0,
                      damage=SceneConfig().damage.__class__(max_rotation_deg=0.0, max_perspective=0.0, p_blur=0.0,
                                                            max_noise=0.0, p_low_res=0.0, max_light=0.0,
                                                            max_colour_shift=0.0, p_shadow=0.0,
                                                            min_jpeg_quality=95, max_jpeg_quality=95))
    for seed in range(6):
        scene = synthesize_scene([(red, _product((220, 0, 0))), (blue, _product((0, 0, 220)))],
                                 view_rng(seed, "t", 0), cfg=cfg)
        arr = np.asarray(scene.image, np.int16)
        w, h = scene.image.size
        for obj in scene.objects:
            x0, y0, x1, y1 = (round(obj.box[0] * w), round(obj.box[1] * h), round(obj.box[2] * w),
                              round(obj.box[3] * h))
            target = np.array((220, 0, 0) if obj.key == "red" else (0, 0, 220))
            mine = np.abs(arr - target).sum(axis=2) < 90
            # the box holds all of the product's visible pixels, and they reach its edges (tight)
            assert mine[y0:y1, x0:x1].sum() >= 0.97 * mine.sum(), (seed, obj)
            ys, xs = np.nonzero(mine)
            assert abs(xs.min() - x0) <= 3 and abs(ys.min() - y0) <= 3 and abs(xs.max() + 1 - x1) <= 3
        by_key = {o.key: o for o in scene.objects}
        assert by_key["blue"].visible == pytest.approx(1.0)  # pasted last: nothing covers it
        if "red" in by_key and by_key["red"].visible < 0.999:
            fx = by_key["red"].full_box
            vx = by_key["red"].box
            assert (vx[2] - vx[0]) * (vx[3] - vx[1]) <= (fx[2] - fx[0]) * (fx[3] - fx[1]) + 1e-9


def test_describe_says_synthetic(demo_products):
    products, load = demo_products
    info = SceneSynthesizer(products, load, seed=1).describe()
    assert info["synthetic"] is True and info["split"] == "train" and info["products"] == len(products)
    with pytest.raises(ValueError):
        SceneSynthesizer([], load)
