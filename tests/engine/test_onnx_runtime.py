"""ONNX Runtime behind the Embedder: parity with torch on real catalog images, the per-fingerprint graph cache
(rebuilt when the fingerprint changes or the file is corrupt), and the fallbacks to torch."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import create_embedder
from engine.files import file_sha256
from engine.models import onnx_runtime
from engine.models.onnx_runtime import attach_onnx_runtime, manifest_path, onnx_path

pytest.importorskip("onnxruntime")

SIZE = 64  # small input: the export takes ~1 s and the graph is the real EfficientNet-Lite0


def make_embedder():
    return create_embedder("efficientnet_lite0", input_size=SIZE, device="cpu")


@pytest.fixture
def export_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the ONNX exports (each one is a cache miss)."""
    calls: list[int] = []
    real = onnx_runtime.export_onnx

    def counting(module, input_size):  # noqa: ANN001
        calls.append(input_size)
        return real(module, input_size)

    monkeypatch.setattr(onnx_runtime, "export_onnx", counting)
    return calls


@pytest.fixture(scope="module")
def catalog_images(catalog_dir: Path, catalog_rows: list[dict[str, str]]):
    from PIL import Image, ImageOps

    images = []
    for row in catalog_rows[::997][:24]:
        with Image.open(catalog_dir / row["image"]) as img:
            images.append(ImageOps.exif_transpose(img).convert("RGB"))
    return images


def test_parity_with_torch_on_catalog_images(tmp_path: Path, catalog_images) -> None:
    torch_emb = make_embedder()
    ort_emb = create_embedder("efficientnet_lite0", input_size=SIZE, device="cpu", runtime="onnxruntime",
                              onnx_dir=str(tmp_path), threads=1)
    assert torch_emb.runtime == "torch" and ort_emb.runtime == "onnxruntime"
    assert ort_emb.fingerprint == torch_emb.fingerprint  # the runtime is not part of what the vectors are
    ref = torch_emb.embed_images(catalog_images, batch_size=8)
    got = ort_emb.embed_images(catalog_images, batch_size=8)
    assert got.shape == ref.shape == (len(catalog_images), torch_emb.dim) and got.dtype == np.float32
    cos = (ref * got).sum(axis=1)
    assert cos.min() >= 0.9999, cos.min()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Retrieval among the catalog images agrees: each ORT vector's nearest torch vector is its own image.
    assert (np.argmax(got @ ref.T, axis=1) == np.arange(len(ref))).all()
    manifest = json.loads(manifest_path(onnx_path(tmp_path, ort_emb.fingerprint, "onnxruntime")).read_text())
    assert manifest["fingerprint"] == ort_emb.fingerprint
    assert manifest["sha256"] == file_sha256(onnx_path(tmp_path, ort_emb.fingerprint, "onnxruntime"))


def test_auto_picks_onnxruntime_on_cpu(tmp_path: Path) -> None:
    emb = make_embedder()
    assert attach_onnx_runtime(emb, "auto", tmp_path, threads=1) == "onnxruntime"
    assert onnx_path(tmp_path, emb.fingerprint, "onnxruntime").is_file()


def test_missing_onnxruntime_falls_back_to_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    emb = make_embedder()
    assert attach_onnx_runtime(emb, "auto", tmp_path) == "torch"  # auto: quietly torch
    with caplog.at_level(logging.WARNING, logger="engine.models.onnx_runtime"):
        assert attach_onnx_runtime(emb, "onnxruntime", tmp_path) == "torch"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "onnxruntime is not installed" in warnings[0].getMessage()
    assert emb.runtime == "torch" and not list(tmp_path.iterdir())
    batch = torch.randn(2, 3, SIZE, SIZE)
    assert emb.embed_tensors(batch).shape == (2, emb.dim)


def test_failed_export_falls_back_to_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    def broken(module, input_size):  # noqa: ANN001
        raise RuntimeError("Unsupported: ONNX export of operator foo\nlong trace here")

    monkeypatch.setattr(onnx_runtime, "export_onnx", broken)
    emb = make_embedder()
    with caplog.at_level(logging.WARNING, logger="engine.models.onnx_runtime"):
        assert attach_onnx_runtime(emb, "onnxruntime", tmp_path) == "torch"
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert "export of operator foo" in message and "\n" not in message and "using torch" in message
    assert emb.runtime == "torch" and not list(tmp_path.glob("*.onnx"))


def test_parity_failure_falls_back_to_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(onnx_runtime, "probe_cosine", lambda embedder, forward: 0.5)
    emb = make_embedder()
    with caplog.at_level(logging.WARNING, logger="engine.models.onnx_runtime"):
        assert attach_onnx_runtime(emb, "onnxruntime", tmp_path) == "torch"
    assert "differs from torch" in caplog.text and emb.runtime == "torch"


