"""Colour descriptors: what an item's colours are, as a short vector, for outfit compatibility.

The served image embedding carries colour only weakly (ImageNet features are trained to be fairly colour
invariant: a linear probe reads the catalog's colour group from them at about 54%), yet colour is much of what
makes items go together. This descriptor adds it back: a joint RGB histogram of the item's pixels, ignoring the
near-white background of product shots, square-rooted (Hellinger) and L2-normalised. Pure function of the image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

COLOUR_BINS = 4  # per channel: 4 x 4 x 4 = 64 dimensions
COLOUR_DIM = COLOUR_BINS**3
# Pixels with every channel at least this bright are background (catalog shots are on white).
WHITE_LEVEL = 236
MAX_SIDE = 96


def colour_descriptor(image: Image.Image, bins: int = COLOUR_BINS) -> np.ndarray:
    """(bins**3,) float32 unit vector: sqrt of the normalised joint RGB histogram of the non-background pixels.

    When (almost) every pixel is near white, all pixels count, so a white item still describes itself.
    """
    img = image.convert("RGB")
    if max(img.size) > MAX_SIDE:
        img = img.copy()
        img.thumbnail((MAX_SIDE, MAX_SIDE))
    px = np.asarray(img, dtype=np.uint8).reshape(-1, 3)
    foreground = px[(px < WHITE_LEVEL).any(axis=1)]
    if len(foreground) >= max(16, len(px) // 50):
        px = foreground
    q = (px.astype(np.int32) * bins) // 256
    codes = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    hist = np.bincount(codes, minlength=bins**3).astype(np.float32)
    hist = np.sqrt(hist / max(hist.sum(), 1.0))
    return hist / max(float(np.linalg.norm(hist)), 1e-8)


def with_colour(vectors: np.ndarray, colours: np.ndarray | None) -> np.ndarray:
    """The outfit model's input: image vectors with their colour descriptors appended (as is when None)."""
    if colours is None:
        return np.asarray(vectors, np.float32)
    return np.concatenate([np.asarray(vectors, np.float32), np.asarray(colours, np.float32)], axis=1)
