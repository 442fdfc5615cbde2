"""Query-time localisation: region proposals, activation map -> box, merging by best evidence, detectors."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from engine.localize import (
    WHOLE,
    Detection,
    FeatureProbe,
    LocalizeError,
    Region,
    activation_map,
    box_from_map,
    box_iou,
    drop_near_duplicates,
    find_feature_layer,
    grid_regions,
    letterbox_content,
    load_detector,
    looks_like_product_shot,
    merge_best_evidence,
)


def test_grid_regions_cover_corners_and_centre():
    regions = grid_regions(0.6, 2)
    boxes = [r.box for r in regions]
    assert boxes[:4] == [(0.0, 0.0, 0.6, 0.6), (0.4, 0.0, 1.0, 0.6), (0.0, 0.4, 0.6, 1.0), (0.4, 0.4, 1.0, 1.0)]
    assert boxes[4] == (0.2, 0.2, 0.8, 0.8) and regions[4].source == "centre"
    assert all(0 <= v <= 1 for b in boxes for v in b)
    with pytest.raises(ValueError):
        grid_regions(1.2)


def test_letterbox_content():
    assert letterbox_content(100, 100) == (0.0, 0.0, 1.0, 1.0)
    assert letterbox_content(50, 100) == pytest.approx((0.25, 0.0, 0.75, 1.0))
    assert letterbox_content(200, 100) == pytest.approx((0.0, 0.25, 1.0, 0.75))


def test_box_from_map_finds_the_blob():
    amap = np.zeros((7, 7), np.float32)
    amap[1:3, 4:6] = 5.0  # a blob top right
    amap[6, 0] = 2.0  # a weaker, separate spot
    box = box_from_map(amap, WHOLE, keep=0.5, margin=0.0)
    assert box == pytest.approx((4 / 7, 1 / 7, 6 / 7, 3 / 7))
    # Letterboxed portrait photo (content in the middle half horizontally): the box maps into photo coordinates.
    box = box_from_map(amap, (0.25, 0.0, 0.75, 1.0), keep=0.5, margin=0.0)
    assert box == pytest.approx(((4 / 7 - 0.25) / 0.5, 1 / 7, 1.0, 3 / 7))


def test_box_from_map_gives_up_on_flat_or_whole_maps():
    assert box_from_map(np.ones((7, 7))) is None
    assert box_from_map(np.zeros((0, 0))) is None
    assert box_from_map(np.full((3, 3), np.nan)) is None
    everywhere = np.ones((7, 7))
    everywhere[3, 3] = 2
    everywhere[0, 0] = 0
    assert box_from_map(everywhere, keep=0.4) is None  # the blob is the whole photo


def test_activation_map_with_and_without_direction():
    feats = np.zeros((3, 2, 2), np.float32)
    feats[0, 0, 0] = 4.0  # channel 0 fires top-left
    feats[1, 1, 1] = 4.0  # channel 1 fires bottom-right
    feats[2] = -1.0  # negative activations count as none
    np.testing.assert_allclose(activation_map(feats), [[4 / 3, 0], [0, 4 / 3]], rtol=1e-6)
    towards_1 = activation_map(feats, np.array([0.0, 1.0, 0.0], np.float32))
    assert towards_1.tolist() == [[0, 0], [0, 4.0]]
    with pytest.raises(ValueError):
        activation_map(np.zeros((2, 2)))


def test_merge_best_evidence_keeps_each_items_best_region():
    whole = [(1, 0.50), (2, 0.40), (3, 0.30)]
    crop = [(3, 0.90), (4, 0.45), (1, 0.20)]
    merged = merge_best_evidence([whole, crop])
    assert merged == [(3, 0.90, 1), (1, 0.50, 0), (4, 0.45, 1), (2, 0.40, 0)]
    assert merge_best_evidence([]) == [] and merge_best_evidence([[], []]) == []
    assert merge_best_evidence([[(5, 0.5)], [(4, 0.5)]]) == [(4, 0.5, 1), (5, 0.5, 0)]  # ties by id


def test_iou_and_near_duplicates():
    assert box_iou(WHOLE, WHOLE) == 1.0 and box_iou((0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1)) == 0.0
    regions = [Region(WHOLE, "whole"), Region((0, 0, 0.95, 0.95), "detector"), Region((0, 0, 0.5, 0.5), "grid")]
    assert [r.source for r in drop_near_duplicates(regions)] == ["whole", "grid"]


def test_product_shot_detection():
    shot = Image.new("RGB", (60, 80), "white")
    shot.paste((20, 40, 160), (10, 5, 50, 80))  # a garment touching the bottom edge
    assert looks_like_product_shot(shot)
    rng = np.random.default_rng(0)
    street = Image.fromarray(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8))
    assert not looks_like_product_shot(street)
    assert not looks_like_product_shot(Image.new("RGB", (1, 1), "white"))
    assert not looks_like_product_shot(Image.new("RGB", (200, 200), (20, 20, 20)))  # plain but dark


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv2(torch.relu(self.conv1(x))).mean(dim=(2, 3)))


def test_find_feature_layer_and_probe():
    net = TinyNet().eval()
    assert find_feature_layer(net, 32) == "conv2"
    probe = FeatureProbe(net, "conv2")
    with probe.capture():
        with torch.inference_mode():
            net(torch.zeros(2, 3, 32, 32))
    assert probe.features(1).shape == (8, 8, 8)
    # The hook is removed after the block.
    probe.output = None
    net(torch.zeros(1, 3, 32, 32))
    assert probe.output is None and probe.features() is None
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    assert find_feature_layer(flat, 8) is None


def test_load_detector(monkeypatch):
    assert load_detector("") is None
    module = types.ModuleType("fake_detector_mod")

    class Fake:
        def detect(self, image):
            return [Detection((0.1, 0.2, 0.5, 0.9), "shirt", 0.8)]

    module.make = Fake
    module.not_a_detector = lambda: 42
    monkeypatch.setitem(sys.modules, "fake_detector_mod", module)
    det = load_detector("fake_detector_mod:make")
    assert det.detect(Image.new("RGB", (4, 4)))[0].label == "shirt"
    for bad, words in (("nocolon", "must look like"), ("no_such_module_xyz:f", "cannot be loaded"),
                       ("fake_detector_mod:missing", "cannot be loaded"), ("fake_detector_mod:not_a_detector",
                                                                             "no detect")):
        with pytest.raises(LocalizeError, match=words):
            load_detector(bad)