def test_cache_is_reused_and_rebuilt_when_the_fingerprint_changes(tmp_path: Path, export_calls: list[int]) -> None:
    emb = make_embedder()
    assert attach_onnx_runtime(emb, "onnxruntime", tmp_path, threads=1) == "onnxruntime"
    assert attach_onnx_runtime(make_embedder(), "onnxruntime", tmp_path, threads=1) == "onnxruntime"
    assert len(export_calls) == 1  # the second embedder of the same fingerprint loads the cached graph
    old = emb.fingerprint
    with torch.no_grad():
        next(emb.module.parameters()).mul_(1.5)  # fine-tuning in place
    assert emb.fingerprint != old
    # The stale graph is bypassed at once: the embedder's vectors follow the new weights.
    batch = torch.randn(2, 3, SIZE, SIZE)
    served = emb.embed_tensors(batch)
    emb.use_forward(None)
    np.testing.assert_allclose(served, emb.embed_tensors(batch), atol=1e-6)
    assert attach_onnx_runtime(emb, "onnxruntime", tmp_path, threads=1) == "onnxruntime"
    assert len(export_calls) == 2
    assert onnx_path(tmp_path, emb.fingerprint, "onnxruntime").is_file() and onnx_path(tmp_path, old,
                                                                                      "onnxruntime").is_file()
    cos = (emb.embed_tensors(batch) * served).sum(axis=1)
    assert cos.min() >= 0.9999


@pytest.mark.parametrize("damage", ["truncate", "garbage_with_matching_manifest", "manifest_missing"])
def test_corrupt_cached_graph_is_rebuilt_never_served(tmp_path: Path, export_calls: list[int], damage: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    emb = make_embedder()
    assert attach_onnx_runtime(emb, "onnxruntime", tmp_path, threads=1) == "onnxruntime"
    path = onnx_path(tmp_path, emb.fingerprint, "onnxruntime")
    good_sha = file_sha256(path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "manifest_missing":
        manifest_path(path).unlink()
    else:  # a file whose manifest was rewritten to match it: ONNX Runtime cannot load it, so it is rebuilt
        path.write_bytes(b"\x08\x07garbage" * 100)
        manifest = json.loads(manifest_path(path).read_text())
        manifest["sha256"] = file_sha256(path)
        manifest_path(path).write_text(json.dumps(manifest))
    fresh = make_embedder()
    with caplog.at_level(logging.WARNING, logger="engine.models.onnx_runtime"):
        runtime = attach_onnx_runtime(fresh, "onnxruntime", tmp_path, threads=1)
    assert runtime == "onnxruntime" and len(export_calls) == 2 and not caplog.records
    assert file_sha256(path) == good_sha  # the same export, bit for bit
    batch = torch.randn(2, 3, SIZE, SIZE)
    ref = make_embedder().embed_tensors(batch)
    assert (fresh.embed_tensors(batch) * ref).sum(axis=1).min() >= 0.9999


def test_training_mode_bypasses_onnx(tmp_path: Path) -> None:
    emb = make_embedder()
    attach_onnx_runtime(emb, "onnxruntime", tmp_path, threads=1)
    calls: list[int] = []
    forward = emb._forward
    emb.use_forward(lambda batch: calls.append(1) or forward(batch))
    emb._forward.fingerprint = forward.fingerprint  # type: ignore[union-attr]
    emb.module.train()
    emb.embed_tensors(torch.randn(2, 3, SIZE, SIZE))
    assert not calls and emb.module.training


def test_graph_also_gives_the_feature_map_localisation_reads(tmp_path: Path, catalog_images) -> None:
    """The ONNX graph's second output is the layer find_feature_layer picks, equal to what a torch hook captures,
    so street-photo localisation keeps its activation crop under ONNX Runtime."""
    from engine.localize import FeatureProbe, find_feature_layer

    emb = make_embedder()
    batch = emb.preprocess_batch(catalog_images[:4])
    probe = FeatureProbe(emb.module, find_feature_layer(emb.module, SIZE))
    with probe.capture():
        emb.embed_tensors(batch)  # torch: the hook fires
    want = [probe.features(i) for i in range(4)]
    assert emb.feature_map(0) is None  # torch ran: no runtime map
    assert attach_onnx_runtime(emb, "onnxruntime", tmp_path) == "onnxruntime"
    with probe.capture():
        emb.embed_tensors(batch)
    assert probe.features(0) is None  # ONNX Runtime ran: torch hooks see nothing...
    for i in range(4):
        got = emb.feature_map(i)  # ...and the graph's map takes their place
        assert got is not None and got.shape == want[i].shape
        np.testing.assert_allclose(got, want[i], rtol=1e-3, atol=1e-3)
