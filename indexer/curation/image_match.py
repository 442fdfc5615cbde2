"""Same-picture verification: do two catalog images show the same photograph (re-encoded, resized, cropped a little,
brightened or darkened)?

Embedding similarity alone cannot tell a re-encoded copy from a different product shot the same way (measured on
the 42k catalog: a copy re-encoded at JPEG q30 and resized to half its size can sit at cosine 0.8 from its source
while distinct products of one type reach 0.95; BENCHMARKS.md "curation"). So near-duplicate candidates found by
vector search are verified on the pixels: each image becomes a small colour thumbnail, normalised per image to zero
mean and unit norm (cancelling brightness and contrast changes), and a pair's score is the best correlation over a
set of crop alignments of one thumbnail against the other, taken both ways (a crop of up to ``MAX_CROP`` per side).
Pure numpy over decoded images.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

# Side of the working grid an image is resampled to (ignoring its aspect: crops change it anyway).
GRID = 48
# Side of the compared thumbnail.
THUMB = 16
# Largest share of an image's side a copy may have lost to cropping, split between the two ends.
MAX_CROP = 0.10
# Crop offsets tried per axis, as (start, end) shares of the side.
_OFFSETS = ((0.0, 0.0), (0.05, 0.0), (0.0, 0.05), (0.025, 0.025), (0.10, 0.0), (0.0, 0.10), (0.05, 0.05))


def picture_grid(image: Image.Image) -> np.ndarray:
    """(GRID, GRID, 3) float32 of an image resampled to the working grid (RGB, 0..1)."""
    img = image.convert("RGB").resize((GRID, GRID), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


@lru_cache(maxsize=1)
def _sampling_matrices() -> np.ndarray:
    """(len(_OFFSETS), THUMB, GRID) linear-interpolation matrices: a crop of one axis resampled to THUMB cells."""
    out = np.zeros((len(_OFFSETS), THUMB, GRID), np.float32)
    for k, (start, end) in enumerate(_OFFSETS):
        lo, hi = start * GRID, (1.0 - end) * GRID
        centres = lo + (np.arange(THUMB) + 0.5) * (hi - lo) / THUMB - 0.5
        for j, c in enumerate(np.clip(centres, 0, GRID - 1)):
            i0 = int(np.floor(c))
            i1 = min(i0 + 1, GRID - 1)
            f = c - i0
            out[k, j, i0] += 1.0 - f
            out[k, j, i1] += f
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x.reshape(*x.shape[:-3], -1)
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def aligned_thumbnails(grid: np.ndarray) -> np.ndarray:
    """(A, THUMB*THUMB*3) normalised thumbnails of every crop alignment of one picture grid (A = 49)."""
    m = _sampling_matrices().reshape(-1, GRID)                       # (A1 * THUMB, GRID)
    rows = (m @ grid.reshape(GRID, GRID * 3)).reshape(-1, GRID, 3)  # crop + resample the rows: (A1*T, GRID, 3)
    both = np.matmul(m, rows)                                       # ... then the columns: (A1*T, A1*T, 3)
    a = len(_OFFSETS)
    both = both.reshape(a, THUMB, a, THUMB, 3).transpose(0, 2, 1, 3, 4)
    return _normalise(both.reshape(-1, THUMB, THUMB, 3))


def base_thumbnail(grid: np.ndarray) -> np.ndarray:
    """(THUMB*THUMB*3,) normalised thumbnail of the whole picture (the first alignment: no crop)."""
    m = _sampling_matrices()[0]
    return _normalise(np.matmul(m, (m @ grid.reshape(GRID, GRID * 3)).reshape(THUMB, GRID, 3)))


def picture_similarity(grid_a: np.ndarray, grid_b: np.ndarray) -> float:
    """Best correlation in [-1, 1] of the two pictures over the crop alignments, both ways."""
    return float(max((aligned_thumbnails(grid_a) @ base_thumbnail(grid_b)).max(),
                     (aligned_thumbnails(grid_b) @ base_thumbnail(grid_a)).max()))


def pair_similarities(grids: Sequence[np.ndarray] | np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Picture similarity of each (i, j) row of ``pairs`` (indices into ``grids``), float32 (P,).

    Each picture's alignments are computed once, however many pairs it is in.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.full(len(pairs), -1.0, np.float32)
    if not len(pairs):
        return out
    bases = np.stack([base_thumbnail(g) for g in grids])
    order = np.argsort(pairs[:, 0], kind="stable")
    start = 0
    while start < len(order):
        i = pairs[order[start], 0]
        stop = start
        while stop < len(order) and pairs[order[stop], 0] == i:
            stop += 1
        rows = order[start:stop]
        aligned = aligned_thumbnails(grids[i])
        js = pairs[rows, 1]
        forward = (aligned @ bases[js].T).max(axis=0)
        out[rows] = np.maximum(out[rows], forward)
        start = stop
    # The other direction: j's alignments against i's whole picture.
    order = np.argsort(pairs[:, 1], kind="stable")
    start = 0
    while start < len(order):
        j = pairs[order[start], 1]
        stop = start
        while stop < len(order) and pairs[order[stop], 1] == j:
            stop += 1
        rows = order[start:stop]
        aligned = aligned_thumbnails(grids[j])
        out[rows] = np.maximum(out[rows], (aligned @ bases[pairs[rows, 0]].T).max(axis=0))
        start = stop
    return out
