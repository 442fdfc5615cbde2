"""The built-in garment detector: a CenterNet-style head on the served embedding model's frozen EfficientNet-Lite
trunk, its box decoding, and the checkpoint (+ manifest) that ties a trained head to that image model.

The trunk is the served model's own backbone (fully convolutional), run at ``input_size`` (256 px) on the
letterboxed photo; nothing of it is trained or stored here. The head reads two of its maps: the stride-16 output of
block 10 (112 channels) and the stride-32 output of block 15 (320 channels), upsampled and added; two 3x3 convs;
then per stride-16 cell a heatmap per slot (is a garment's centre here?), the box size (log of width and height in
cells) and the centre's sub-cell offset. Decoding keeps 3x3 local maxima of the heatmap above a threshold and drops
boxes overlapping a better one (IoU >= 0.6, any slot).

Checkpoint file ``<folder>/<image fingerprint>.pt``: ``torch.save({"format": 1, "meta": meta, "state_dict":
state})`` with fp16 weights; ``meta`` holds ``image_fingerprint``, the slots (class order), the input size and the
head config; the manifest ``<path>.json`` repeats meta with the file's sha256. A head trained on another image
model's trunk is refused (its features would mean something else).

May import: torch, numpy, PIL, engine.models, engine.localize, engine.errors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from engine.errors import EmbedderError
from engine.localize import Detection, box_iou, letterbox_content
from engine.models.keyed_files import keyed_path, load_keyed, save_keyed
from engine.models.preprocess import Preprocessor

DETECTOR_FORMAT = 1
STRIDE = 16
# Blocks of EfficientNet-Lite0 whose outputs the head reads: the last of the stride-16 stage, the last block.
FINE_BLOCK, COARSE_BLOCK = 10, 15
FINE_CHANNELS, COARSE_CHANNELS = 112, 320
# Served detections: score threshold and overlap (IoU) above which the weaker of two boxes is dropped.
DEFAULT_THRESHOLD = 0.3
NMS_IOU = 0.6
MAX_PEAKS = 20
HINT = "run `python manage.py train-detector`"


class DetectorError(EmbedderError):
    """A detector checkpoint that is missing, damaged or made for another image model; the message says what to do."""


@dataclass(frozen=True)
class DetectorConfig:
    """The head's shape and the trunk's input size."""

    slots: tuple[str, ...]
    input_size: int = 256
    width: int = 96

    def __post_init__(self) -> None:
        if not self.slots:
            raise ValueError("a detector needs at least one slot")
        if self.input_size % 32:
            raise ValueError(f"detector input size must be a multiple of 32, got {self.input_size}")


def trunk_features(backbone: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, S, S) normalised batch -> the (N, 112, S/16, S/16) and (N, 320, S/32, S/32) maps of an
    EfficientNet-Lite0 (``engine.models.efficientnet_lite``); the conv head after block 15 is not run."""
    blocks = getattr(backbone, "_blocks", None)
    if blocks is None or len(blocks) <= COARSE_BLOCK:
        raise DetectorError(f"the built-in detector needs an EfficientNet-Lite0 trunk, got {type(backbone).__name__}")
    x = F.relu6(backbone._bn0(backbone._conv_stem(batch)))
    fine = None
    for i, block in enumerate(blocks):
        x = block(x)
        if i == FINE_BLOCK:
            fine = x
    return fine, x  # type: ignore[return-value]


