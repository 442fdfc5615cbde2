"""Text and composed queries: words, negative words, example items (thumbs up / down) and photo + modifier turned
into one query vector in the served image embedding space, so the existing index answers them.

Composition is vector arithmetic on unit vectors (docs/text-search.md has the measured weights):

    q0 = normalise((1 - m) * photo + m * text)   photo + modifier ("in red"); text alone or photo alone otherwise
    q  = alpha * q0 + beta * mean(positive items) - gamma * mean(negative items) - n * negative text   (Rocchio)

Thumbs-down items are also excluded from the results, with their look-alikes: any hit whose cosine to a
thumbs-down item is at least ``look_alike`` leaves the grid. Catalog labels named in the words (an article type, a
base colour) add an article-type boost and a colour bonus (indexer/search/label_terms.py).

May import: engine/, indexer.store, indexer.vectors, indexer.search.service, indexer.search.label_terms,
indexer.outfits.colours (the pictures' cached colour descriptors), indexer.settings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.models.colour_head import ColourHead, ColourHeadError, colour_head_path, load_colour_head
from engine.models.text_tower import TextEncoder, TextTowerError, load_text_tower, text_checkpoint_path
from indexer.search.label_terms import LabelReader
from indexer.settings import Settings

log = logging.getLogger(__name__)

MAX_EXAMPLE_IDS = 50


class EmptyQueryError(ValueError):
    """Nothing positive to search for: only negative words or thumbs-down items."""


class UnknownItemsError(ValueError):
    """Example items (thumbs up / down) that the store does not hold, or that have no vector of the served model."""

    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = list(ids)
        super().__init__(f"unknown item id(s) {', '.join(map(str, self.ids[:10]))}: thumbs up / down only take ids "
                         "of results (items of the current index)")


@dataclass(frozen=True)
class CompositionWeights:
    """Weights of the composition (config.toml [text])."""

    modifier: float = 0.2
    alpha: float = 1.0
    beta: float = 0.75
    gamma: float = 0.5
    negative_text: float = 0.5
    look_alike: float = 0.9
    colour: float = 0.8
    article_type: float = 4.0
    with_photo: float = 0.5


@dataclass(frozen=True)
class ComposedQuery:
    """What a shopper asked for besides (or instead of) a photo."""

    text: str = ""
    negative_text: str = ""
    positive_ids: tuple[int, ...] = ()
    negative_ids: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.text or self.negative_text or self.positive_ids or self.negative_ids)


@dataclass
class QueryVector:
    """The composed unit vector, and what to drop from its results."""

    vector: np.ndarray
    exclude_ids: list[int] = field(default_factory=list)
    negative_vectors: np.ndarray | None = None


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def compose_vector(*, text: np.ndarray | None = None, photo: np.ndarray | None = None,
                   negative_text: np.ndarray | None = None, positives: np.ndarray | None = None,
                   negatives: np.ndarray | None = None, weights: CompositionWeights = CompositionWeights()
                   ) -> np.ndarray:
    """One unit query vector from its parts (each a unit vector, or (n, dim) example vectors); see the module doc.

    Raises:
        EmptyQueryError: nothing positive to search for (no text, photo or thumbs-up item).
    """
    if photo is not None and text is not None:
        base = _unit((1 - weights.modifier) * photo + weights.modifier * text)
    elif photo is not None or text is not None:
        base = photo if photo is not None else text
    else:
        base = None
    pos = _unit(np.mean(positives, axis=0)) if positives is not None and len(positives) else None
    if base is None and pos is None:
        raise EmptyQueryError("nothing to search for: give words, a photo or a thumbs-up item besides what the "
                              "results should not be like")
    q = np.zeros_like(base if base is not None else pos, dtype=np.float32)
    if base is not None:
        q += weights.alpha * base
    if pos is not None:
        q += (weights.beta if base is not None else 1.0) * pos
    if negatives is not None and len(negatives):
        q -= weights.gamma * _unit(np.mean(negatives, axis=0))
    if negative_text is not None:
        q -= weights.negative_text * negative_text
    return _unit(q)


def drop_look_alikes(hit_vectors: np.ndarray, negatives: np.ndarray | None, look_alike: float) -> np.ndarray:
    """Mask of hits to keep: those whose cosine to every thumbs-down item stays below ``look_alike``."""
    if negatives is None or not len(negatives) or not len(hit_vectors):
        return np.ones(len(hit_vectors), bool)
    return (hit_vectors @ negatives.T).max(axis=1) < look_alike


class TextModel:
    """The text tower (and the colour head, when one is configured) for the served image model, loaded on first use
    (thread-safe)."""

    def __init__(self, configured_checkpoint: Path, onnx_dir: Path | None = None, runtime: str = "auto",
                 colour_head: Path | None = None, colour_cache_dir: Path | None = None) -> None:
        self.configured = configured_checkpoint
        self.onnx_dir = onnx_dir
        self.runtime = runtime
        self.colour_head_dir = colour_head
        # Where the pictures' colour descriptors are cached (outfit.cache_dir: the outfit model reads the same ones).
        self.colour_cache_dir = colour_cache_dir
        self._lock = threading.Lock()
        self._loaded: tuple[str, TextEncoder] | None = None
        self._readers: dict[tuple, LabelReader] = {}
        # Why the colour head could not be loaded for the last image model asked (None: loaded, or none configured).
        self.colour_error: str | None = None

    def encoder(self, image_fingerprint: str) -> TextEncoder:
        """The encoder for this image model.

        Raises:
            TextTowerError: no tower for it (the message says to run `manage.py train-text`), or a mismatched one.
        """
        loaded = self._loaded
        if loaded is not None and loaded[0] == image_fingerprint:
            return loaded[1]
        with self._lock:
            if self._loaded is None or self._loaded[0] != image_fingerprint:
                tower, vocab, meta = load_text_tower(text_checkpoint_path(self.configured, image_fingerprint),
                                                     image_fingerprint)
                encoder = TextEncoder(tower, vocab, meta)
                if self.runtime != "torch" and self.onnx_dir is not None:
                    from engine.models.text_onnx import attach_text_onnx

                    attach_text_onnx(encoder, self.onnx_dir, required=self.runtime == "onnxruntime")
                self._loaded = (image_fingerprint, encoder)
            return self._loaded[1]

    def colour_head(self, image_fingerprint: str) -> ColourHead | None:
        """The colour head for this image model; None (with one warning, and ``colour_error`` set) when none is
        configured or it cannot be used: colour words then rank by the words' vector alone."""
        if self.colour_head_dir is None:
            return None
        try:
            head, _ = load_colour_head(colour_head_path(self.colour_head_dir, image_fingerprint), image_fingerprint)
        except ColourHeadError as exc:
            if self.colour_error != str(exc):
                log.warning("colour words rank by the text vector alone: %s", exc)
            self.colour_error = str(exc)
            return None
        self.colour_error = None
        return head

    def item_colours(self, store, ids: Sequence[int], bins: int) -> np.ndarray:  # noqa: ANN001 - Store
        """(len(ids), bins**3) colour descriptors of catalog items' pictures (cached by image sha256), for a colour
        head that reads them."""
        from indexer.outfits.colours import catalog_colours

        return catalog_colours(store, [int(i) for i in ids], bins, self.colour_cache_dir)

    def label_reader(self, embedder, weights: CompositionWeights) -> LabelReader:  # noqa: ANN001 - engine Embedder
        """The reader of catalog labels in words for this image model (its article types, the colour head's
        colours), built once per model and weights."""
        key = (embedder.fingerprint, weights.article_type, weights.colour, weights.with_photo)
        reader = self._readers.get(key)
        if reader is None:
            with self._lock:
                reader = self._readers.get(key)
                if reader is None:
                    head = self.colour_head(embedder.fingerprint) if weights.colour else None
                    reader = self._readers[key] = LabelReader(embedder.dim, embedder.classifier_spec, head,
                                                              weights.article_type, weights.colour,
                                                              weights.with_photo)
        return reader

    def available(self, image_fingerprint: str) -> str | None:
        """None when text search works for this image model, else the one-line reason."""
        try:
            self.encoder(image_fingerprint)
        except TextTowerError as exc:
            return str(exc)
        return None


def text_setup_from_settings(settings: Settings) -> tuple[TextModel, CompositionWeights]:
    """The configured text model (loaded lazily) and composition weights ([text] in config.toml)."""
    t = settings.text
    model = TextModel(settings.resolve_path(t.checkpoint), settings.resolve_path(settings.model.onnx_dir), t.runtime,
                      settings.resolve_path(t.colour_head) if t.colour_head else None,
                      settings.resolve_path(settings.outfit.cache_dir))
    weights = CompositionWeights(modifier=t.modifier_weight, alpha=t.rocchio_alpha, beta=t.rocchio_beta,
                                 gamma=t.rocchio_gamma, negative_text=t.negative_text_weight, look_alike=t.look_alike,
                                 colour=t.colour_weight, article_type=t.article_type_boost,
                                 with_photo=t.label_weight_with_photo)
    return model, weights
