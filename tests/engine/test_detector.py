"""The built-in garment detector (engine/models/detector.py, engine/train/detector.py): box decoding, targets and
flips, the head's training loop, AP@0.5, and the checkpoint keyed to the image model's fingerprint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.localize import Detection, pad_box, shopper_focus
from engine.models.detector import (
    DetectionHead,
    DetectorConfig,
    DetectorError,
    GarmentDetector,
    builtin_detector,
    decode,
    detector_checkpoint_path,
    load_detector_head,
    photo_to_square,
    save_detector,
    square_to_photo,
)
from engine.models.detector_setup import resolve_detector
from engine.train.detector import (
    HeadTrainConfig,
    average_precision,
    detection_metrics,
    flip_objects,
    make_targets,
    predict,
    train_head,
)

SLOTS = ("topwear", "bottomwear", "footwear")


def _outputs_for(objects, grid: int = 16):
    """Head outputs that encode exactly ``objects`` (perfect logits from the targets)."""
    heat, size, offset, _ = make_targets(objects, len(SLOTS), grid)
    logits = np.where(heat >= 1.0, 6.0, -6.0).astype(np.float32)
    return (torch.from_numpy(logits)[None], torch.from_numpy(size)[None], torch.from_numpy(offset)[None])


def test_decode_inverts_the_targets():
    objects = [((0.1, 0.2, 0.5, 0.6), 0, False), ((0.55, 0.7, 0.95, 0.98), 2, False)]
    found = decode(*_outputs_for(objects), threshold=0.5)[0]
    assert sorted(cls for _, cls, _ in found) == [0, 2]
    for box, cls, score in found:
        want = next(b for b, c, _ in objects if c == cls)
        assert np.allclose(box, want, atol=1e-4) and score > 0.99


def test_ignored_objects_are_not_targets_and_flips_mirror_boxes():
    heat, _, _, mask = make_targets([((0.1, 0.1, 0.2, 0.2), 1, True)], len(SLOTS), 8)
    assert heat.max() == 0 and mask.sum() == 0
    assert flip_objects([((0.1, 0.2, 0.3, 0.4), 1, False)]) == [((0.7, 0.2, 0.9, 0.4), 1, False)]


def test_boxes_map_between_photo_and_letterboxed_square():
    box = (0.1, 0.2, 0.6, 0.9)
    for w, h in ((300, 200), (200, 300), (256, 256)):
        back = square_to_photo(photo_to_square(box, w, h), w, h)
        assert np.allclose(back, box, atol=1e-5)
    assert square_to_photo((0.0, 0.0, 1.0, 0.1), 300, 150) is None  # entirely in the letterbox padding


def test_average_precision_and_detection_metrics():
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    truths = [[((0.1, 0.1, 0.5, 0.5), 0, False), ((0.6, 0.6, 0.9, 0.9), 1, False), ((0.0, 0.0, 0.05, 0.05), 0, True)]]
    perfect = [[((0.1, 0.1, 0.5, 0.5), 0, 0.9), ((0.6, 0.6, 0.9, 0.9), 1, 0.8), ((0.0, 0.0, 0.05, 0.05), 0, 0.95)]]
    m = detection_metrics(perfect, truths, SLOTS)
    assert m["all"]["AP@0.5"] == pytest.approx(1.0) and m["all"]["recall@0.5"] == 1.0  # the ignored one costs nothing
    assert m["topwear"]["objects"] == 1 and "footwear" not in m
    # A confident false alarm ranked above the right box halves topwear's precision at full recall.
    noisy = [[((0.7, 0.0, 0.9, 0.2), 0, 0.99), *perfect[0]]]
    m2 = detection_metrics(noisy, truths, SLOTS)
    assert m2["topwear"]["AP@0.5"] == pytest.approx(0.5) and m2["bottomwear"]["AP@0.5"] == pytest.approx(1.0)
    # Below the served threshold an object is found for AP but not for served recall.
    m3 = detection_metrics([[((0.1, 0.1, 0.5, 0.5), 0, 0.1)]], [truths[0][:1]], SLOTS, served_threshold=0.3)
    assert m3["topwear"]["AP@0.5"] == pytest.approx(1.0) and m3["topwear"]["recall@0.5"] == 0.0


def test_head_learns_planted_boxes():
    """Features that mark where a 'garment' is (a channel bump) -> the head learns to find it."""
    rng = np.random.default_rng(0)
    n, grid = 96, 8
    fine = rng.normal(0, 0.1, (n, 112, grid, grid)).astype(np.float16)
    coarse = rng.normal(0, 0.1, (n, 320, grid // 2, grid // 2)).astype(np.float16)
    objects = []
    for i in range(n):
        cls = i % 2
        x, y = rng.integers(1, grid - 3, 2)
        fine[i, cls, y:y + 2, x:x + 2] += 4.0
        objects.append([((x / grid, y / grid, (x + 2) / grid, (y + 2) / grid), cls, False)])
    torch.manual_seed(0)
    head = DetectionHead(DetectorConfig(SLOTS[:2], 128, 16))
    head.set_normalisation(fine, coarse)
    losses = []
    train_head(head, fine, coarse, objects, HeadTrainConfig(epochs=25, batch_size=16, lr=1e-2, flip=True),
               on_epoch=lambda e, loss, opt: losses.append(loss) or True)
    assert losses[-1] < losses[0] * 0.5
    ap = detection_metrics(predict(head, fine, coarse), objects, SLOTS[:2])["all"]["AP@0.5"]
    assert ap > 0.8, ap


def test_checkpoint_is_keyed_to_the_image_fingerprint(tmp_path):
    head = DetectionHead(DetectorConfig(SLOTS, 128, 8))
    path = detector_checkpoint_path(tmp_path / "detector", "abc123")
    assert path == tmp_path / "detector" / "abc123.pt"
    manifest = save_detector(path, head, {"image_fingerprint": "abc123", "synthetic": True})
    assert manifest["meta"]["config"]["slots"] == list(SLOTS)
    loaded, meta = load_detector_head(path, "abc123")
    assert loaded.config == head.config and meta["sha256"] == manifest["sha256"]
    with pytest.raises(DetectorError, match="image model abc123, but the served image model is def456; run"):
        load_detector_head(path, "def456")
    with pytest.raises(DetectorError, match="no garment detector"):
        load_detector_head(tmp_path / "nope.pt")
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(DetectorError, match="sha256"):
        load_detector_head(path, "abc123")
    with pytest.raises(ValueError, match="fingerprint"):
        save_detector(tmp_path / "x.pt", head, {})


def test_builtin_detector_over_a_real_trunk(tmp_path, small_embedder):
    """Built for the embedder's fingerprint it runs end to end; for any other it is refused with the reason."""
    folder = tmp_path / "detector"
    head = DetectionHead(DetectorConfig(SLOTS, 128, 8))
    save_detector(detector_checkpoint_path(folder, small_embedder.fingerprint), head,
                  {"image_fingerprint": small_embedder.fingerprint})
    detector, why = resolve_detector("builtin", small_embedder, folder, threshold=0.0)
    assert why == "" and isinstance(detector, GarmentDetector)
    photo = Image.new("RGB", (200, 120), (200, 60, 60))
    found = detector.detect(photo)
    assert found and all(isinstance(d, Detection) and d.label in SLOTS for d in found)
    assert all(0 <= d.box[0] < d.box[2] <= 1 and 0 <= d.box[1] < d.box[3] <= 1 for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    other = tmp_path / "other"
    save_detector(detector_checkpoint_path(other, "f" * 32).with_name(f"{small_embedder.fingerprint}.pt"), head,
                  {"image_fingerprint": "f" * 32})
    none, why = resolve_detector("builtin", small_embedder, other)
    assert none is None and "was trained for image model ffff" in why
    none, why = resolve_detector("builtin", small_embedder, tmp_path / "missing")
    assert none is None and "train-detector" in why
    assert resolve_detector("", small_embedder, folder) == (None, "web.detector is empty")
    with pytest.raises(DetectorError):
        builtin_detector(small_embedder, tmp_path / "missing")
    manifest = json.loads((folder / f"{small_embedder.fingerprint}.pt.json").read_text())
    assert manifest["meta"]["image_fingerprint"] == small_embedder.fingerprint


def test_shopper_focus_prefers_central_garments_with_close_matches():
    centre, corner = (0.3, 0.3, 0.7, 0.7), (0.0, 0.0, 0.4, 0.4)
    assert shopper_focus(centre, 0.8) > shopper_focus(corner, 0.8)
    assert shopper_focus(centre, 0.7) > shopper_focus(corner, 0.95)  # centrality weighs more than the match
    assert shopper_focus(centre, 0.9) > shopper_focus(centre, 0.6)
    assert shopper_focus(centre, 0.8) == pytest.approx(shopper_focus((0.45, 0.45, 0.55, 0.55), 0.8))
    assert shopper_focus(centre, -0.2) == 0.0
    assert pad_box((0.1, 0.1, 0.5, 0.5), 0.1) == pytest.approx((0.06, 0.06, 0.54, 0.54))
    assert pad_box((0.0, 0.0, 1.0, 1.0)) == (0.0, 0.0, 1.0, 1.0)


def test_onnx_runtime_gives_the_torch_detections(tmp_path, small_embedder):
    from engine.models.detector_onnx import attach_detector_onnx, detector_onnx_path

    folder = tmp_path / "detector"
    torch.manual_seed(3)
    head = DetectionHead(DetectorConfig(SLOTS, 128, 8))
    with torch.no_grad():  # a head with an opinion, so there are boxes to compare
        head.heatmap.weight.add_(torch.randn_like(head.heatmap.weight) * 0.05)
        head.heatmap.bias.fill_(0.5)
    save_detector(detector_checkpoint_path(folder, small_embedder.fingerprint), head,
                  {"image_fingerprint": small_embedder.fingerprint})
    detector, _ = resolve_detector("builtin", small_embedder, folder, threshold=0.05)
    photos = [Image.new("RGB", (200, 120), (200, 60, 60)), Image.new("RGB", (90, 160), (30, 90, 200))]
    want = detector.detect_batch(photos)
    assert attach_detector_onnx(detector, tmp_path / "onnx", threads=1) == "onnxruntime"
    assert detector.runtime == "onnxruntime"
    got = detector.detect_batch(photos)
    assert [[d.label for d in ds] for ds in got] == [[d.label for d in ds] for ds in want] and any(want)
    for ds_got, ds_want in zip(got, want, strict=True):
        for a, b in zip(ds_got, ds_want, strict=True):
            assert np.allclose(a.box, b.box, atol=1e-3) and abs(a.score - b.score) < 1e-3
    # A damaged cached graph is rebuilt, never served.
    path = detector_onnx_path(tmp_path / "onnx", detector)
    path.write_bytes(b"not a graph")
    detector.use_forward(None)
    assert attach_detector_onnx(detector, tmp_path / "onnx", threads=1) == "onnxruntime"
    assert path.stat().st_size > 1000