class DetectionHead(nn.Module):
    """Two trunk maps -> per stride-16 cell: slot heatmap logits (N, C, H, W), log box size and centre offset
    (N, 2, H, W) each. ``mean``/``std`` buffers standardise the frozen trunk's channels (set from training data)."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.register_buffer("fine_mean", torch.zeros(FINE_CHANNELS))
        self.register_buffer("fine_std", torch.ones(FINE_CHANNELS))
        self.register_buffer("coarse_mean", torch.zeros(COARSE_CHANNELS))
        self.register_buffer("coarse_std", torch.ones(COARSE_CHANNELS))
        self.lateral_fine = nn.Conv2d(FINE_CHANNELS, w, 1)
        self.lateral_coarse = nn.Conv2d(COARSE_CHANNELS, w, 1)
        self.body = nn.Sequential(nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True))
        self.heatmap = nn.Conv2d(w, len(config.slots), 1)
        self.size = nn.Conv2d(w, 2, 1)
        self.offset = nn.Conv2d(w, 2, 1)
        nn.init.constant_(self.heatmap.bias, -2.19)  # CenterNet: start at p = 0.1 so the focal loss is stable

    def set_normalisation(self, fine: np.ndarray, coarse: np.ndarray) -> None:
        """Per-channel mean and std of training features ((N, C, H, W) arrays, any float dtype)."""
        for name, arr in (("fine", fine), ("coarse", coarse)):
            a = torch.from_numpy(np.asarray(arr, dtype=np.float32))
            getattr(self, f"{name}_mean").copy_(a.mean(dim=(0, 2, 3)))
            getattr(self, f"{name}_std").copy_(a.std(dim=(0, 2, 3)).clamp_min(1e-3))

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fine = (fine.float() - self.fine_mean[:, None, None]) / self.fine_std[:, None, None]
        coarse = (coarse.float() - self.coarse_mean[:, None, None]) / self.coarse_std[:, None, None]
        up = F.interpolate(self.lateral_coarse(coarse), size=fine.shape[-2:], mode="nearest")
        x = self.body(F.relu(self.lateral_fine(fine) + up))
        return self.heatmap(x), self.size(x), self.offset(x)


def decode(heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, threshold: float = DEFAULT_THRESHOLD,
           max_peaks: int = MAX_PEAKS) -> list[list[tuple[tuple[float, float, float, float], int, float]]]:
    """Head outputs -> per image ``[(box in square pixels... as 0..1 of the square, slot index, score)]``, best
    first, after keeping 3x3 local maxima with score >= threshold and dropping overlaps (IoU >= NMS_IOU)."""
    prob = torch.sigmoid(heat.float())
    peaks = prob * (F.max_pool2d(prob, 3, stride=1, padding=1) == prob)
    n, c, h, w = prob.shape
    out = []
    for i in range(n):
        flat = peaks[i].reshape(-1)
        k = min(max_peaks, flat.numel())
        scores, idx = flat.topk(k)
        found: list[tuple[tuple[float, float, float, float], int, float]] = []
        for score, j in zip(scores.tolist(), idx.tolist(), strict=True):
            if score < threshold:
                break
            cls, rem = divmod(j, h * w)
            y, x = divmod(rem, w)
            cx = (x + float(offset[i, 0, y, x])) / w
            cy = (y + float(offset[i, 1, y, x])) / h
            bw = float(np.exp(np.clip(float(size[i, 0, y, x]), -4, 4))) / w
            bh = float(np.exp(np.clip(float(size[i, 1, y, x]), -4, 4))) / h
            box = (max(0.0, cx - bw / 2), max(0.0, cy - bh / 2), min(1.0, cx + bw / 2), min(1.0, cy + bh / 2))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            if all(box_iou(box, kept[0]) < NMS_IOU for kept in found):
                found.append((box, int(cls), float(score)))
        out.append(found)
    return out


def square_to_photo(box: tuple[float, float, float, float], width: int, height: int
                    ) -> tuple[float, float, float, float] | None:
    """A box relative to the letterboxed square -> relative to the photo (clipped); None when nothing is left."""
    cx0, cy0, cx1, cy1 = letterbox_content(width, height)
    cw, ch = cx1 - cx0, cy1 - cy0
    x0 = float(np.clip((box[0] - cx0) / cw, 0, 1))
    y0 = float(np.clip((box[1] - cy0) / ch, 0, 1))
    x1 = float(np.clip((box[2] - cx0) / cw, 0, 1))
    y1 = float(np.clip((box[3] - cy0) / ch, 0, 1))
    if x1 - x0 < 1e-3 or y1 - y0 < 1e-3:
        return None
    return (round(x0, 6), round(y0, 6), round(x1, 6), round(y1, 6))


def photo_to_square(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """A box relative to the photo -> relative to its letterboxed square (the inverse of ``square_to_photo``)."""
    cx0, cy0, cx1, cy1 = letterbox_content(width, height)
    cw, ch = cx1 - cx0, cy1 - cy0
    return (cx0 + box[0] * cw, cy0 + box[1] * ch, cx0 + box[2] * cw, cy0 + box[3] * ch)


class GarmentDetector:
    """The built-in detector over a (shared, frozen) EfficientNet-Lite0 trunk; implements engine.localize.Detector.

    Not thread-safe on its own: the QueryEngine runs ``detect`` on its model thread with the other forward passes.
    """

    def __init__(self, backbone: nn.Module, head: DetectionHead, preprocessor: Preprocessor,
                 threshold: float = DEFAULT_THRESHOLD, meta: dict[str, Any] | None = None) -> None:
        self.backbone = backbone
        self.head = head.eval()
        self.preprocessor = preprocessor
        self.threshold = threshold
        self.slots = head.config.slots
        self.meta = meta or {}
        self._forward: Any = None

    def __repr__(self) -> str:
        return (f"GarmentDetector(slots={list(self.slots)}, input_size={self.preprocessor.size}, "
                f"runtime={self.runtime!r})")

    @property
    def runtime(self) -> str:
        return getattr(self._forward, "runtime", "torch") if self._forward is not None else "torch"

    def use_forward(self, forward: Any) -> None:
        """Run the trunk + head through ``forward`` (a normalised CPU batch -> (heatmap logits, log sizes, offsets),
        e.g. ``engine.models.detector_onnx.DetectorOnnxForward``) instead of torch; None = torch."""
        self._forward = forward

    def detect_batch(self, images: Sequence[Image.Image], threshold: float | None = None) -> list[list[Detection]]:
        """Detections of several RGB photos (boxes relative to each photo), best first."""
        if not images:
            return []
        batch = self.preprocessor.batch(images)
        if self._forward is not None:
            heat, size, offset = self._forward(batch)
        else:
            device = next(self.backbone.parameters()).device
            with torch.inference_mode():
                fine, coarse = trunk_features(self.backbone, batch.to(device).contiguous(
                    memory_format=torch.channels_last if device.type == "cpu" else torch.contiguous_format))
                heat, size, offset = self.head(fine.float().cpu(), coarse.float().cpu())
        decoded = decode(heat, size, offset, self.threshold if threshold is None else threshold)
        out = []
        for image, found in zip(images, decoded, strict=True):
            dets = []
            for box, cls, score in found:
                photo_box = square_to_photo(box, *image.size)
                if photo_box is not None:
                    dets.append(Detection(photo_box, self.slots[cls], score))
            out.append(dets)
        return out

    def detect(self, image: Image.Image) -> list[Detection]:
        """Garments in an RGB photo, best first (engine.localize.Detector)."""
        return self.detect_batch([image])[0]


# ---- checkpoint --------------------------------------------------------------------------------------------------

# ``<folder>/<image fingerprint>.pt`` (or the configured .pt file itself).
detector_checkpoint_path = keyed_path


def save_detector(path: str | os.PathLike, head: DetectionHead, meta: dict[str, Any]) -> dict[str, Any]:
    """Write the head (fp16) and its ``<path>.json`` manifest crash-safely; returns the manifest.

    ``meta`` must hold ``image_fingerprint`` (the image model whose trunk the head reads).
    """
    return save_keyed(path, DETECTOR_FORMAT, {**meta, "config": asdict(head.config)}, head.state_dict())


def load_detector_head(path: str | os.PathLike, image_fingerprint: str | None = None
                       ) -> tuple[DetectionHead, dict[str, Any]]:
    """Read a head written by ``save_detector`` (fp32, eval mode) after checking its manifest.

    Raises:
        DetectorError: missing file, checksum mismatch, unreadable, or trained for another image model.
    """
    payload, sha256 = load_keyed(path, image_fingerprint, "garment detector", HINT, DetectorError)
    meta = payload["meta"]
    try:
        cfg = meta["config"]
        head = DetectionHead(DetectorConfig(tuple(cfg["slots"]), int(cfg["input_size"]), int(cfg["width"])))
        head.load_state_dict(payload["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any unreadable payload is one clear message
        raise DetectorError(f"cannot read detector {str(path)!r}: {type(exc).__name__}: {exc}; {HINT}") from None
    return head.eval(), {**meta, "sha256": sha256}


def detector_preprocessor(embedder, input_size: int) -> Preprocessor:  # noqa: ANN001 - engine Embedder
    """The embedder's normalisation and letterbox fill at the detector's input size."""
    p = embedder.preprocessor
    return Preprocessor(input_size, p.mean, p.std, p.fill)


def builtin_detector(embedder, checkpoint_dir: str | os.PathLike,  # noqa: ANN001 - engine Embedder
                     threshold: float = DEFAULT_THRESHOLD) -> GarmentDetector:
    """The built-in detector for the served embedder: its trunk + the head trained for its fingerprint.

    Raises:
        DetectorError: no head for this fingerprint, a damaged one, or a trunk that is not EfficientNet-Lite0.
    """
    backbone = embedder.module.backbone
    if getattr(backbone, "_blocks", None) is None:
        raise DetectorError(f"the built-in detector needs an EfficientNet-Lite0 trunk, the served model is "
                            f"{embedder.name}")
    head, meta = load_detector_head(detector_checkpoint_path(checkpoint_dir, embedder.fingerprint),
                                    embedder.fingerprint)
    return GarmentDetector(backbone, head, detector_preprocessor(embedder, head.config.input_size), threshold, meta)
