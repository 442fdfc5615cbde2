"""Build the configured Embedder from Settings (backbone, weights, fine-tuned checkpoint, runtime), and the garment
detector that goes with it.

A leaf: imports only settings and engine, so the indexing pipelines (Ray workers included) and the web app can use it
without pulling in the rest of the indexer.
"""

from __future__ import annotations

from indexer.settings import Settings


def create_embedder_from_settings(settings: Settings):
    """The configured embedder (backbone, weights, optional fine-tuned checkpoint) on the configured runtime
    (model.runtime: torch or ONNX Runtime, graphs cached in model.onnx_dir, model.threads intra-op threads)."""
    from engine import create_embedder

    m = settings.model
    weights = m.weights
    if weights and weights != "random" and ("/" in weights or weights.endswith((".pt", ".pth", ".bin"))):
        weights = str(settings.resolve_path(weights))
    checkpoint = str(settings.resolve_path(m.checkpoint)) if m.checkpoint else ""
    return create_embedder(m.backbone, weights=weights, checkpoint=checkpoint, input_size=m.input_size,
                           device=m.device, taxonomy_weight=None if m.taxonomy_weight < 0 else m.taxonomy_weight,
                           runtime=m.runtime, onnx_dir=str(settings.resolve_path(m.onnx_dir)), threads=m.threads)


def detector_from_settings(settings: Settings, embedder, spec: str | None = None):  # noqa: ANN001 - engine Embedder
    """The configured garment detector for this embedder and why there is none: ``web.detector`` (or ``spec``),
    its checkpoint folder and threshold, on the embedder's runtime (``engine.models.detector_setup``)."""
    from engine.models.detector_setup import resolve_detector

    web = settings.web
    return resolve_detector(web.detector if spec is None else spec, embedder,
                            settings.resolve_path(web.detector_checkpoint), web.detector_threshold,
                            settings.resolve_path(settings.model.onnx_dir), settings.model.threads)
