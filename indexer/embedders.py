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


def query_embedder_from_settings(settings: Settings, embedder):  # noqa: ANN001, ANN201 - engine Embedders
    """The embedder query photos go through, and why it is the served model itself (None when it is not).

    ``model.street_encoder`` names the street encoders (``manage.py train-street-encoder``): a query-side copy of the
    served model, fine-tuned so that crops of street photos land on their product's catalog vector. It is used only
    when it was made for the served model (its manifest names the served fingerprint) and builds on the configured
    runtime; otherwise queries use the served model and the reason is returned.
    """
    import json

    from engine import create_embedder
    from engine.errors import EmbedderError
    from engine.models.checkpoints import manifest_path
    from engine.models.keyed_files import keyed_path

    m = settings.model
    if not m.street_encoder:
        return embedder, "model.street_encoder is empty"
    path = keyed_path(settings.resolve_path(m.street_encoder), embedder.fingerprint)
    hint = "run `python manage.py train-street-encoder`, or set model.street_encoder = \"\""
    if not path.is_file():
        return embedder, f"no street encoder for the served model {embedder.fingerprint} at {path}; {hint}"
    try:
        meta = json.loads(manifest_path(path).read_text())["meta"]
    except (OSError, ValueError, KeyError) as exc:
        return embedder, f"the street encoder's manifest beside {path} is unreadable ({exc}); {hint}"
    made_for = (meta.get("street_encoder") or {}).get("gallery_fingerprint")
    if made_for != embedder.fingerprint:
        return embedder, (f"the street encoder {path} answers for image model {made_for}, but the served model is "
                          f"{embedder.fingerprint}; {hint}")
    try:
        query = create_embedder(m.backbone, checkpoint=str(path), input_size=embedder.input_size, device=m.device,
                                taxonomy_weight=None if m.taxonomy_weight < 0 else m.taxonomy_weight,
                                runtime=m.runtime, onnx_dir=str(settings.resolve_path(m.onnx_dir)), threads=m.threads)
    except EmbedderError as exc:
        return embedder, f"the street encoder {path} cannot be loaded: {exc}"
    if query.dim != embedder.dim:
        return embedder, f"the street encoder {path} gives {query.dim}-d vectors, the index holds {embedder.dim}-d"
    return query, None
