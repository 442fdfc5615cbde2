"""ONNX Runtime as the text tower's forward pass on the CPU: export once per tower checksum, verify, run.

Like engine/models/onnx_runtime.py for images: ``<cache_dir>/text-<sha256[:16]>.onnx`` is written crash-safely, a
probe batch is compared with torch (cosine >= 0.9999) before use, and any failure leaves the encoder on torch with
one warning (``required=True`` raises instead).

May import: torch, numpy, onnxruntime (lazily), engine.files, engine.models.text_tower.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from engine.files import write_bytes_atomically
from engine.models.text_tower import TextEncoder, TextTowerError

log = logging.getLogger(__name__)
OPSET = 17
MIN_COSINE = 0.9999


def _export(encoder: TextEncoder, path: Path) -> None:
    tokens = encoder.tokens(["navy linen shirt", "red"])
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder.tower, (tokens,), buf, input_names=["tokens"], output_names=["vectors"],
                          dynamic_axes={"tokens": {0: "batch"}, "vectors": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
    write_bytes_atomically(path, buf.getvalue())


def attach_text_onnx(encoder: TextEncoder, cache_dir: Path, required: bool = False, threads: int = 1) -> bool:
    """Run the encoder's forward pass on ONNX Runtime when it gives torch's vectors; True when attached."""
    try:
        import onnxruntime as ort

        digest = str(encoder.meta.get("sha256") or encoder.image_fingerprint)[:16]
        path = Path(cache_dir) / f"text-{encoder.image_fingerprint}-{digest}.onnx"
        if not path.is_file():
            _export(encoder, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def forward(tokens: np.ndarray) -> np.ndarray:
            return session.run(["vectors"], {"tokens": tokens.astype(np.int64)})[0]

        probe = encoder.tokens(["blue denim jeans for men", "a", "watch"])
        with torch.inference_mode():
            expected = encoder.tower(probe).numpy()
        got = forward(probe.numpy())
        got = got / np.linalg.norm(got, axis=1, keepdims=True)
        cosine = float((expected * got).sum(axis=1).min())
        if cosine < MIN_COSINE:
            path.unlink(missing_ok=True)
            raise TextTowerError(f"ONNX text graph differs from torch (cosine {cosine:.6f})")
    except Exception as exc:  # noqa: BLE001 - any failure falls back to torch, as the image runtime does
        if required:
            raise TextTowerError(f"text.runtime = onnxruntime, but it cannot run the text model: {exc}") from None
        log.warning("text model stays on torch: %s", (str(exc).splitlines() or [type(exc).__name__])[0])
        return False
    encoder.use_forward(forward, "onnxruntime")
    return True
