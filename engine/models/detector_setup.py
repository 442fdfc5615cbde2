"""Which garment detector the query path uses (web.detector): the built-in one for the served model, none, or a
user's "package.module:factory"; and on which runtime the built-in one runs.

May import: engine.localize, engine.models.detector, engine.models.detector_onnx.
"""

from __future__ import annotations

import os
from typing import Any

from engine.localize import load_detector
from engine.models.detector import DEFAULT_THRESHOLD, DetectorError, builtin_detector
from engine.models.detector_onnx import attach_detector_onnx


def resolve_detector(spec: str, embedder, checkpoint_dir: str | os.PathLike,  # noqa: ANN001 - engine Embedder
                     threshold: float = DEFAULT_THRESHOLD, onnx_dir: str | os.PathLike | None = None,
                     threads: int = 0) -> tuple[Any, str]:
    """``web.detector`` -> (a Detector or None, why none). "builtin": the trained head for the served model, or
    None with the reason (missing / mismatched checkpoint), so searches fall back to grid crops; "": none;
    anything else: a "package.module:factory" spec (``engine.localize.load_detector``, which raises on errors).

    With ``onnx_dir`` and an embedder on ONNX Runtime, the built-in detector's forward pass runs on ONNX Runtime
    too (``engine.models.detector_onnx``; torch when that fails, with a warning), with ``threads`` intra-op threads.
    """
    if spec == "builtin":
        try:
            detector = builtin_detector(embedder, checkpoint_dir, threshold)
        except DetectorError as exc:
            return None, str(exc)
        if onnx_dir is not None and str(getattr(embedder, "runtime", "torch")).startswith("onnxruntime"):
            attach_detector_onnx(detector, onnx_dir, threads)
        return detector, ""
    if not spec:
        return None, "web.detector is empty"
    return load_detector(spec), ""
