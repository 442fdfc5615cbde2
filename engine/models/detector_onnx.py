"""ONNX Runtime as the built-in garment detector's forward pass (trunk + head), on the CPU like the Embedder's.

``attach_detector_onnx(detector, cache_dir, threads)`` exports the detector's network (the served model's trunk up to
block 15 + the trained head) once per (image fingerprint, head sha256, input size) to
``<cache_dir>/detector-<fingerprint>-<head sha[:16]>-<size>.onnx`` with a JSON manifest beside it, checks the file's
sha256 before every load (a stale or corrupt file is rebuilt), and compares ONNX Runtime with torch on a probe batch
before using it. Any failure leaves the detector on torch with one warning: the boxes are the same either way.

May import: torch, numpy, onnxruntime (lazily), engine.files, engine.models.detector, engine.models.onnx_runtime.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.files import file_sha256, write_bytes_atomically
from engine.models.detector import DetectionHead, GarmentDetector, trunk_features
from engine.models.onnx_runtime import OPSET, _open_session, onnxruntime_installed

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
# Largest difference from torch allowed on the probe: heatmap probabilities, log sizes and offsets.
MAX_DIFF = 1e-3
_PROBE_SEED = 4321


class _DetectorNet(nn.Module):
    def __init__(self, backbone: nn.Module, head: DetectionHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fine, coarse = trunk_features(self.backbone, images)
        return self.head(fine, coarse)


class DetectorOnnxForward:
    """A session mapping a float32 NCHW batch to (heatmap logits, log sizes, offsets) as torch tensors."""

    runtime = "onnxruntime"

    def __init__(self, session: Any, path: Path) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.path = path

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        arr = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        heat, size, offset = self.session.run(None, {self.input_name: arr})
        return torch.from_numpy(heat), torch.from_numpy(size), torch.from_numpy(offset)


def _torch_net(detector: GarmentDetector) -> _DetectorNet:
    backbone = copy.deepcopy(detector.backbone).to("cpu", memory_format=torch.contiguous_format).eval()
    return _DetectorNet(backbone, copy.deepcopy(detector.head).eval()).eval()


def detector_onnx_path(cache_dir: str | Path, detector: GarmentDetector) -> Path:
    meta = detector.meta
    key = f"detector-{meta.get('image_fingerprint', 'unknown')}-{str(meta.get('sha256', ''))[:16]}"
    return Path(cache_dir) / f"{key}-{detector.preprocessor.size}.onnx"


def _export(net: _DetectorNet, size: int) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's notices (see engine.models.onnx_runtime)
        torch.onnx.export(net, (torch.zeros(2, 3, size, size),), buf, opset_version=OPSET, dynamo=False,
                          input_names=["images"], output_names=["heat", "size", "offset"],
                          dynamic_axes={n: {0: "batch"} for n in ("images", "heat", "size", "offset")})
    return buf.getvalue()


def _valid(path: Path) -> bool:
    try:
        manifest = json.loads(Path(f"{path}.json").read_text())
        return path.is_file() and manifest.get("version") == MANIFEST_VERSION and \
            manifest.get("sha256") == file_sha256(path)
    except (OSError, ValueError, AttributeError):
        return False


def attach_detector_onnx(detector: GarmentDetector, cache_dir: str | Path, threads: int = 0) -> str:
    """Run the detector's forward pass on ONNX Runtime when it gives torch's answer; returns the runtime in use."""
    if not onnxruntime_installed():
        log.warning("garment detector: onnxruntime is not installed; using torch")
        return "torch"
    path = detector_onnx_path(cache_dir, detector)
    size = detector.preprocessor.size
    try:
        net = _torch_net(detector)
        if not _valid(path):
            data = _export(net, size)
            write_bytes_atomically(path, data)
            manifest = {"version": MANIFEST_VERSION, "sha256": file_sha256(path), "bytes": len(data), "opset": OPSET,
                        "input_size": size, "image_fingerprint": detector.meta.get("image_fingerprint"),
                        "head_sha256": detector.meta.get("sha256"), "torch": torch.__version__}
            write_bytes_atomically(Path(f"{path}.json"), (json.dumps(manifest, indent=2) + "\n").encode())
        forward = DetectorOnnxForward(_open_session(path, threads), path)
        probe = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(_PROBE_SEED))
        with torch.inference_mode():
            want = net(probe)
        got = forward(probe)
        diff = max(float((torch.sigmoid(got[0]) - torch.sigmoid(want[0])).abs().max()),
                   float((got[1] - want[1]).abs().max()),
                   float((got[2] - want[2]).abs().max()))
    except Exception as exc:  # noqa: BLE001 - export and ORT raise many types; each means "use torch"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("garment detector: ONNX Runtime unavailable (%s); using torch", first)
        return "torch"
    if not diff <= MAX_DIFF:
        log.warning("garment detector: ONNX Runtime differs from torch by %.2g; using torch", diff)
        return "torch"
    detector.use_forward(forward)
    return "onnxruntime"
